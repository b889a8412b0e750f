# Input functions and final outputs of features.smk (snakemake --lint wants functions and rules in separate files).


def _features_toyworld(file):
    return {"source": f"{RESULTS}/toyworld/{file}"}


def get_features_dataset_source(wildcards):
    """The toy-world file of a ``features.datasets`` entry, else its local data_files (hub datasets are read by the
    script)."""
    if wildcards.dataset not in features_plan.toyworld_datasets(config):
        return data_files(f"features.datasets.{wildcards.dataset}")
    return _features_toyworld(config["features"]["datasets"][wildcards.dataset]["file"])


def get_features_spelling_source(wildcards):
    if not features_plan.reads_toyworld_words(config):
        return {}
    return _features_toyworld("spelling.jsonl")


def get_features_sae(wildcards):
    return {"cfg": f"{RESULTS}/sae/{wildcards.sae}/cfg.json",
            "weights": f"{RESULTS}/sae/{wildcards.sae}/sae_weights.safetensors"}


def get_features_distinct_inputs(wildcards):
    inputs = get_features_sae(wildcards)
    ref = features_plan.reference_sae(config, wildcards.sae)
    if ref is not None and ref != wildcards.sae:
        inputs["reference"] = f"{RESULTS}/sae/{ref}/sae_weights.safetensors"
    return inputs


def _features_layer_files(wildcards, datasets, kind):
    layer = sae_plan.sae_layer(config, wildcards.sae)
    return {f"{kind}_{d}_{ext}": f"{RESULTS}/features/{kind}/layer{layer}/{d}.{ext}" for d in datasets
            for ext in ("safetensors", "json")}


def get_features_absorption_inputs(wildcards):
    return {**get_features_sae(wildcards),
            **_features_layer_files(wildcards, ["spelling"], "activations"),
            **_features_layer_files(wildcards, ["first_letter"], "probes")}


def get_features_probe_task_inputs(wildcards):
    """SCR, TPP and sparse probing: the SAE, the cached dataset activations and the per-dataset probes."""
    used = features_plan.probe_datasets(config)
    return {**get_features_sae(wildcards),
            **_features_layer_files(wildcards, used, "activations"),
            **_features_layer_files(wildcards, used, "probes")}


def get_features_sae_archs(wildcards):
    return {sae: features_plan.sae_arch(config, sae) for sae in features_plan.metric_sae_ids(config)}


def get_features_replicates(wildcards):
    """{sae: [seed 0's id, seed offset]}: which rows of the comparison are seeds of one grid entry."""
    replicates = sae_plan.replicates(config)
    return {sae: list(replicates[sae]) for sae in features_plan.metric_sae_ids(config)}


def get_features_layer(wildcards):
    return sae_plan.sae_layer(config, wildcards.sae)


def get_features_compare_inputs(wildcards):
    saes = features_plan.metric_sae_ids(config)
    return {"metrics": [f"{RESULTS}/features/{sae}/{metric}.json" for sae in saes for metric in features_plan.METRICS],
            "max_cos": [f"{RESULTS}/features/{sae}/max_cos.safetensors" for sae in saes],
            "core": [f"{RESULTS}/sae/{sae}/core_metrics.json" for sae in saes]}


def get_features_targets():
    return [f"{RESULTS}/features/comparison.csv", f"{RESULTS}/features/comparison_over_seeds.csv"] + [
        f"{RESULTS}/features/figures/{name}.png" for name in features_plan.FIGURES]
