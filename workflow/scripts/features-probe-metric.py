from pathlib import Path

from lmscalpel.features.stage import run_probe_metric
from lmscalpel.workflow import script_context

with script_context(globals(), rule=("features_probe_metric_scr", "features_probe_metric_tpp",
                                     "features_probe_metric_sparse_probing")) as smk:
    names = [k.removeprefix("activations_").removesuffix("_safetensors") for k in smk.input.keys()
             if k.startswith("activations_") and k.endswith("_safetensors")]
    datasets = {n: (smk.input[f"activations_{n}_safetensors"], smk.input[f"probes_{n}_safetensors"]) for n in names}
    run_probe_metric(smk.params.metric, str(Path(smk.input.cfg).parent), datasets, smk.params.features,
                     smk.params.seed, smk.params.layer, smk.output.metrics, smk.params.device)
