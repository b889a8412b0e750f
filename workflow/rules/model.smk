# The model every stage loads: a GGUF file de-quantised once into a save_pretrained directory (hub models need no
# job, the toy model is trained in toyworld.smk), and its card, measured for every model.


from lmscalpel.config import config_keys
from lmscalpel.models.gguf import SOURCE_KEYS as GGUF_SOURCE_KEYS


include: "inputs/model.smk"


STAGE_TARGETS["model"] = get_model_targets


rule model_convert_gguf:
    input:
        gguf=get_gguf_files,
    output:
        model=directory(f"{RESULTS}/model/base"),
    log:
        f"{LOGS}/model/model_convert_gguf.log",
    conda:
        ENV
    threads: model_job_threads()
    resources:
        mem_mb=get_convert_gguf_mem_mb,
        runtime=20,
    params:
        code=code_fingerprint("model-convert-gguf"),
        gguf=config_keys(config["model"]["gguf"], *GGUF_SOURCE_KEYS),
        dtype=config["model"]["dtype"],
        work_dir=f"{CHECKPOINTS}/model/gguf",
    script:
        "../scripts/model-convert-gguf.py"


rule model_card:
    input:
        unpack(get_model_dir),
        unpack(get_toyworld_files),
        unpack(data_inputs(data_plan.prompt_sets_of("model_card"), ["model_card.perplexity.dataset"], chat_eval=False)),
    output:
        card=f"{RESULTS}/model/model_card.json",
    log:
        f"{LOGS}/model/model_card.log",
    conda:
        ENV
    threads: model_job_threads()
    priority: CRITICAL_PATH_PRIORITY if get_model_card_gate() else 0
    resources:
        mem_mb=4000,
        runtime=30,
        gpu=gpu_jobs(),
    params:
        code=code_fingerprint("model-card"),
        card=config["model_card"],
        window=config["toy_model"]["context_length"],
        toy_model=is_toy_model(),
        markers=chat_refusal_markers(),
    script:
        "../scripts/model-card.py"
