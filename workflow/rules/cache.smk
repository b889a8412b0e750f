# Activation cache: every configured layer in one pass over the data.
from lmscalpel.cache import plan as cache_plan

CACHE_HOOK = config["cache"]["hook"]
CACHE_LAYERS = config["cache"]["layers"]


include: "inputs/cache.smk"


STAGE_TARGETS["cache"] = get_cache_manifests
TOYWORLD_READERS["cache"] = cache_plan.toyworld_keys


rule cache_activations:
    input:
        unpack(get_model_dir),
        unpack(get_cache_text),
    output:
        manifests=get_cache_manifests(),
    log:
        f"{LOGS}/cache/cache_activations.log",
    conda:
        ENV
    threads: model_job_threads()
    priority: CRITICAL_PATH_PRIORITY
    resources:
        mem_mb=8000,
        runtime=120,
        gpu=gpu_jobs(),
    params:
        code=code_fingerprint("cache-activations"),
        cache=config["cache"],
    script:
        "../scripts/cache-activations.py"
