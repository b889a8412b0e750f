"""Rule steering_judge_check: the run's judges scored against replies labelled by reading them."""

from lmscalpel.models.loader import ModelRef
from lmscalpel.steering.stage import run_judge_check_stage
from lmscalpel.workflow import script_context

with script_context(globals(), rule="steering_judge_check") as smk:
    cfg = smk.params.steering
    coherence = getattr(smk.input, "coherence", None)
    reference = (ModelRef.from_config(smk.config["model"], local_path=getattr(smk.input, "reference", None))
                 if coherence else None)
    run_judge_check_stage(cfg=cfg, labels=smk.input.labels, run=cfg["judge_check"]["labelled_run"],
                          coherence_json=coherence, reference=reference, output_csv=smk.output.table,
                          output_json=smk.output.summary)
