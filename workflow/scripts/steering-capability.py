from pathlib import Path

from lmscalpel.steering.stage import run_capability_stage
from lmscalpel.workflow import model_ref, script_context

with script_context(globals(), rule="steering_capability") as smk:
    chat_eval = getattr(smk.input, "chat_eval", None)
    run_capability_stage(model_ref(smk), layer=smk.params.layer, cfg=smk.params.steering,
                         setup_json=smk.input.setup, toyworld_dir=str(Path(chat_eval).parent) if chat_eval else None,
                         output=smk.output.capability, seed=smk.params.seed,
                         markers=smk.params.markers)
