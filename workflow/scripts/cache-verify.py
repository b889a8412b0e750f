"""Rule cache_verify: every shard of one cached layer matches its manifest's sha256, before its SAEs are trained."""

from lmscalpel.cache.reader import verify_cache
from lmscalpel.workflow import script_context

with script_context(globals(), rule="cache_verify") as smk:
    verify_cache(smk.input.manifest, smk.output.verified)
