"""lmscalpel: reruns of five papers on interventions in LLM internals, as one Snakemake DAG.

Subpackages in layers (DEVELOPERS.md): ``toyworld`` (synthetic corpus + tiny models), ``data`` (text and prompt
sources), ``models`` (loading, chat prompt, generation, the steering hook, refusal verdicts, the model card), then one
per stage: ``cache`` (activation cache), ``sae``, ``features``, ``steering``, ``pruning``, ``safety``,
``reasoning``, ``unlearning`` and ``report``.
"""

__version__ = "0.1.0"

from lmscalpel.jobserver import hand_over as _hand_over

# A Snakemake job script runs in the warm worker when the run started one (see lmscalpel.jobserver).
_hand_over()
