"""Rule pruning_learnable: layer-by-layer training of a learnable mitigation for one pattern and criterion."""

from lmscalpel.pruning.stage import run_learnable, toyworld_dir_of
from lmscalpel.workflow import model_ref, script_context

with script_context(globals(), rule="pruning_learnable") as smk:
    wc = smk.wildcards
    run_learnable(model_ref(smk), mitigation=wc.mitigation, targets=wc.targets, pattern=wc.pattern,
                  criterion=wc.criterion, cfg=smk.params.cfg, toyworld_dir=toyworld_dir_of(smk.input),
                  seed=int(smk.config["seed"]), output=smk.output.params, checkpoint_dir=smk.params.checkpoint_dir)
