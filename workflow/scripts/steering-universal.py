from lmscalpel.steering.stage import run_universal_stage
from lmscalpel.workflow import model_ref, reference_model_ref, script_context

with script_context(globals(), rule="steering_universal") as smk:
    run_universal_stage(model_ref(smk), layer=smk.params.layer, cfg=smk.params.steering,
                        chat_eval=getattr(smk.input, "chat_eval", None), setup_json=smk.input.setup,
                        checkpoint_dir=smk.params.checkpoint_dir, output_table=smk.output.table,
                        output_json=smk.output.summary, toy=smk.params.toy, seed=smk.params.seed,
                        coherence_json=getattr(smk.input, "coherence", None), reference=reference_model_ref(smk))
