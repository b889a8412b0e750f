from lmscalpel.features.stage import run_dataset_activations
from lmscalpel.workflow import model_ref, script_context

with script_context(globals(), rule="features_dataset_activations") as smk:
    run_dataset_activations(model_ref(smk), smk.wildcards.dataset, getattr(smk.input, "source", None),
                            int(smk.wildcards.layer), smk.params.features, smk.params.seed, smk.output.tensors,
                            smk.output.meta)
