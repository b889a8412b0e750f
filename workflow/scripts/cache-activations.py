"""Rule cache_activations: shards + manifest per layer; resumes from finished shards."""

from lmscalpel.cache.stage import run_cache
from lmscalpel.workflow import model_ref, script_context

with script_context(globals(), rule="cache_activations") as smk:
    run_cache(model_ref(smk), smk.params.cache, smk.output.manifests, toyworld_text=smk.input.get("text"))
