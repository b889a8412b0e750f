# Rogue Scalpel (arXiv:2509.22067): steering with random / SAE / refusal directions, judged for harmful compliance.
from lmscalpel.steering import judge_check, plan as steering_plan


include: "inputs/steering.smk"


STAGE_TARGETS["steering"] = get_steering_targets
TOYWORLD_READERS["steering"] = steering_plan.toyworld_keys
LAYER_KEYS["steering"] = steering_plan.layer_keys


rule steering_setup:
    input:
        unpack(get_model_dir),
        unpack(get_model_card_gate),
        unpack(data_inputs(steering_plan.PROMPT_SETS)),
    output:
        vectors=f"{RESULTS}/steering/layer{{layer}}/setup.safetensors",
        setup=f"{RESULTS}/steering/layer{{layer}}/setup.json",
    log:
        f"{LOGS}/steering/setup_layer{{layer}}.log",
    wildcard_constraints:
        layer=r"\d+",
    conda:
        ENV
    threads: 1
    priority: CRITICAL_PATH_PRIORITY
    resources:
        mem_mb=4000,
        runtime=30,
        gpu=gpu_jobs(),
    params:
        code=code_fingerprint("steering-setup"),
        steering=steering_plan.setup_config(config),
    script:
        "../scripts/steering-setup.py"


rule steering_coherence:
    input:
        unpack(get_model_dir),
        unpack(data_inputs([steering_plan.BENIGN_PROMPTS])),
        unpack(get_steering_coherence_reference),
    output:
        coherence=f"{RESULTS}/steering/coherence.json",
    log:
        f"{LOGS}/steering/coherence.log",
    conda:
        ENV
    threads: model_job_threads()
    # the grid waits for it (without this it queued behind N:M cells for 2 min)
    priority: CRITICAL_PATH_PRIORITY
    resources:
        mem_mb=8000,
        runtime=30 if is_toy_model() else 120,
        gpu=gpu_jobs(),
    params:
        code=code_fingerprint("steering-coherence"),
        steering=steering_plan.coherence_config(config),
    script:
        "../scripts/steering-coherence.py"


rule steering_grid:
    input:
        unpack(get_model_dir),
        unpack(data_inputs([steering_plan.EVALUATION_PROMPTS])),
        unpack(get_steering_coherence),
        unpack(get_steering_sae_inputs),
        vectors=f"{RESULTS}/steering/layer{{layer}}/setup.safetensors",
        setup=f"{RESULTS}/steering/layer{{layer}}/setup.json",
    output:
        grid=f"{RESULTS}/steering/layer{{layer}}/grid.parquet",
    log:
        f"{LOGS}/steering/grid_layer{{layer}}.log",
    wildcard_constraints:
        layer=r"\d+",
    conda:
        ENV
    threads: model_job_threads()
    # the longest job of a CPU run: started as soon as its directions exist
    priority: CRITICAL_PATH_PRIORITY
    resources:
        mem_mb=8000,
        runtime=60 if is_toy_model() else 1440,
        gpu=gpu_jobs(),
    params:
        code=code_fingerprint("steering-grid"),
        steering=steering_plan.grid_config(config),
        sae_dirs=get_steering_sae_dirs,
        toy=is_toy_model(),
        seed=config["seed"],
        checkpoint_dir=f"{CHECKPOINTS}/steering/grid_layer{{layer}}",
    script:
        "../scripts/steering-grid.py"


rule steering_judge_check:
    input:
        unpack(get_steering_judge_labels),
        unpack(get_steering_coherence),
    output:
        table=f"{RESULTS}/steering/judge_agreement.csv",
        summary=f"{RESULTS}/steering/judge_agreement.json",
    log:
        f"{LOGS}/steering/judge_check.log",
    conda:
        ENV
    threads: model_job_threads()
    resources:
        mem_mb=8000,
        runtime=30,
        gpu=gpu_jobs(),
    params:
        code=code_fingerprint("steering-judge-check"),
        steering=steering_plan.judge_check_config(config),
    script:
        "../scripts/steering-judge-check.py"


rule steering_universal:
    input:
        unpack(get_model_dir),
        unpack(data_inputs([steering_plan.EVALUATION_PROMPTS])),
        unpack(get_steering_coherence),
        unpack(get_steering_setup),
    output:
        table=f"{RESULTS}/steering/universal/table.parquet",
        summary=f"{RESULTS}/steering/universal/summary.json",
    log:
        f"{LOGS}/steering/universal.log",
    conda:
        ENV
    threads: model_job_threads()
    # the second-longest job of a CPU run: started beside the grid, not after the short jobs
    priority: CRITICAL_PATH_PRIORITY - 1
    resources:
        mem_mb=8000,
        runtime=30 if is_toy_model() else 720,
        gpu=gpu_jobs(),
    params:
        code=code_fingerprint("steering-universal"),
        steering=steering_plan.universal_config(config),
        layer=lambda wildcards: steering_plan.universal_layer(config),
        toy=is_toy_model(),
        seed=config["seed"],
        checkpoint_dir=f"{CHECKPOINTS}/steering/universal",
    script:
        "../scripts/steering-universal.py"


rule steering_capability:
    input:
        unpack(get_model_dir),
        unpack(get_steering_capability_inputs),
        unpack(get_steering_setup),
    output:
        capability=f"{RESULTS}/steering/capability.json",
    log:
        f"{LOGS}/steering/capability.log",
    conda:
        ENV
    threads: model_job_threads()
    resources:
        mem_mb=8000,
        runtime=30 if is_toy_model() else 720,
        gpu=gpu_jobs(),
    params:
        code=code_fingerprint("steering-capability"),
        steering=steering_plan.capability_config(config),
        layer=lambda wildcards: steering_plan.universal_layer(config),
        markers=chat_refusal_markers(),
        seed=config["seed"],
    script:
        "../scripts/steering-capability.py"


rule steering_metrics:
    input:
        grids=get_steering_grids,
        card=f"{RESULTS}/model/model_card.json",
    output:
        metrics=f"{RESULTS}/steering/metrics.json",
        cells=f"{RESULTS}/steering/compliance_cells.csv",
        categories=f"{RESULTS}/steering/compliance_categories.csv",
        vectors=f"{RESULTS}/steering/vector_summary.csv",
        cross_paper=f"{RESULTS}/steering/cross_paper_batchtopk_vs_ortsae.csv",
        per_vector=f"{RESULTS}/steering/per_vector.csv",
        cross_category=f"{RESULTS}/steering/cross_category.csv",
    log:
        f"{LOGS}/steering/metrics.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    params:
        code=code_fingerprint("steering-metrics"),
        steering=steering_plan.metrics_config(config),
        sae_kinds=lambda wildcards: steering_plan.compared_sae_kinds(config),
        prompt_sets=lambda wildcards: steering_plan.prompt_descriptions(config),
    script:
        "../scripts/steering-metrics.py"


rule steering_figures:
    input:
        cells=f"{RESULTS}/steering/compliance_cells.csv",
        categories=f"{RESULTS}/steering/compliance_categories.csv",
        metrics=f"{RESULTS}/steering/metrics.json",
        universal_table=f"{RESULTS}/steering/universal/table.parquet",
        universal=f"{RESULTS}/steering/universal/summary.json",
        per_vector=f"{RESULTS}/steering/per_vector.csv",
        cross_category=f"{RESULTS}/steering/cross_category.csv",
    output:
        compliance=report(
            f"{RESULTS}/steering/figures/compliance_vs_c.png",
            caption="../report/steering_compliance_vs_c.rst",
            category="Rogue Scalpel",
        ),
        categories=report(
            f"{RESULTS}/steering/figures/per_category.png",
            caption="../report/steering_per_category.rst",
            category="Rogue Scalpel",
        ),
        universal=report(
            f"{RESULTS}/steering/figures/universal_vs_random.png",
            caption="../report/steering_universal.rst",
            category="Rogue Scalpel",
        ),
        histogram=report(
            f"{RESULTS}/steering/figures/vector_histogram.png",
            caption="../report/steering_vector_histogram.rst",
            category="Rogue Scalpel",
        ),
        cross_category=report(
            f"{RESULTS}/steering/figures/cross_category.png",
            caption="../report/steering_cross_category.rst",
            category="Rogue Scalpel",
        ),
    log:
        f"{LOGS}/steering/figures.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        code=code_fingerprint("steering-figures"),
    script:
        "../scripts/steering-figures.py"
