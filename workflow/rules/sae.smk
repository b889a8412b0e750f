# SAE stage: one training job per layer trains the whole grid from one pass over the cached activations;
# released SAEs (sae.imports) converted to the same format; core metrics per SAE; one L0-vs-FVU figure.
from lmscalpel.config import check_problems
from lmscalpel.sae import plan as sae_plan

check_problems(sae_plan.grid_problems(config))


include: "inputs/sae.smk"


STAGE_TARGETS["sae"] = get_sae_targets
LAYER_KEYS["sae"] = sae_plan.layer_keys


rule sae_train:
    input:
        cache=f"{RESULTS}/cache/layer{{layer}}-{CACHE_HOOK}/manifest.json",
        verified=f"{RESULTS}/cache/layer{{layer}}-{CACHE_HOOK}/verified.json",
    output:
        cfgs=expand(f"{RESULTS}/sae/layer{{{{layer}}}}-{{suffix}}/cfg.json", suffix=sae_plan.grid_suffixes(config)),
        weights=expand(
            f"{RESULTS}/sae/layer{{{{layer}}}}-{{suffix}}/sae_weights.safetensors",
            suffix=sae_plan.grid_suffixes(config),
        ),
    log:
        f"{LOGS}/sae/sae_train_layer{{layer}}.log",
    wildcard_constraints:
        layer=r"\d+",
    conda:
        ENV
    # one thread on CPU (model.device cpu or the toy): the sparse kernels are many small ops, which stall on a
    # second, shared core, and a multi-thread job waits for every core while 1-thread jobs keep taking the free one
    threads: 1 if is_toy_model() else model_job_threads(4)
    priority: CRITICAL_PATH_PRIORITY
    resources:
        mem_mb=6000,
        runtime=120,
        gpu=gpu_jobs(),
    params:
        code=code_fingerprint("sae-train"),
        specs=lambda wildcards: sae_plan.layer_specs(config, int(wildcards.layer)),
        sae=sae_plan.train_config(config),
        model=sae_plan.train_model_config(config),
        seed=config["seed"],
        checkpoint_dir=f"{CHECKPOINTS}/sae/layer{{layer}}",
    script:
        "../scripts/sae-train.py"


# the grid (sae.seed_architectures of it) again for each extra seed offset of sae.seeds (ids -s<seed>; every extra seed
# trains the same entries, hence seed=1's suffixes), one job per layer and seed: off the critical path (steering and
# reasoning read seed 0's SAEs), so it runs beside the other jobs
use rule sae_train as sae_train_seed with:
    output:
        cfgs=expand(
            f"{RESULTS}/sae/layer{{{{layer}}}}-{{suffix}}-s{{{{seed}}}}/cfg.json",
            suffix=sae_plan.grid_suffixes(config, seed=1),
        ),
        weights=expand(
            f"{RESULTS}/sae/layer{{{{layer}}}}-{{suffix}}-s{{{{seed}}}}/sae_weights.safetensors",
            suffix=sae_plan.grid_suffixes(config, seed=1),
        ),
    log:
        f"{LOGS}/sae/sae_train_layer{{layer}}-s{{seed}}.log",
    wildcard_constraints:
        layer=r"\d+",
        seed=r"[1-9]\d*",
    priority: 0
    params:
        specs=lambda wildcards: sae_plan.layer_specs(config, int(wildcards.layer), int(wildcards.seed)),
        seed=lambda wildcards: config["seed"] + int(wildcards.seed),
        checkpoint_dir=f"{CHECKPOINTS}/sae/layer{{layer}}-s{{seed}}",


rule sae_import:
    output:
        cfg=f"{RESULTS}/sae/{{sae}}/cfg.json",
        weights=f"{RESULTS}/sae/{{sae}}/sae_weights.safetensors",
    log:
        f"{LOGS}/sae/import_{{sae}}.log",
    wildcard_constraints:
        sae=sae_plan.import_id_pattern(config),
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=16000,
        runtime=60,
    params:
        code=code_fingerprint("sae-import"),
        spec=get_sae_import_spec,
    script:
        "../scripts/sae-import.py"


rule sae_core_metrics:
    input:
        unpack(get_model_dir),
        unpack(get_sae_eval_text),
        sae=f"{RESULTS}/sae/{{sae}}/cfg.json",
        weights=f"{RESULTS}/sae/{{sae}}/sae_weights.safetensors",
    output:
        metrics=f"{RESULTS}/sae/{{sae}}/core_metrics.json",
    log:
        f"{LOGS}/sae/core_metrics_{{sae}}.log",
    wildcard_constraints:
        sae=sae_plan.sae_id_pattern(config),
    conda:
        ENV
    threads: model_job_threads()
    resources:
        mem_mb=6000,
        runtime=60,
        gpu=gpu_jobs(),
    params:
        code=code_fingerprint("sae-core-metrics"),
        eval=config["sae"]["eval"],
        hook=CACHE_HOOK,
        dataset=config["cache"]["dataset"],
        cached_sequences=cache_plan.cached_sequences(config),
        seed=config["seed"],
    script:
        "../scripts/sae-core-metrics.py"


rule sae_l0_fvu_figure:
    input:
        metrics=expand(f"{RESULTS}/sae/{{sae}}/core_metrics.json", sae=sae_plan.sae_ids(config)),
    output:
        figure=report(
            f"{RESULTS}/sae/figures/l0_vs_fvu.png",
            caption="../report/sae_l0_fvu.rst",
            category="SAE training",
        ),
        table=f"{RESULTS}/sae/core_metrics.csv",
    log:
        f"{LOGS}/sae/l0_vs_fvu.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        code=code_fingerprint("sae-l0-fvu-figure"),
    script:
        "../scripts/sae-l0-fvu-figure.py"
