"""Rules finetune_original_vlm / finetune_gold_vlm: LoRA fine-tune on full+tofu (or retainNN+tofu), merged."""

from lmscalpel.unlearning.stage import run_finetune, vlm_ref
from lmscalpel.workflow import script_context

with script_context(globals(), rule=("finetune_original_vlm", "finetune_gold_vlm")) as smk:
    cfg = smk.params.cfg
    run_finetune(vlm_ref(smk.config["model"], cfg["vlm"], smk.input.get("base")), smk.params.source,
                 smk.wildcards.get("split"), smk.output.model, cfg, smk.params.checkpoint_dir, smk.params.seed)
