# The optional safety tune (safety_tune.enabled): LoRA SFT of the base model to refusals; every stage then loads the
# tuned model (get_model_dir).


include: "inputs/safety.smk"


STAGE_TARGETS["safety"] = get_safety_targets


rule safety_tune:
    input:
        unpack(get_base_model_dir),
        unpack(get_safety_tune_text),
        unpack(data_inputs(data_plan.prompt_sets_of("safety_tune"), ["safety_tune.perplexity.dataset"])),
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
        code=code_fingerprint("safety-tune"),
        safety_tune=config["safety_tune"],
        seed=config["seed"],
        checkpoint_dir=f"{CHECKPOINTS}/model/safety-tune",
    script:
        "../scripts/safety-tune.py"
