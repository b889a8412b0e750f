# Activation cache: every configured layer in one pass over the data, then each layer's shards checked against
# their manifest's sha256 right before its SAE training job runs (that job's outputs are deleted when it starts).
from lmscalpel.cache import plan as cache_plan

CACHE_HOOK = config["cache"]["hook"]
CACHE_LAYERS = config["cache"]["layers"]


include: "inputs/cache.smk"


STAGE_TARGETS["cache"] = get_cache_manifests
TOYWORLD_READERS["cache"] = cache_plan.toyworld_keys
LAYER_KEYS["cache"] = cache_plan.layer_keys


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


# Its output is temporary: deleted once the layer's SAEs are trained, so it is rebuilt (every shard hashed) whenever
# sae_train runs again, and a changed shard stops the run before Snakemake deletes the SAEs trained on the good one.
rule cache_verify:
    input:
        manifest=f"{RESULTS}/cache/layer{{layer}}-{CACHE_HOOK}/manifest.json",
    output:
        verified=temp(f"{RESULTS}/cache/layer{{layer}}-{CACHE_HOOK}/verified.json"),
    log:
        f"{LOGS}/cache/cache_verify_layer{{layer}}.log",
    wildcard_constraints:
        layer=r"\d+",
    conda:
        ENV
    threads: 1
    priority: CRITICAL_PATH_PRIORITY
    resources:
        mem_mb=1000,
        runtime=30,
    params:
        code=code_fingerprint("cache-verify"),
    script:
        "../scripts/cache-verify.py"
