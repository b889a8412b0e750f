"""Rules pruning_cell_dense, pruning_cell_activation, pruning_cell_weight: one grid cell (perplexity + zero-shot) as
flat JSON."""

from lmscalpel.pruning.stage import run_cell, toyworld_dir_of
from lmscalpel.workflow import model_ref, script_context

with script_context(globals(), rule=("pruning_cell_dense", "pruning_cell_activation", "pruning_cell_weight")) as smk:
    wc = dict(smk.wildcards.items())
    run_cell(model_ref(smk), family=smk.params.family, pattern=wc.get("pattern"),
             method=wc.get("criterion") or wc.get("method"), mitigation=wc.get("mitigation"),
             targets=wc.get("targets"), cfg=smk.params.cfg, toyworld_dir=toyworld_dir_of(smk.input),
             tasks_dir=getattr(smk.input, "tasks", None), calibration_file=getattr(smk.input, "calibration", None),
             seed=int(smk.config["seed"]), output=smk.output.cell)
