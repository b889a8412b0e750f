# Feature metrics of every SAE of the grid (SAEBench algorithms, spec sae-training-and-metrics.md §5-9):
# model activations and probes once per (layer, dataset), then one rule per metric per SAE, then the comparison.
from lmscalpel.features import plan as features_plan


include: "inputs/features.smk"


STAGE_TARGETS["features"] = get_features_targets
TOYWORLD_READERS["features"] = features_plan.toyworld_keys


rule features_spelling_activations:
    input:
        unpack(get_model_dir),
        unpack(get_features_spelling_source),
    output:
        tensors=f"{RESULTS}/features/activations/layer{{layer}}/spelling.safetensors",
        meta=f"{RESULTS}/features/activations/layer{{layer}}/spelling.json",
    log:
        f"{LOGS}/features/activations-layer{{layer}}-spelling.log",
    wildcard_constraints:
        layer=r"\d+",
    conda:
        ENV
    threads: model_job_threads()
    resources:
        mem_mb=4000,
        runtime=30,
        gpu=gpu_jobs(),
    params:
        code=code_fingerprint("features-spelling-activations"),
        features=features_plan.spelling_activations_config(config),
        seed=config["seed"],
    script:
        "../scripts/features-spelling-activations.py"


rule features_dataset_activations:
    input:
        unpack(get_model_dir),
        unpack(get_features_dataset_source),
    output:
        tensors=f"{RESULTS}/features/activations/layer{{layer}}/{{dataset}}.safetensors",
        meta=f"{RESULTS}/features/activations/layer{{layer}}/{{dataset}}.json",
    log:
        f"{LOGS}/features/activations-layer{{layer}}-{{dataset}}.log",
    wildcard_constraints:
        layer=r"\d+",
        dataset="|".join(config["features"]["datasets"]),
    conda:
        ENV
    threads: model_job_threads()
    resources:
        mem_mb=8000,
        runtime=60,
        gpu=gpu_jobs(),
    params:
        code=code_fingerprint("features-dataset-activations"),
        features=lambda wildcards: features_plan.dataset_activations_config(config, wildcards.dataset),
        seed=config["seed"],
    script:
        "../scripts/features-dataset-activations.py"


rule features_letter_probe:
    input:
        tensors=f"{RESULTS}/features/activations/layer{{layer}}/spelling.safetensors",
        meta=f"{RESULTS}/features/activations/layer{{layer}}/spelling.json",
    output:
        tensors=f"{RESULTS}/features/probes/layer{{layer}}/first_letter.safetensors",
        meta=f"{RESULTS}/features/probes/layer{{layer}}/first_letter.json",
    log:
        f"{LOGS}/features/probe-layer{{layer}}-first_letter.log",
    wildcard_constraints:
        layer=r"\d+",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=20,
    params:
        code=code_fingerprint("features-letter-probe"),
        features=features_plan.letter_probe_config(config),
        seed=config["seed"],
    script:
        "../scripts/features-letter-probe.py"


rule features_dataset_probes:
    input:
        tensors=f"{RESULTS}/features/activations/layer{{layer}}/{{dataset}}.safetensors",
        meta=f"{RESULTS}/features/activations/layer{{layer}}/{{dataset}}.json",
    output:
        tensors=f"{RESULTS}/features/probes/layer{{layer}}/{{dataset}}.safetensors",
        meta=f"{RESULTS}/features/probes/layer{{layer}}/{{dataset}}.json",
    log:
        f"{LOGS}/features/probe-layer{{layer}}-{{dataset}}.log",
    wildcard_constraints:
        layer=r"\d+",
        dataset="|".join(config["features"]["datasets"]),
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        code=code_fingerprint("features-dataset-probes"),
        features=lambda wildcards: features_plan.dataset_probes_config(config, wildcards.dataset),
        seed=config["seed"],
    script:
        "../scripts/features-dataset-probes.py"


rule features_absorption:
    input:
        unpack(get_features_absorption_inputs),
    output:
        metrics=f"{RESULTS}/features/{{sae}}/absorption.json",
    log:
        f"{LOGS}/features/{{sae}}/absorption.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
        gpu=gpu_jobs(),
    params:
        code=code_fingerprint("features-absorption"),
        features=features_plan.absorption_config(config),
        seed=config["seed"],
        device=config["model"]["device"],
        layer=get_features_layer,
    script:
        "../scripts/features-absorption.py"


rule features_composition:
    input:
        unpack(get_features_sae),
    output:
        metrics=f"{RESULTS}/features/{{sae}}/composition.json",
    log:
        f"{LOGS}/features/{{sae}}/composition.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
        gpu=gpu_jobs(),
    params:
        code=code_fingerprint("features-composition"),
        features=features_plan.composition_config(config),
        seed=config["seed"],
        device=config["model"]["device"],
    script:
        "../scripts/features-composition.py"


rule features_distinct:
    input:
        unpack(get_features_distinct_inputs),
    output:
        metrics=f"{RESULTS}/features/{{sae}}/distinct.json",
        max_cos=f"{RESULTS}/features/{{sae}}/max_cos.safetensors",
    log:
        f"{LOGS}/features/{{sae}}/distinct.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    params:
        code=code_fingerprint("features-distinct"),
        features=features_plan.distinct_config(config),
        seed=config["seed"],
    script:
        "../scripts/features-distinct.py"


rule features_probe_metric_scr:
    input:
        unpack(get_features_probe_task_inputs),
    output:
        metrics=f"{RESULTS}/features/{{sae}}/scr.json",
    log:
        f"{LOGS}/features/{{sae}}/scr.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
        gpu=gpu_jobs(),
    params:
        code=code_fingerprint("features-probe-metric"),
        features=features_plan.probe_metric_config(config, "scr"),
        seed=config["seed"],
        device=config["model"]["device"],
        layer=get_features_layer,
        metric="scr",
    script:
        "../scripts/features-probe-metric.py"


rule features_probe_metric_tpp:
    input:
        unpack(get_features_probe_task_inputs),
    output:
        metrics=f"{RESULTS}/features/{{sae}}/tpp.json",
    log:
        f"{LOGS}/features/{{sae}}/tpp.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
        gpu=gpu_jobs(),
    params:
        code=code_fingerprint("features-probe-metric"),
        features=features_plan.probe_metric_config(config, "tpp"),
        seed=config["seed"],
        device=config["model"]["device"],
        layer=get_features_layer,
        metric="tpp",
    script:
        "../scripts/features-probe-metric.py"


rule features_probe_metric_sparse_probing:
    input:
        unpack(get_features_probe_task_inputs),
    output:
        metrics=f"{RESULTS}/features/{{sae}}/sparse_probing.json",
    log:
        f"{LOGS}/features/{{sae}}/sparse_probing.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
        gpu=gpu_jobs(),
    params:
        code=code_fingerprint("features-probe-metric"),
        features=features_plan.probe_metric_config(config, "sparse_probing"),
        seed=config["seed"],
        device=config["model"]["device"],
        layer=get_features_layer,
        metric="sparse_probing",
    script:
        "../scripts/features-probe-metric.py"


rule features_compare:
    input:
        unpack(get_features_compare_inputs),
    output:
        table=f"{RESULTS}/features/comparison.csv",
        seeds=f"{RESULTS}/features/comparison_over_seeds.csv",
        absorption_vs_l0=report(
            f"{RESULTS}/features/figures/absorption_vs_l0.png",
            caption="../report/features_absorption_vs_l0.rst",
            category="OrtSAE",
        ),
        composition_vs_width=report(
            f"{RESULTS}/features/figures/composition_vs_width.png",
            caption="../report/features_composition_vs_width.rst",
            category="OrtSAE",
        ),
        max_cos_hist=report(
            f"{RESULTS}/features/figures/max_cos_hist.png",
            caption="../report/features_max_cos_hist.rst",
            category="OrtSAE",
        ),
        scr_vs_n=report(
            f"{RESULTS}/features/figures/scr_vs_n.png",
            caption="../report/features_scr_vs_n.rst",
            category="OrtSAE",
        ),
        tpp_vs_n=report(
            f"{RESULTS}/features/figures/tpp_vs_n.png",
            caption="../report/features_tpp_vs_n.rst",
            category="OrtSAE",
        ),
    log:
        f"{LOGS}/features/compare.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        code=code_fingerprint("features-compare"),
        archs=get_features_sae_archs,
        replicates=get_features_replicates,
    script:
        "../scripts/features-compare.py"
