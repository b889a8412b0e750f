# Input functions and final outputs of cache.smk (snakemake --lint wants functions and rules in separate files).


def get_cache_text(wildcards=None):
    """The toy corpus when the cache reads the toy world, else the local files of cache.dataset (hub datasets are
    read by the script)."""
    if not cache_plan.reads_toyworld(config):
        return data_files("cache.dataset")
    return {"text": f"{RESULTS}/toyworld/train.jsonl"}


def get_cache_manifests():
    return [f"{RESULTS}/cache/layer{layer}-{CACHE_HOOK}/manifest.json" for layer in CACHE_LAYERS]
