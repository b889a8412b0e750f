# N:M activation pruning (arXiv:2509.22166): perplexity / zero-shot grid over pattern x criterion x mitigation x
# target set, weight-pruning baselines, the cross-paper refusal row, one table and figures.
from lmscalpel.pruning import plan as pruning_plan
from lmscalpel.pruning.patterns import check_pruning_values

check_pruning_values(config["pruning"])


include: "inputs/pruning.smk"


STAGE_TARGETS["pruning"] = get_pruning_targets
TOYWORLD_READERS["pruning"] = pruning_plan.toyworld_keys


rule pruning_toy_tasks:
    input:
        unpack(get_model_dir),
        reasoning=f"{RESULTS}/toyworld/reasoning.jsonl",
        spelling=f"{RESULTS}/toyworld/spelling.jsonl",
    output:
        tasks=directory(f"{RESULTS}/pruning/tasks"),
    log:
        f"{LOGS}/pruning/toy_tasks.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    params:
        code=code_fingerprint("pruning-toy-tasks"),
        cfg=pruning_plan.toy_tasks_config(config),
    script:
        "../scripts/pruning-toy-tasks.py"


rule pruning_spts:
    input:
        unpack(get_model_dir),
        unpack(get_pruning_calibration_text),
    output:
        params=f"{RESULTS}/pruning/calibration/spts/{{targets}}.safetensors",
    log:
        f"{LOGS}/pruning/spts/{{targets}}.log",
    wildcard_constraints:
        targets="[A-Za-z0-9_]+",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
        gpu=gpu_jobs(),
    params:
        code=code_fingerprint("pruning-spts"),
        cfg=lambda wildcards: pruning_plan.job_config(config, "calibration", targets=wildcards.targets),
    script:
        "../scripts/pruning-spts.py"


rule pruning_learnable:
    input:
        unpack(get_model_dir),
        unpack(get_pruning_calibration_text),
    output:
        params=f"{RESULTS}/pruning/calibration/{{mitigation}}/{{targets}}/{{pattern}}/{{criterion}}.safetensors",
    log:
        f"{LOGS}/pruning/learnable/{{mitigation}}-{{targets}}-{{pattern}}-{{criterion}}.log",
    wildcard_constraints:
        mitigation="learnable[a-z_]*",
        targets="[A-Za-z0-9_]+",
        pattern="[0-9]+-[0-9]+|u[0-9.]+",
        criterion="[a-z_]+",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=120,
        gpu=gpu_jobs(),
    params:
        code=code_fingerprint("pruning-learnable"),
        cfg=lambda wildcards: pruning_plan.learnable_config(config, wildcards.targets, wildcards.pattern,
                                                      wildcards.criterion),
        checkpoint_dir=f"{CHECKPOINTS}/pruning/learnable/{{mitigation}}-{{targets}}-{{pattern}}-{{criterion}}",
    script:
        "../scripts/pruning-learnable.py"


rule pruning_cell_dense:
    input:
        unpack(get_model_dir),
        unpack(get_pruning_eval_inputs),
    output:
        cell=f"{RESULTS}/pruning/cells/dense.json",
    log:
        f"{LOGS}/pruning/cells/dense.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
        gpu=gpu_jobs(),
    params:
        code=code_fingerprint("pruning-cell"),
        cfg=lambda wildcards: pruning_plan.dense_config(config),
        family="dense",
    script:
        "../scripts/pruning-cell.py"


rule pruning_cell_activation:
    input:
        unpack(get_model_dir),
        unpack(get_pruning_eval_inputs),
        unpack(get_pruning_mitigation_params),
    output:
        cell=f"{RESULTS}/pruning/cells/act/{{targets}}/{{pattern}}/{{criterion}}/{{mitigation}}.json",
    log:
        f"{LOGS}/pruning/cells/act-{{targets}}-{{pattern}}-{{criterion}}-{{mitigation}}.log",
    wildcard_constraints:
        targets="[A-Za-z0-9_]+",
        pattern="[0-9]+-[0-9]+|u[0-9.]+",
        criterion="[a-z_]+",
        mitigation="[a-z_]+",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
        gpu=gpu_jobs(),
    params:
        code=code_fingerprint("pruning-cell"),
        cfg=lambda wildcards: pruning_plan.activation_config(config, wildcards.targets, wildcards.pattern,
                                                       wildcards.criterion, wildcards.mitigation),
        family="act",
    script:
        "../scripts/pruning-cell.py"


rule pruning_cell_weight:
    input:
        unpack(get_model_dir),
        unpack(get_pruning_eval_inputs),
        unpack(get_pruning_weight_inputs),
    output:
        cell=f"{RESULTS}/pruning/cells/weight/{{targets}}/{{pattern}}/{{method}}.json",
    log:
        f"{LOGS}/pruning/cells/weight-{{targets}}-{{pattern}}-{{method}}.log",
    wildcard_constraints:
        targets="[A-Za-z0-9_]+",
        pattern="[0-9]+-[0-9]+|u[0-9.]+",
        method="magnitude|wanda",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
        gpu=gpu_jobs(),
    params:
        code=code_fingerprint("pruning-cell"),
        cfg=lambda wildcards: pruning_plan.weight_config(config, wildcards.targets, wildcards.method,
                                                   wildcards.pattern),
        family="weight",
    script:
        "../scripts/pruning-cell.py"


rule pruning_chat:
    input:
        unpack(get_model_dir),
        unpack(data_inputs(pruning_plan.CHAT_PROMPT_SETS)),
    output:
        row=f"{RESULTS}/pruning/chat/{{targets}}/{{pattern}}.json",
    log:
        f"{LOGS}/pruning/chat/{{targets}}-{{pattern}}.log",
    wildcard_constraints:
        targets="[A-Za-z0-9_]+",
        pattern="dense|[0-9]+-[0-9]+|u[0-9.]+",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
        gpu=gpu_jobs(),
    params:
        code=code_fingerprint("pruning-chat"),
        cfg=lambda wildcards: pruning_plan.chat_config(config, wildcards.targets, wildcards.pattern),
        markers=chat_refusal_markers(),
    script:
        "../scripts/pruning-chat.py"


rule pruning_table:
    input:
        cells=get_pruning_cell_files,
        chat=get_pruning_chat_files,
    output:
        table=f"{RESULTS}/pruning/table.csv",
        summary=f"{RESULTS}/pruning/summary.json",
        heatmap=report(
            f"{RESULTS}/pruning/figures/perplexity_heatmap.png",
            caption="../report/pruning_heatmap.rst",
            category="N:M activation pruning",
        ),
        bars=report(
            f"{RESULTS}/pruning/figures/activation_vs_weight.png",
            caption="../report/pruning_act_vs_weight.rst",
            category="N:M activation pruning",
        ),
        chat=report(
            f"{RESULTS}/pruning/figures/refusal_by_pattern.png",
            caption="../report/pruning_refusal.rst",
            category="N:M activation pruning",
        ),
    log:
        f"{LOGS}/pruning/table.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        code=code_fingerprint("pruning-table"),
        targets=config["pruning"]["grid_targets"][0],
    script:
        "../scripts/pruning-table.py"
