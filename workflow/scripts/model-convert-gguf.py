"""Rule model_convert_gguf: de-quantise model.gguf into a save_pretrained directory (weights in
model.dtype) with its provenance."""

from lmscalpel.models.gguf import convert_gguf
from lmscalpel.workflow import script_context

with script_context(globals(), rule="model_convert_gguf") as smk:
    convert_gguf(smk.params.gguf, smk.output.model, smk.params.work_dir, dtype=smk.params.dtype)
