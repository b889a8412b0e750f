"""Rule unlearning_build_vlm: a LLaVA with a random tiny CLIP tower around the toy LM (plus an <image> token)."""

from lmscalpel.unlearning.stage import run_build_vlm
from lmscalpel.workflow import model_ref, script_context

with script_context(globals(), rule="unlearning_build_vlm") as smk:
    run_build_vlm(model_ref(smk), smk.output.base, smk.params.cfg, smk.params.image_size, smk.params.seed)
