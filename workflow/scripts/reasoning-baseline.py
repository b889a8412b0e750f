"""Rule reasoning_baseline: unsteered generations and metrics for one benchmark."""

from pathlib import Path

from lmscalpel.reasoning.stage import run_baseline
from lmscalpel.workflow import model_ref, script_context

with script_context(globals(), rule="reasoning_baseline") as smk:
    toyworld = getattr(smk.input, "toyworld", None)
    run_baseline(model_ref=model_ref(smk), benchmark=smk.wildcards.benchmark,
                 toyworld_dir=str(Path(toyworld).parent) if toyworld else None, cfg=smk.params.reasoning,
                 seed=smk.params.seed, checkpoint_dir=smk.params.checkpoint_dir,
                 out_generations=smk.output.generations, out_metrics=smk.output.metrics)
