from lmscalpel.steering.stage import run_grid_stage
from lmscalpel.workflow import model_ref, reference_model_ref, script_context

with script_context(globals(), rule="steering_grid") as smk:
    run_grid_stage(model_ref(smk), layer=int(smk.wildcards.layer), cfg=smk.params.steering,
                   chat_eval=getattr(smk.input, "chat_eval", None), setup_vectors=smk.input.vectors,
                   setup_json=smk.input.setup, sae_dirs=smk.params.sae_dirs,
                   checkpoint_dir=smk.params.checkpoint_dir, output=smk.output.grid, toy=smk.params.toy,
                   seed=smk.params.seed, coherence_json=getattr(smk.input, "coherence", None),
                   reference=reference_model_ref(smk))
