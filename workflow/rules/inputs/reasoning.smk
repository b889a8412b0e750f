# Input functions and final outputs of reasoning.smk (snakemake --lint wants functions and rules in separate files).


def get_reasoning_sae(wildcards):
    return {"sae": f"{RESULTS}/sae/{wildcards.sae}/cfg.json"}


def get_reasoning_corpus(wildcards):
    """The toy world's reasoning file when the ReasonScore corpus or a benchmark is the toy world."""
    if not reasoning_plan.reads_toyworld(config):
        return {}
    return {"toyworld": f"{RESULTS}/toyworld/reasoning.jsonl"}


def get_reasoning_targets():
    benchmarks = reasoning_plan.benchmarks(config)
    targets = []
    for sae in reasoning_plan.sae_ids(config):
        targets += [
            f"{RESULTS}/reasoning/{sae}/reasonscore.parquet",
            f"{RESULTS}/reasoning/{sae}/selected.json",
            f"{RESULTS}/reasoning/{sae}/interpretation.md",
            f"{RESULTS}/reasoning/figures/{sae}_reasonscore.png",
        ]
        for benchmark in benchmarks:
            targets += [
                f"{RESULTS}/reasoning/{sae}/{benchmark}/steering.json",
                f"{RESULTS}/reasoning/figures/{sae}_{benchmark}_steering.png",
            ]
    targets += [f"{RESULTS}/reasoning/{benchmark}/banned_vocab.json" for benchmark in benchmarks]
    return targets
