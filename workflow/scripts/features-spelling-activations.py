from lmscalpel.features.stage import run_spelling_activations
from lmscalpel.workflow import model_ref, script_context

with script_context(globals(), rule="features_spelling_activations") as smk:
    run_spelling_activations(model_ref(smk), getattr(smk.input, "source", None), int(smk.wildcards.layer),
                             smk.params.features, smk.params.seed, smk.output.tensors, smk.output.meta)
