"""Rule pruning_spts: static S-PTS shifts of one target set, computed once on calibration windows."""

from lmscalpel.pruning.stage import run_spts, toyworld_dir_of
from lmscalpel.workflow import model_ref, script_context

with script_context(globals(), rule="pruning_spts") as smk:
    run_spts(model_ref(smk), targets=smk.wildcards.targets, cfg=smk.params.cfg, toyworld_dir=toyworld_dir_of(smk.input),
             seed=int(smk.config["seed"]), output=smk.output.params)
