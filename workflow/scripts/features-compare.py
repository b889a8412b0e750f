from lmscalpel.features.compare import run_compare
from lmscalpel.workflow import script_context

with script_context(globals(), rule="features_compare") as smk:
    run_compare(list(smk.input.metrics), list(smk.input.max_cos), smk.params.archs, smk.output, list(smk.input.core),
                {sae: tuple(entry) for sae, entry in smk.params.replicates.items()})
