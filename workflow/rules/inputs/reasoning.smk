# Input functions and final outputs of reasoning.smk (snakemake --lint wants functions and rules in separate files).


def get_reasoning_sae(wildcards):
    return {"sae": f"{RESULTS}/sae/{wildcards.sae}/cfg.json"}


def get_reasoning_corpus(wildcards):
    """The toy world's reasoning file when the ReasonScore corpus or a benchmark is the toy world, the corpus's
    local files, and the benchmark's local file (reasoning.eval.data_files) or installed package files of a job
    that evaluates one."""
    inputs = data_files("reasoning.corpus")
    benchmark = getattr(wildcards, "benchmark", None)
    if benchmark and (local := config["reasoning"]["eval"]["data_files"].get(benchmark)):
        inputs["benchmark_file"] = data_plan.data_file_map({benchmark: local}, "reasoning.eval.data_files")
    if benchmark:
        inputs |= reasoning_benchmark_files(benchmark)
    if reasoning_plan.reads_toyworld(config):
        inputs["toyworld"] = f"{RESULTS}/toyworld/reasoning.jsonl"
    return inputs


def reasoning_benchmark_files(benchmark=None):
    """The installed package files of the packaged benchmark subset a job reads, as an input (a package upgrade
    reruns the job): the corpus's (``benchmark`` None) or an evaluation benchmark's; none for the toy world and hub
    benchmarks."""
    subsets = reasoning_plan.benchmark_subsets(config, benchmark)
    return {"benchmark_files": data_plan.benchmark_files(cfg, key) for key, cfg in subsets.items()}


def get_reasoning_cot_benchmark(wildcards):
    return reasoning_benchmark_files()


def get_reasoning_cot_corpus(wildcards):
    """The model's chain-of-thought corpus for the jobs that read the ReasonScore corpus, when it is model_cot."""
    if reasoning_plan.writes_cot_corpus(config):
        return {"cot_corpus": f"{RESULTS}/reasoning/corpus/cot.jsonl"}
    return {}


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
    if reasoning_plan.writes_cot_corpus(config):
        targets.append(f"{RESULTS}/reasoning/corpus/cot.json")
    return targets
