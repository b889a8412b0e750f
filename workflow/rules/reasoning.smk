# Reasoning features (SAE-Reasoning, arXiv:2503.18878 v2): the model's own chain-of-thought corpus
# (reasoning.corpus.path model_cot), ReasonScore + selection + interpretation per SAE, an unsteered baseline per
# benchmark, steering selected vs random latents (add / clamp), the vocabulary ban, figures.
# All selected features are steered inside one rule (capped by reasoning.steering.max_features), so no checkpoint
# rule is needed. Their resumable batches (CHECKPOINTS/reasoning/...) carry a fingerprint of everything that changes
# their numbers (model files, SAE files, gamma, f_max, positions, banned sequences, generation settings, problems);
# a changed fingerprint regenerates them.
from lmscalpel.reasoning import plan as reasoning_plan


include: "inputs/reasoning.smk"


STAGE_TARGETS["reasoning"] = get_reasoning_targets
TOYWORLD_READERS["reasoning"] = reasoning_plan.toyworld_keys


rule reasoning_cot_corpus:
    input:
        unpack(get_model_dir),
        unpack(get_reasoning_cot_benchmark),
    output:
        corpus=f"{RESULTS}/reasoning/corpus/cot.jsonl",
        summary=f"{RESULTS}/reasoning/corpus/cot.json",
    log:
        f"{LOGS}/reasoning/corpus/reasoning_cot_corpus.log",
    conda:
        ENV
    threads: model_job_threads()
    resources:
        mem_mb=4000 if is_toy_model() else 64000,
        runtime=30 if is_toy_model() else 1440,
        gpu=gpu_jobs(),
    params:
        code=code_fingerprint("reasoning-cot-corpus"),
        reasoning=reasoning_plan.cot_config(config),
        seed=config["seed"],
        checkpoint_dir=f"{CHECKPOINTS}/reasoning/corpus/cot",
    script:
        "../scripts/reasoning-cot-corpus.py"


rule reasoning_score:
    input:
        unpack(get_model_dir),
        unpack(get_reasoning_corpus),
        unpack(get_reasoning_cot_corpus),
        unpack(get_reasoning_sae),
    output:
        scores=f"{RESULTS}/reasoning/{{sae}}/reasonscore.parquet",
        selected=f"{RESULTS}/reasoning/{{sae}}/selected.json",
        interpretation=f"{RESULTS}/reasoning/{{sae}}/interpretation.md",
    log:
        f"{LOGS}/reasoning/{{sae}}/reasoning_score.log",
    wildcard_constraints:
        sae="[^/]+",
    conda:
        ENV
    threads: model_job_threads()
    resources:
        mem_mb=4000 if is_toy_model() else 64000,
        runtime=30 if is_toy_model() else 600,
        gpu=gpu_jobs(),
    params:
        code=code_fingerprint("reasoning-score"),
        reasoning=reasoning_plan.score_config(config),
        seed=config["seed"],
    script:
        "../scripts/reasoning-score.py"


rule reasoning_score_figure:
    input:
        scores=f"{RESULTS}/reasoning/{{sae}}/reasonscore.parquet",
        selected=f"{RESULTS}/reasoning/{{sae}}/selected.json",
    output:
        figure=report(
            f"{RESULTS}/reasoning/figures/{{sae}}_reasonscore.png",
            caption="../report/reasoning_reasonscore.rst",
            category="SAE-Reasoning",
        ),
    log:
        f"{LOGS}/reasoning/{{sae}}/reasoning_score_figure.log",
    wildcard_constraints:
        sae="[^/]+",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        code=code_fingerprint("reasoning-score-figure"),
    script:
        "../scripts/reasoning-score-figure.py"


rule reasoning_baseline:
    input:
        unpack(get_model_dir),
        unpack(get_reasoning_corpus),
    output:
        generations=f"{RESULTS}/reasoning/{{benchmark}}/baseline.jsonl",
        metrics=f"{RESULTS}/reasoning/{{benchmark}}/baseline.json",
    log:
        f"{LOGS}/reasoning/{{benchmark}}/reasoning_baseline.log",
    wildcard_constraints:
        benchmark=reasoning_plan.benchmark_pattern(config),
    conda:
        ENV
    threads: model_job_threads()
    resources:
        mem_mb=4000 if is_toy_model() else 64000,
        runtime=30 if is_toy_model() else 1440,
        gpu=gpu_jobs(),
    params:
        code=code_fingerprint("reasoning-baseline"),
        reasoning=lambda wildcards: reasoning_plan.eval_config(config, wildcards.benchmark),
        seed=config["seed"],
        checkpoint_dir=f"{CHECKPOINTS}/reasoning/{{benchmark}}/baseline",
    script:
        "../scripts/reasoning-baseline.py"


rule reasoning_steer:
    input:
        unpack(get_model_dir),
        unpack(get_reasoning_corpus),
        unpack(get_reasoning_sae),
        scores=f"{RESULTS}/reasoning/{{sae}}/reasonscore.parquet",
        selected=f"{RESULTS}/reasoning/{{sae}}/selected.json",
        baseline=f"{RESULTS}/reasoning/{{benchmark}}/baseline.jsonl",
    output:
        metrics=f"{RESULTS}/reasoning/{{sae}}/{{benchmark}}/steering.json",
    log:
        f"{LOGS}/reasoning/{{sae}}/{{benchmark}}/reasoning_steer.log",
    wildcard_constraints:
        sae="[^/]+",
        benchmark=reasoning_plan.benchmark_pattern(config),
    conda:
        ENV
    threads: model_job_threads()
    resources:
        mem_mb=4000 if is_toy_model() else 64000,
        runtime=60 if is_toy_model() else 4320,
        gpu=gpu_jobs(),
    params:
        code=code_fingerprint("reasoning-steer"),
        reasoning=lambda wildcards: reasoning_plan.steer_config(config, wildcards.benchmark),
        seed=config["seed"],
        checkpoint_dir=f"{CHECKPOINTS}/reasoning/{{sae}}/{{benchmark}}/steering",
    script:
        "../scripts/reasoning-steer.py"


rule reasoning_steer_figure:
    input:
        metrics=f"{RESULTS}/reasoning/{{sae}}/{{benchmark}}/steering.json",
    output:
        figure=report(
            f"{RESULTS}/reasoning/figures/{{sae}}_{{benchmark}}_steering.png",
            caption="../report/reasoning_steering.rst",
            category="SAE-Reasoning",
        ),
    log:
        f"{LOGS}/reasoning/{{sae}}/{{benchmark}}/reasoning_steer_figure.log",
    wildcard_constraints:
        sae="[^/]+",
        benchmark=reasoning_plan.benchmark_pattern(config),
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        code=code_fingerprint("reasoning-steer-figure"),
    script:
        "../scripts/reasoning-steer-figure.py"


rule reasoning_ban_vocabulary:
    input:
        unpack(get_model_dir),
        unpack(get_reasoning_corpus),
        unpack(get_reasoning_cot_corpus),
        baseline=f"{RESULTS}/reasoning/{{benchmark}}/baseline.jsonl",
    output:
        metrics=f"{RESULTS}/reasoning/{{benchmark}}/banned_vocab.json",
    log:
        f"{LOGS}/reasoning/{{benchmark}}/reasoning_ban_vocabulary.log",
    wildcard_constraints:
        benchmark=reasoning_plan.benchmark_pattern(config),
    conda:
        ENV
    threads: model_job_threads()
    resources:
        mem_mb=4000 if is_toy_model() else 64000,
        runtime=30 if is_toy_model() else 2880,
        gpu=gpu_jobs(),
    params:
        code=code_fingerprint("reasoning-ban-vocabulary"),
        reasoning=lambda wildcards: reasoning_plan.ban_config(config, wildcards.benchmark),
        seed=config["seed"],
        checkpoint_dir=f"{CHECKPOINTS}/reasoning/{{benchmark}}/banned_vocab",
    script:
        "../scripts/reasoning-ban-vocabulary.py"
