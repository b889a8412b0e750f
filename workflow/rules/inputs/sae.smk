# Input functions and final outputs of sae.smk (snakemake --lint wants functions and rules in separate files).


def get_sae_import_spec(wildcards):
    return sae_plan.imports(config)[wildcards.sae]


def get_sae_eval_text(wildcards=None):
    """The toy world's held-out narrative for core metrics when the cache reads the toy world; otherwise the
    script reads cache.dataset (local text: its test split, its files inputs; hub: past the cached tokens)."""
    if not cache_plan.reads_toyworld(config):
        return data_files("cache.dataset")
    return {"text": f"{RESULTS}/toyworld/narrative_heldout.jsonl"}


def get_sae_targets():
    return [f"{RESULTS}/sae/figures/l0_vs_fvu.png", f"{RESULTS}/sae/core_metrics.csv"] + [
        f"{RESULTS}/sae/{sae}/core_metrics.json" for sae in sae_plan.sae_ids(config)
    ]
