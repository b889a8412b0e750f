# The toy world, the tiny Llama trained on it, the model card (measured for every model) and the optional safety tune.


rule generate_toyworld:
    output:
        train=f"{RESULTS}/toyworld/train.jsonl",
        chat_eval=f"{RESULTS}/toyworld/chat_eval.jsonl",
        spelling=f"{RESULTS}/toyworld/spelling.jsonl",
        reasoning=f"{RESULTS}/toyworld/reasoning.jsonl",
        people=f"{RESULTS}/toyworld/people.jsonl",
        bios=f"{RESULTS}/toyworld/bios.jsonl",
        reviews=f"{RESULTS}/toyworld/reviews.jsonl",
        narrative_heldout=f"{RESULTS}/toyworld/narrative_heldout.jsonl",
        portraits=directory(f"{RESULTS}/toyworld/portraits"),
        metadata=f"{RESULTS}/toyworld/metadata.json",
    log:
        f"{LOGS}/toyworld/generate_toyworld.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        code=code_fingerprint("toyworld"),
        toyworld=config["toyworld"],
        seed=config["seed"],
    script:
        "../scripts/generate-toyworld.py"


rule train_toy_model:
    input:
        train=f"{RESULTS}/toyworld/train.jsonl",
    output:
        model=directory(f"{RESULTS}/model/toy-llama"),
    log:
        f"{LOGS}/model/train_toy_model.log",
    conda:
        ENV
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        code=code_fingerprint("toyworld"),
        toy_model=config["toy_model"],
        seed=config["seed"],
        device=config["model"]["device"],
        checkpoint_dir=f"{CHECKPOINTS}/model/toy-llama",
    script:
        "../scripts/train-toy-model.py"


rule model_card:
    input:
        unpack(get_model_dir),
        unpack(get_toyworld_files),
    output:
        card=f"{RESULTS}/model/model_card.json",
    log:
        f"{LOGS}/model/model_card.log",
    conda:
        ENV
    threads: model_job_threads()
    resources:
        mem_mb=4000,
        runtime=30,
        gpu=gpu_jobs(),
    params:
        code=code_fingerprint("models"),
        card=config["model_card"],
        window=config["toy_model"]["context_length"],
        enforce_gates=is_toy_model(),
        markers=chat_refusal_markers(),
    script:
        "../scripts/model-card.py"


rule safety_tune:
    input:
        unpack(get_base_model_dir),
        unpack(get_safety_tune_text),
        chat_eval=f"{RESULTS}/toyworld/chat_eval.jsonl",
    output:
        model=directory(f"{RESULTS}/model/safety-tuned"),
        card=f"{RESULTS}/model/safety_card.json",
    log:
        f"{LOGS}/model/safety_tune.log",
    conda:
        ENV
    threads: 2
    resources:
        mem_mb=8000,
        runtime=120,
        gpu=gpu_jobs(),
    params:
        code=code_fingerprint("safety"),
        safety_tune=config["safety_tune"],
        seed=config["seed"],
        checkpoint_dir=f"{CHECKPOINTS}/model/safety-tune",
    script:
        "../scripts/safety-tune.py"
