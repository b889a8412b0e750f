"""Rule safety_tune: LoRA SFT of the base model to refusals, merged and saved; resumable from its checkpoints."""

from lmscalpel.safety.stage import perplexity_texts, safety_tune
from lmscalpel.workflow import model_ref, script_context

with script_context(globals(), rule="safety_tune") as smk:
    cfg = smk.params.safety_tune
    safety_tune(model_ref(smk), chat_eval=getattr(smk.input, "chat_eval", None),
                ppl_texts=perplexity_texts(cfg["perplexity"], getattr(smk.input, "text", None)),
                out_dir=smk.output.model, card_path=smk.output.card, cfg=cfg, seed=smk.params.seed,
                checkpoint_dir=smk.params.checkpoint_dir)
