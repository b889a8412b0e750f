from lmscalpel.steering.stage import run_setup
from lmscalpel.workflow import model_ref, script_context

with script_context(globals(), rule="steering_setup") as smk:
    run_setup(model_ref(smk), layer=int(smk.wildcards.layer), cfg=smk.params.steering,
              chat_eval=getattr(smk.input, "chat_eval", None), output_vectors=smk.output.vectors,
              output_json=smk.output.setup)
