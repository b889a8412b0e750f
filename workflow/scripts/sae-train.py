from lmscalpel.models.names import model_name
from lmscalpel.sae.stage import train_layer
from lmscalpel.workflow import script_context

with script_context(globals(), rule=("sae_train", "sae_train_seed")) as smk:
    specs = smk.params.specs
    out_dirs = {spec["sae_id"]: path.rsplit("/", 1)[0] for spec, path in zip(specs, smk.output.cfgs)}
    train_layer(
        cache_manifest=smk.input.cache,
        out_dirs=out_dirs,
        specs=specs,
        sae_cfg=smk.params.sae,
        seed=smk.params.seed,
        checkpoint_dir=smk.params.checkpoint_dir,
        provenance={"model_name": model_name(smk.params.model),
                    "model_source": smk.params.model["source"]},
        device=smk.params.model["device"],
    )
