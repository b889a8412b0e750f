"""lmscalpel: reruns of five papers on interventions in LLM internals, as one Snakemake DAG.

Subpackages in layers (DEVELOPERS.md): ``toyworld`` (synthetic corpus + tiny models), ``data`` (text and prompt
sources), ``models`` (loading, chat prompt, generation, the steering hook, refusal verdicts, the model card), then one
per stage: ``cache`` (activation cache), ``sae``, ``features``, ``steering``, ``pruning``, ``safety``,
``reasoning``, ``unlearning`` and ``report``.
"""

__version__ = "0.1.0"

import os as _os

# OpenMP threads sleep at a barrier instead of spinning, unless the user chose otherwise. Set before any lmscalpel
# module imports torch (GNU OpenMP reads it once, when torch loads it). A spinning thread burns the core its partner
# needs whenever another process takes a core: a 2-thread job then ran 8x slower beside a busy process of another
# session, where nice does not reach (benchmarks/bench_contention.py); sleeping costs ~5% on an idle machine.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from lmscalpel.jobserver import hand_over as _hand_over

# A Snakemake job script runs in the warm worker when the run started one (see lmscalpel.jobserver).
_hand_over()
