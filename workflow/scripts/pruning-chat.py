"""Rule pruning_chat: refusal rate and benign compliance under magnitude activation pruning (cross-paper row)."""

from lmscalpel.pruning.stage import run_chat
from lmscalpel.workflow import model_ref, script_context

with script_context(globals(), rule="pruning_chat") as smk:
    run_chat(model_ref(smk), pattern=smk.wildcards.pattern, targets=smk.wildcards.targets, cfg=smk.params.cfg,
             chat_eval=getattr(smk.input, "chat_eval", None), seed=int(smk.config["seed"]), output=smk.output.row,
             markers=smk.params.markers)
