"""Rules evaluate_gold_vlm / evaluate_original_vlm: CLEAR tasks + TOFU metrics of a reference model."""

from lmscalpel.unlearning.stage import local_ref, run_evaluate_reference
from lmscalpel.workflow import script_context

with script_context(globals(), rule=("evaluate_gold_vlm", "evaluate_original_vlm")) as smk:
    run_evaluate_reference(local_ref(smk.config["model"], smk.input.model), smk.params.source,
                           smk.wildcards.split, smk.params.which, smk.params.cfg, smk.output.metrics,
                           smk.params.seed, gold_ratios_in=smk.input.get("gold_ratios"),
                           gold_ratios_out=smk.output.get("gold_ratios"))
