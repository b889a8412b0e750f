"""Rule steering_coherence: the coherence judge's threshold, from unsteered benign replies scored by the model as
shipped."""

from lmscalpel.models.loader import ModelRef
from lmscalpel.steering.stage import run_coherence_stage
from lmscalpel.workflow import model_ref, script_context

with script_context(globals(), rule="steering_coherence") as smk:
    reference = ModelRef.from_config(smk.config["model"], local_path=getattr(smk.input, "reference", None))
    run_coherence_stage(model_ref(smk), reference=reference, cfg=smk.params.steering,
                        chat_eval=getattr(smk.input, "chat_eval", None), output=smk.output.coherence)
