"""Rules unlearning_finetune_original / unlearning_finetune_gold: LoRA fine-tune on full+tofu (or retainNN+tofu),
merged."""

from lmscalpel.unlearning.stage import run_finetune, vlm_ref
from lmscalpel.workflow import script_context

with script_context(globals(), rule=("unlearning_finetune_original", "unlearning_finetune_gold")) as smk:
    cfg = smk.params.cfg
    run_finetune(vlm_ref(smk.config["model"], cfg["vlm"], smk.input.get("base")), smk.params.source,
                 smk.wildcards.get("split"), smk.output.model, cfg, smk.params.checkpoint_dir, smk.params.seed)
