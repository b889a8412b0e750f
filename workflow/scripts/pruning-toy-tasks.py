"""Rule pruning_toy_tasks: local lm-eval YAML tasks over the toy world (absolute data paths)."""

from lmscalpel.pruning.stage import run_build_tasks, toyworld_dir_of
from lmscalpel.workflow import model_ref, script_context

with script_context(globals(), rule="pruning_toy_tasks") as smk:
    run_build_tasks(toyworld_dir_of(smk.input), smk.output.tasks, smk.params.cfg, seed=int(smk.config["seed"]),
                    ref=model_ref(smk))
