"""lmscalpel: reruns of five papers on interventions in LLM internals, as one Snakemake DAG.

Subpackages, one per stage: ``toyworld`` (synthetic corpus + tiny models), ``models`` (one loader),
``cache`` (activation cache), ``sae``, ``features``, ``steering``, ``reasoning``, ``pruning``,
``unlearning`` and ``report``.
"""

__version__ = "0.1.0"

from lmscalpel.jobserver import hand_over as _hand_over

# A Snakemake job script runs in the warm worker when the run started one (see lmscalpel.jobserver).
_hand_over()
