# CLEAR multimodal unlearning (arXiv:2410.18057) with TOFU metrics: mini-CLEAR, a tiny LLaVA, original and gold
# fine-tunes, the unlearning grid, table, figures, and the cross-paper robustness row.
from lmscalpel.pruning.patterns import check_patterns
from lmscalpel.unlearning import plan as unlearning_plan

check_patterns({"unlearning.robustness.pruning_pattern": config["unlearning"]["robustness"]["pruning_pattern"]})


include: "inputs/unlearning.smk"


STAGE_TARGETS["unlearning"] = get_unlearning_targets
TOYWORLD_READERS["unlearning"] = unlearning_plan.toyworld_keys
LAYER_KEYS["unlearning"] = unlearning_plan.layer_keys


rule unlearning_build_data:
    input:
        people=f"{RESULTS}/toyworld/people.jsonl",
        spelling=f"{RESULTS}/toyworld/spelling.jsonl",
        portraits=f"{RESULTS}/toyworld/portraits",
    output:
        data=directory(f"{RESULTS}/unlearning/data/mini-clear"),
    log:
        f"{LOGS}/unlearning/unlearning_build_data.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        code=code_fingerprint("unlearning-build-data"),
        cfg=unlearning_plan.sections(config, "data"),
        seed=config["seed"],
    script:
        "../scripts/unlearning-build-data.py"


rule unlearning_build_vlm:
    input:
        unpack(get_model_dir),
    output:
        base=directory(f"{RESULTS}/unlearning/models/base"),
    log:
        f"{LOGS}/unlearning/unlearning_build_vlm.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        code=code_fingerprint("unlearning-build-vlm"),
        cfg=unlearning_plan.sections(config, "vlm"),
        image_size=config["toyworld"]["portrait_size"],
        seed=config["seed"],
    script:
        "../scripts/unlearning-build-vlm.py"


rule unlearning_finetune_original:
    input:
        unpack(get_unlearning_finetune_inputs),
    output:
        model=directory(f"{RESULTS}/unlearning/models/original"),
    log:
        f"{LOGS}/unlearning/unlearning_finetune_original.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000 if is_toy_model() else 80000,
        runtime=30 if is_toy_model() else 720,
        gpu=gpu_jobs(),
    params:
        code=code_fingerprint("unlearning-finetune"),
        cfg=unlearning_plan.sections(config, "data", "vlm", "max_length", "finetune", "eval"),
        source=unlearning_data_source(),
        split=None,
        checkpoint_dir=f"{CHECKPOINTS}/unlearning/finetune/original",
        seed=config["seed"],
    script:
        "../scripts/unlearning-finetune.py"


rule unlearning_finetune_gold:
    input:
        unpack(get_unlearning_finetune_inputs),
    output:
        model=directory(f"{RESULTS}/unlearning/models/gold-{{split}}"),
    log:
        f"{LOGS}/unlearning/unlearning_finetune_gold/{{split}}.log",
    wildcard_constraints:
        split="forget[0-9]{2}",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000 if is_toy_model() else 80000,
        runtime=30 if is_toy_model() else 720,
        gpu=gpu_jobs(),
    params:
        code=code_fingerprint("unlearning-finetune"),
        cfg=unlearning_plan.sections(config, "data", "vlm", "max_length", "finetune", "eval"),
        source=unlearning_data_source(),
        checkpoint_dir=f"{CHECKPOINTS}/unlearning/finetune/gold-{{split}}",
        seed=config["seed"],
    script:
        "../scripts/unlearning-finetune.py"


rule unlearning_evaluate_gold:
    input:
        unpack(get_unlearning_data),
        model=f"{RESULTS}/unlearning/models/gold-{{split}}",
    output:
        metrics=f"{RESULTS}/unlearning/{{split}}/gold.json",
        gold_ratios=f"{RESULTS}/unlearning/{{split}}/gold_truth_ratios.json",
    log:
        f"{LOGS}/unlearning/unlearning_evaluate_gold/{{split}}.log",
    wildcard_constraints:
        split="forget[0-9]{2}",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000 if is_toy_model() else 40000,
        runtime=20 if is_toy_model() else 240,
        gpu=gpu_jobs(),
    params:
        code=code_fingerprint("unlearning-evaluate"),
        cfg=unlearning_plan.sections(config, "data", "max_length", "eval"),
        source=unlearning_data_source(),
        which="gold",
        seed=config["seed"],
    script:
        "../scripts/unlearning-evaluate.py"


rule unlearning_evaluate_original:
    input:
        unpack(get_unlearning_data),
        model=f"{RESULTS}/unlearning/models/original",
        gold_ratios=f"{RESULTS}/unlearning/{{split}}/gold_truth_ratios.json",
    output:
        metrics=f"{RESULTS}/unlearning/{{split}}/original.json",
    log:
        f"{LOGS}/unlearning/unlearning_evaluate_original/{{split}}.log",
    wildcard_constraints:
        split="forget[0-9]{2}",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000 if is_toy_model() else 40000,
        runtime=20 if is_toy_model() else 240,
        gpu=gpu_jobs(),
    params:
        code=code_fingerprint("unlearning-evaluate"),
        cfg=unlearning_plan.sections(config, "data", "max_length", "eval"),
        source=unlearning_data_source(),
        which="original",
        seed=config["seed"],
    script:
        "../scripts/unlearning-evaluate.py"


rule unlearning_unlearn:
    input:
        unpack(get_unlearning_model_inputs),
    output:
        metrics=f"{RESULTS}/unlearning/{{split}}/{{modality}}/{{method}}/l1_{{l1}}.json",
    log:
        f"{LOGS}/unlearning/unlearning_unlearn/{{split}}/{{modality}}/{{method}}/l1_{{l1}}.log",
    wildcard_constraints:
        split="forget[0-9]{2}",
        l1="off|[0-9][0-9.e+-]*",
        modality="text|visual|both",
        method="|".join(unlearning_plan.METHODS),
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000 if is_toy_model() else 80000,
        runtime=20 if is_toy_model() else 480,
        gpu=gpu_jobs(),
    params:
        code=code_fingerprint("unlearning-unlearn"),
        cfg=unlearning_plan.sections(config, "data", "max_length", "unlearn", "eval"),
        source=unlearning_data_source(),
        checkpoint_dir=f"{CHECKPOINTS}/unlearning/unlearn/{{split}}/{{modality}}/{{method}}/l1_{{l1}}",
        seed=config["seed"],
    script:
        "../scripts/unlearning-unlearn.py"


rule unlearning_robustness:
    input:
        unpack(get_unlearning_robustness_inputs),
    output:
        metrics=f"{RESULTS}/unlearning/robustness/{{split}}/{{modality}}/{{method}}/l1_{{l1}}.json",
    log:
        f"{LOGS}/unlearning/unlearning_robustness/{{split}}/{{modality}}/{{method}}/l1_{{l1}}.log",
    wildcard_constraints:
        split="forget[0-9]{2}",
        l1="off|[0-9][0-9.e+-]*",
        modality="text|visual|both|none",
        method="|".join(unlearning_plan.METHODS + ["original"]),
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000 if is_toy_model() else 80000,
        runtime=20 if is_toy_model() else 240,
        gpu=gpu_jobs(),
    params:
        code=code_fingerprint("unlearning-robustness"),
        cfg=unlearning_plan.sections(config, "data", "max_length", "unlearn", "eval", "robustness"),
        source=unlearning_data_source(),
        checkpoint_dir=f"{CHECKPOINTS}/unlearning/unlearn/{{split}}/{{modality}}/{{method}}/l1_{{l1}}",
        seed=config["seed"],
    script:
        "../scripts/unlearning-robustness.py"


rule unlearning_table:
    input:
        metrics=get_unlearning_metrics,
    output:
        csv=f"{RESULTS}/unlearning/table.csv",
        md=f"{RESULTS}/unlearning/table.md",
        scatter=report(
            f"{RESULTS}/unlearning/figures/fq_vs_utility.png",
            caption="../report/unlearning_scatter.rst",
            category="CLEAR",
        ),
        bars=report(
            f"{RESULTS}/unlearning/figures/split_bars.png",
            caption="../report/unlearning_bars.rst",
            category="CLEAR",
        ),
        forget_retain=report(
            f"{RESULTS}/unlearning/figures/forget_vs_retain.png",
            caption="../report/unlearning_forget_retain.rst",
            category="CLEAR",
        ),
    log:
        f"{LOGS}/unlearning/unlearning_table.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        code=code_fingerprint("unlearning-table"),
    script:
        "../scripts/unlearning-table.py"


rule unlearning_robustness_table:
    input:
        metrics=get_unlearning_robustness,
    output:
        csv=f"{RESULTS}/unlearning/robustness.csv",
        png=report(
            f"{RESULTS}/unlearning/figures/robustness.png",
            caption="../report/unlearning_robustness.rst",
            category="CLEAR",
        ),
    log:
        f"{LOGS}/unlearning/unlearning_robustness_table.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        code=code_fingerprint("unlearning-robustness-table"),
    script:
        "../scripts/unlearning-robustness-table.py"
