from lmscalpel.features.stage import run_letter_probe
from lmscalpel.workflow import script_context

with script_context(globals(), rule="features_letter_probe") as smk:
    run_letter_probe(smk.input.tensors, smk.input.meta, smk.params.features, smk.params.seed, smk.output.tensors,
                     smk.output.meta)
