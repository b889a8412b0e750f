"""Rule reasoning_steer: steer selected and random latents (add / clamp) on one benchmark."""

from pathlib import Path

from lmscalpel.reasoning.stage import run_steering
from lmscalpel.workflow import model_ref, script_context

with script_context(globals(), rule="reasoning_steer") as smk:
    toyworld = getattr(smk.input, "toyworld", None)
    run_steering(model_ref=model_ref(smk), sae_dir=str(Path(smk.input.sae).parent), sae_id=smk.wildcards.sae,
                 benchmark=smk.wildcards.benchmark, toyworld_dir=str(Path(toyworld).parent) if toyworld else None,
                 cfg=smk.params.reasoning, seed=smk.params.seed, scores_path=smk.input.scores,
                 selected_path=smk.input.selected, baseline_path=smk.input.baseline,
                 checkpoint_dir=smk.params.checkpoint_dir, out_metrics=smk.output.metrics)
