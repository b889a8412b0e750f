from pathlib import Path

from lmscalpel.features.stage import run_distinct
from lmscalpel.workflow import script_context

with script_context(globals(), rule="features_distinct") as smk:
    reference = getattr(smk.input, "reference", None)
    run_distinct(str(Path(smk.input.cfg).parent), str(Path(reference).parent) if reference else None,
                 smk.params.features, smk.params.seed, smk.output.metrics, smk.output.max_cos)
