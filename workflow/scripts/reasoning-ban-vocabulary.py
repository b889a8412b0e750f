"""Rule reasoning_ban_vocabulary: suppress the reasoning words inside the thinking span (and random words)."""

from pathlib import Path

from lmscalpel.reasoning.stage import run_vocab_ban
from lmscalpel.workflow import model_ref, script_context

with script_context(globals(), rule="reasoning_ban_vocabulary") as smk:
    toyworld = getattr(smk.input, "toyworld", None)
    run_vocab_ban(model_ref=model_ref(smk), benchmark=smk.wildcards.benchmark,
                  toyworld_dir=str(Path(toyworld).parent) if toyworld else None, cfg=smk.params.reasoning,
                  seed=smk.params.seed, baseline_path=smk.input.baseline, checkpoint_dir=smk.params.checkpoint_dir,
                  out_metrics=smk.output.metrics, cot_corpus=getattr(smk.input, "cot_corpus", None))
