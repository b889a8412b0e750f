# The toy world (model-independent text: stories, chats, spelling, reasoning, people) and the tiny Llama trained on it.


rule toyworld_generate:
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
        f"{LOGS}/toyworld/toyworld_generate.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        code=code_fingerprint("toyworld-generate"),
        toyworld=config["toyworld"],
        seed=config["seed"],
    script:
        "../scripts/toyworld-generate.py"


rule toyworld_train_model:
    input:
        train=f"{RESULTS}/toyworld/train.jsonl",
    output:
        model=directory(f"{RESULTS}/model/toy-llama"),
    log:
        f"{LOGS}/model/toyworld_train_model.log",
    conda:
        ENV
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        code=code_fingerprint("toyworld-train-model"),
        toy_model=config["toy_model"],
        seed=config["seed"],
        device=config["model"]["device"],
        checkpoint_dir=f"{CHECKPOINTS}/model/toy-llama",
    script:
        "../scripts/toyworld-train-model.py"
