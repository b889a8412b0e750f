"""Rule unlearning_unlearn: one (method, split, modality, L1) unlearning run, evaluated; resumes from its checkpoint."""

from lmscalpel.unlearning.stage import l1_lambda_of, local_ref, run_unlearn
from lmscalpel.workflow import script_context

with script_context(globals(), rule="unlearning_unlearn") as smk:
    wc = smk.wildcards
    run_unlearn(local_ref(smk.config["model"], smk.input.original), smk.params.source, wc.split, wc.modality,
                wc.method, l1_lambda_of(wc.l1), smk.params.cfg, smk.input.gold_ratios, smk.output.metrics,
                smk.params.checkpoint_dir, smk.params.seed)
