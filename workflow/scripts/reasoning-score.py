"""Rule reasoning_score: ReasonScore over one SAE, selection above the quantile, interpretation."""

from pathlib import Path

from lmscalpel.reasoning.stage import run_reason_score
from lmscalpel.workflow import model_ref, script_context

with script_context(globals(), rule="reasoning_score") as smk:
    toyworld = getattr(smk.input, "toyworld", None)
    run_reason_score(model_ref=model_ref(smk), sae_dir=str(Path(smk.input.sae).parent), sae_id=smk.wildcards.sae,
                     toyworld_dir=str(Path(toyworld).parent) if toyworld else None, cfg=smk.params.reasoning,
                     seed=smk.params.seed, out_scores=smk.output.scores, out_selected=smk.output.selected,
                     out_interpretation=smk.output.interpretation, cot_corpus=getattr(smk.input, "cot_corpus", None))
