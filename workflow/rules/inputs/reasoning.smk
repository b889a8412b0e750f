# Input functions and final outputs of reasoning.smk (snakemake --lint wants functions and rules in separate files).


def get_reasoning_sae(wildcards):
    return {"sae": f"{RESULTS}/sae/{wildcards.sae}/cfg.json"}


def get_reasoning_corpus(wildcards):
    """The toy world's reasoning file when the ReasonScore corpus or a benchmark is the toy world, the corpus's
    local files, and the benchmark's local file (reasoning.eval.data_files) of a job that evaluates one."""
    inputs = data_files("reasoning.corpus")
    benchmark = getattr(wildcards, "benchmark", None)
    if benchmark and (local := config["reasoning"]["eval"]["data_files"].get(benchmark)):
        inputs["benchmark_file"] = data_plan.data_file_map({benchmark: local}, "reasoning.eval.data_files")
    if reasoning_plan.reads_toyworld(config):
        inputs["toyworld"] = f"{RESULTS}/toyworld/reasoning.jsonl"
    return inputs


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
