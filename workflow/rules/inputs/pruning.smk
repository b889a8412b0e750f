# Input functions and final outputs of pruning.smk (snakemake --lint wants functions and rules in separate files).


def get_pruning_cell_files(wildcards=None):
    slug = pruning_plan.slug
    cells = [f"{RESULTS}/pruning/cells/dense.json"]
    cells += [f"{RESULTS}/pruning/cells/act/{t}/{slug(p)}/{c}/{m}.json"
              for t, p, c, m in pruning_plan.activation_cells(config)]
    cells += [f"{RESULTS}/pruning/cells/weight/{t}/{slug(p)}/{w}.json" for t, p, w in pruning_plan.weight_cells(config)]
    return cells


def get_pruning_chat_files(wildcards=None):
    if not config["pruning"]["chat"]["enabled"]:
        return []
    return [f"{RESULTS}/pruning/chat/none/dense.json"] + [
        f"{RESULTS}/pruning/chat/{t}/{pruning_plan.slug(p)}.json" for t, p in pruning_plan.chat_cells(config)]


def get_pruning_eval_inputs(wildcards):
    """Evaluation text (the toy world's, or pruning.perplexity.dataset's local files) and, in a cell that runs the
    zero-shot tasks, the local lm-eval tasks built from the toy world and the benchmark tasks' package files."""
    inputs = data_files("pruning.perplexity.dataset")
    if pruning_plan.reads_toyworld_perplexity(config):
        inputs["narrative"] = f"{RESULTS}/toyworld/narrative_heldout.jsonl"
    family = "weight" if "method" in wildcards.keys() else "act" if "criterion" in wildcards.keys() else "dense"
    if pruning_plan.zero_shot_cell(config, family, wildcards.get("pattern"),
                                   wildcards.get("criterion") or wildcards.get("method"),
                                   wildcards.get("mitigation", "none")):
        if pruning_plan.runs_toy_tasks(config):
            inputs["tasks"] = f"{RESULTS}/pruning/tasks"
        if files := data_plan.task_files(config, "pruning.zero_shot.tasks"):
            inputs["benchmark_files"] = files
    return inputs


def get_pruning_calibration_text(wildcards=None):
    if pruning_plan.reads_toyworld_calibration(config):
        return {"train": f"{RESULTS}/toyworld/train.jsonl"}
    return data_files("pruning.calibration.dataset")


def get_pruning_mitigation_params(wildcards):
    """The cached calibration file of S-PTS or of a learnable mitigation (computed once, reused by cells)."""
    if wildcards.mitigation == "spts":
        return {"calibration": f"{RESULTS}/pruning/calibration/spts/{wildcards.targets}.safetensors"}
    if wildcards.mitigation in pruning_plan.LEARNED_MITIGATIONS:
        return {"calibration": f"{RESULTS}/pruning/calibration/{wildcards.mitigation}/{wildcards.targets}/"
                               f"{wildcards.pattern}/{wildcards.criterion}.safetensors"}
    return {}


def get_pruning_weight_inputs(wildcards):
    return get_pruning_calibration_text() if wildcards.method == "wanda" else {}


def get_pruning_targets():
    figures = f"{RESULTS}/pruning/figures"
    return [f"{RESULTS}/pruning/table.csv", f"{RESULTS}/pruning/summary.json", f"{figures}/perplexity_heatmap.png",
            f"{figures}/activation_vs_weight.png", f"{figures}/refusal_by_pattern.png"]
