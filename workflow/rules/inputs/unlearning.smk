# Input functions and final outputs of unlearning.smk (snakemake --lint wants functions and rules in separate files).


def get_unlearning_data(wildcards=None):
    """mini-CLEAR on the toy world; hub datasets (therem/CLEAR) are read by the scripts."""
    if unlearning_plan.reads_toyworld(config):
        return {"data": f"{RESULTS}/unlearning/data/mini-clear"}
    return {}


def unlearning_data_source():
    """The ``source`` param of the jobs: the mini-CLEAR directory, or the hub dataset."""
    if unlearning_plan.reads_toyworld(config):
        return f"{RESULTS}/unlearning/data/mini-clear"
    return config["unlearning"]["data"]["source"]


def get_unlearning_base(wildcards=None):
    """The tiny LLaVA built from the toy LM, or nothing for a hub VLM (unlearning.vlm.id)."""
    return {"base": f"{RESULTS}/unlearning/models/base"} if unlearning_plan.builds_tiny_vlm(config) else {}


def get_unlearning_finetune_inputs(wildcards=None):
    return {**get_unlearning_base(), **get_unlearning_data()}


def get_unlearning_model_inputs(wildcards):
    """The original model, the data and the gold truth ratios of the split."""
    return {
        "original": f"{RESULTS}/unlearning/models/original",
        "gold_ratios": f"{RESULTS}/unlearning/{wildcards.split}/gold_truth_ratios.json",
        **get_unlearning_data(),
    }


def get_unlearning_robustness_inputs(wildcards):
    inputs = get_unlearning_model_inputs(wildcards)
    if wildcards.method != "original":
        inputs["run"] = (
            f"{RESULTS}/unlearning/{wildcards.split}/{wildcards.modality}/{wildcards.method}/l1_{wildcards.l1}.json"
        )
    return inputs


def get_unlearning_metrics(wildcards=None):
    paths = [
        f"{RESULTS}/unlearning/{r['split']}/{r['modality']}/{r['method']}/l1_{r['l1']}.json"
        for r in unlearning_plan.runs(config)
    ]
    for split in unlearning_plan.splits(config):
        paths += [f"{RESULTS}/unlearning/{split}/original.json", f"{RESULTS}/unlearning/{split}/gold.json"]
    return paths


def get_unlearning_robustness(wildcards=None):
    """Each robustness run, then the original model of each of their splits."""
    runs = unlearning_plan.robustness_runs(config)
    paths = [f"{RESULTS}/unlearning/robustness/{r['split']}/{r['modality']}/{r['method']}/l1_{r['l1']}.json"
             for r in runs]
    for split in sorted({r["split"] for r in runs}):
        paths.append(f"{RESULTS}/unlearning/robustness/{split}/none/original/l1_off.json")
    return paths


def get_unlearning_targets():
    targets = [
        f"{RESULTS}/unlearning/table.csv",
        f"{RESULTS}/unlearning/table.md",
        f"{RESULTS}/unlearning/figures/fq_vs_utility.png",
        f"{RESULTS}/unlearning/figures/split_bars.png",
        f"{RESULTS}/unlearning/figures/forget_vs_retain.png",
    ]
    if config["unlearning"]["robustness"]["runs"]:
        targets += [f"{RESULTS}/unlearning/robustness.csv", f"{RESULTS}/unlearning/figures/robustness.png"]
    return targets
