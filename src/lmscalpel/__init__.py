"""lmscalpel: reruns of five papers on interventions in LLM internals, as one Snakemake DAG.

Subpackages, one per stage: ``toyworld`` (synthetic corpus + tiny models), ``models`` (one loader),
``cache`` (activation cache), ``sae``, ``features``, ``steering``, ``reasoning``, ``pruning``,
``unlearning`` and ``report``.
"""

__version__ = "0.1.0"
