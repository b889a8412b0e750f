from lmscalpel.features.stage import run_dataset_probes
from lmscalpel.workflow import script_context

with script_context(globals(), rule="features_dataset_probes") as smk:
    run_dataset_probes(smk.wildcards.dataset, smk.input.tensors, smk.input.meta, smk.params.features,
                       smk.params.seed, smk.output.tensors, smk.output.meta)
