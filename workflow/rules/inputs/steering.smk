# Input functions and final outputs of steering.smk (snakemake --lint wants functions and rules in separate files).


def steering_sae_dirs(layer):
    """{direction kind: (SAE directory, built by the DAG)} steered at ``layer``: the project SAEs, then
    steering.sae.external (an SAE id of results/<run>/sae/, or a local path)."""
    dirs = {kind: (f"{RESULTS}/sae/{sae}", True) for kind, sae in steering_plan.project_saes(config, layer).items()}
    for name, ext in steering_plan.external_saes(config, layer).items():
        dirs[name] = (f"{RESULTS}/sae/{ext['sae_id']}", True) if ext.get("sae_id") is not None else (ext["path"], False)
    return dirs


def get_steering_sae_dirs(wildcards):
    return {kind: path for kind, (path, _) in steering_sae_dirs(int(wildcards.layer)).items()}


def get_steering_sae_inputs(wildcards):
    return {kind: f"{path}/cfg.json" for kind, (path, built) in steering_sae_dirs(int(wildcards.layer)).items()
            if built}


def get_steering_capability_inputs(wildcards=None):
    """The toy world's files (task toy) or the packaged files of the benchmark tasks (task benchmarks)."""
    task = config["steering"]["capability"]["task"]
    if task == "benchmarks":
        return {"benchmark_files": data_plan.task_files(config, "steering.capability.benchmark_tasks")}
    if task != "toy":
        return {}
    return {"chat_eval": f"{RESULTS}/toyworld/chat_eval.jsonl", "reasoning": f"{RESULTS}/toyworld/reasoning.jsonl"}


def get_steering_coherence_reference(wildcards=None):
    """The model as shipped (before safety_tune): the coherence judge's reference; hub models come from model.id."""
    base = get_base_model_dir()
    return {"reference": base["model"]} if base else {}


def get_steering_coherence(wildcards=None):
    """The coherence reference and its calibration, when steering.coherence.enabled."""
    if not config["steering"]["coherence"]["enabled"]:
        return {}
    return {**get_steering_coherence_reference(), "coherence": f"{RESULTS}/steering/coherence.json"}


def get_steering_grids(wildcards=None):
    return [f"{RESULTS}/steering/layer{layer}/grid.parquet" for layer in steering_plan.layers(config)]


def get_steering_setup(wildcards=None):
    return {"setup": f"{RESULTS}/steering/layer{steering_plan.universal_layer(config)}/setup.json"}


def get_steering_judge_labels(wildcards=None):
    """The labelled replies the judges are checked against (package data of lmscalpel.steering)."""
    return {"labels": str(judge_check.LABELS_FILE)}


def get_steering_targets():
    """The stage's final outputs, with the judged replies the report samples (grids, universal table)."""
    out = f"{RESULTS}/steering"
    return [*get_steering_grids(), f"{out}/universal/table.parquet",
            f"{out}/metrics.json", f"{out}/universal/summary.json", f"{out}/capability.json",
            f"{out}/figures/compliance_vs_c.png", f"{out}/figures/per_category.png",
            f"{out}/figures/universal_vs_random.png", f"{out}/figures/vector_histogram.png",
            f"{out}/figures/cross_category.png",
            *([f"{out}/judge_agreement.csv"] if config["steering"]["judge_check"]["labelled_run"] else [])]
