from pathlib import Path

from lmscalpel.features.stage import run_composition
from lmscalpel.workflow import script_context

with script_context(globals(), rule="features_composition") as smk:
    run_composition(str(Path(smk.input.cfg).parent), smk.params.features, smk.params.seed, smk.output.metrics,
                    smk.params.device)
