"""Rule unlearning_robustness: forget quality of an unlearned (or the original) model under steering / pruning."""

from lmscalpel.unlearning.stage import l1_lambda_of, local_ref, run_robustness
from lmscalpel.workflow import script_context

with script_context(globals(), rule="unlearning_robustness") as smk:
    wc = smk.wildcards
    run_robustness(local_ref(smk.config["model"], smk.input.original), smk.params.source, wc.split, wc.modality,
                   wc.method, l1_lambda_of(wc.l1), smk.params.cfg, smk.input.gold_ratios, smk.output.metrics,
                   smk.params.checkpoint_dir, smk.params.seed)
