"""Rules unlearning_evaluate_gold / unlearning_evaluate_original: CLEAR tasks + TOFU metrics of a reference model."""

from lmscalpel.unlearning.stage import local_ref, run_evaluate_reference
from lmscalpel.workflow import script_context

with script_context(globals(), rule=("unlearning_evaluate_gold", "unlearning_evaluate_original")) as smk:
    run_evaluate_reference(local_ref(smk.config["model"], smk.input.model), smk.params.source,
                           smk.wildcards.split, smk.params.which, smk.params.cfg, smk.output.metrics,
                           smk.params.seed, gold_ratios_in=smk.input.get("gold_ratios"),
                           gold_ratios_out=smk.output.get("gold_ratios"))
