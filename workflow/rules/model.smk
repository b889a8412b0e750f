# Model sources other than the toy model: a GGUF file de-quantised once into a save_pretrained directory.


rule convert_gguf_model:
    input:
        gguf=get_gguf_file,
    output:
        model=directory(f"{RESULTS}/model/base"),
    log:
        f"{LOGS}/model/convert_gguf_model.log",
    conda:
        ENV
    threads: model_job_threads()
    resources:
        mem_mb=4000,
        runtime=20,
    params:
        code=code_fingerprint("models"),
        gguf=config["model"]["gguf"],
    script:
        "../scripts/convert-gguf-model.py"
