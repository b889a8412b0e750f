# What every stage shares (no rules in this file): config validation, path constants, the job server, resources of
# model jobs, the model every stage loads, and the run's final outputs. What a stage builds is decided by its plan,
# lmscalpel/<stage>/plan.py (pure functions of the config); its input functions (paths) are in
# workflow/rules/inputs/<stage>.smk, included at the top of workflow/rules/<stage>.smk.
from pathlib import Path

from lmscalpel import jobserver
from lmscalpel.config import check_config, check_problems, effective_schema, fill_defaults
from lmscalpel.data import plan as data_plan
from lmscalpel.fingerprint import script_fingerprint
from lmscalpel.models.depth import planned_layer_problems


# the schema file completed from the registries (enums, the SAE architectures' settings); then every default is set
CONFIG_SCHEMA = effective_schema(Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml")
check_config(config, CONFIG_SCHEMA)
fill_defaults(config, CONFIG_SCHEMA)
# the local files the run reads exist, every prompt set can hold its kind, and training and direction prompts never
# overlap evaluation prompts
data_plan.check_data(config)

RUN = config["run_name"]
RESULTS = f"results/{RUN}"
LOGS = f"logs/{RUN}"
CHECKPOINTS = f"checkpoints/{RUN}"
ENV = "../../envs/lmscalpel.yaml"
STAGES = config["stages"]


JOB_SERVERS = []


onstart:
    # Local runs without conda/containers: jobs skip 5-10 s of imports each (lmscalpel/jobserver.py).
    if workflow.local_exec and not workflow.deployment_settings.deployment_method:
        JOB_SERVERS.append(jobserver.start(f"{LOGS}/jobserver.log"))


onsuccess:
    for server in JOB_SERVERS:
        jobserver.stop(server)


onerror:
    for server in JOB_SERVERS:
        jobserver.stop(server)


# Scheduling priority of the critical path (cache -> SAEs -> steering directions and coherence calibration ->
# grid): started first, while model-only jobs (N:M cells, reasoning baselines) fill the other cores. Snakemake
# does not pass a job's priority on to the jobs it waits for, so every job on the path carries it.
CRITICAL_PATH_PRIORITY = 10


def code_fingerprint(script):
    """Every rule's ``code`` param: the fingerprint of the library code its script, workflow/scripts/<script>.py,
    can run (lmscalpel/fingerprint.py), so that an edit of that code, and only of that code, reruns the rule."""
    return script_fingerprint(Path(workflow.basedir) / "workflow" / "scripts" / f"{script}.py")


def is_toy_model():
    return config["model"]["source"] == "toy"


def gpu_jobs():
    """The ``gpu`` resource of a model job: 1 (one at a time on a single-GPU machine, sbatch --gpus=1 on SLURM)
    unless the model is the toy or model.device is cpu, where model jobs share the cores like any other."""
    return 0 if is_toy_model() or config["model"]["device"] == "cpu" else 1


def model_job_threads(threads=2):
    """Threads of a model job: ``threads``, or 1 when model.device is cpu. On a CPU two 1-thread jobs side by side
    run forward passes as fast as one 2-thread job and decode ~1.4x faster (greedy decoding of a small model is
    mostly single-threaded Python), and a 2-thread job cannot start while a 1-thread one holds a core (measured on
    SmolLM2-135M, 2 cores: the steering grid ran alone for 16 min beside an idle core)."""
    return 1 if config["model"]["device"] == "cpu" else threads


def get_base_model_dir(wildcards=None):
    """The model as shipped, as a DAG input: the toy model or the de-quantised GGUF directory; hub models come
    from model.id (no input)."""
    source = config["model"]["source"]
    if source == "toy":
        return {"model": f"{RESULTS}/model/toy-llama"}
    if source == "gguf":
        return {"model": f"{RESULTS}/model/base"}
    return {}


def is_safety_tuned():
    return config["safety_tune"]["enabled"]


def get_model_dir(wildcards=None):
    """The model every stage loads (lmscalpel.models.load_model reads the ``model`` input, else model.id): the
    safety-tuned one when safety_tune.enabled, else the base model."""
    return {"model": f"{RESULTS}/model/safety-tuned"} if is_safety_tuned() else get_base_model_dir()


def chat_refusal_markers():
    """The keyword verdicts of the model card, the pruning chat row and steering capability: steering.judge.
    keyword_markers, else the toy world's ground truth on the toy model and Arditi et al.'s refusal substrings
    otherwise (as the steering judge)."""
    return config["steering"]["judge"]["keyword_markers"] or ("toyworld" if is_toy_model() else "arditi")


# Each part of a run registers, in its own .smk file, its final outputs (STAGE_TARGETS[part]: a function returning
# paths), the keys of its config whose values read the generated toy world (TOYWORLD_READERS[part]: its plan's
# toyworld_keys) and the blocks its config keys name (LAYER_KEYS[part]: its plan's layer_keys). The model card, the
# activation cache and the safety tune are parts of every run; the stages are config["stages"].
RUN_PARTS = ["model", "cache", "safety", *STAGES]
STAGE_TARGETS = {}
TOYWORLD_READERS = {}
LAYER_KEYS = {}


def get_final_outputs(wildcards):
    return [path for part in RUN_PARTS for path in STAGE_TARGETS[part]()]


def check_layer_keys():
    """Stop before any job when a config key names a block beyond the model, where planning knows its depth (the toy
    model, a GGUF header; lmscalpel.models.depth); a hub model's jobs check against the loaded model. The Snakefile
    calls it once every part has registered its LAYER_KEYS."""
    named = {}
    for part in RUN_PARTS:
        named.update(LAYER_KEYS[part](config) if part in LAYER_KEYS else {})
    check_problems(planned_layer_problems(config, named))


def toyworld_readers():
    """The config keys whose values read the generated toy world (model-independent text: chat prompts, reasoning
    traces, bios, ...): the toy model's and the safety tune's (its prompt sets and test text), then every part's.
    toyworld_generate runs when any does; the model card then measures any model on it."""
    keys = ["model.source"] if is_toy_model() else []
    if is_safety_tuned():
        keys += data_plan.toyworld_prompt_keys(config, data_plan.prompt_sets_of("safety_tune"))
        keys += [] if config["safety_tune"]["perplexity"]["dataset"]["path"] != "toyworld" else [
            "safety_tune.perplexity.dataset.path"]
    return keys + [key for part in RUN_PARTS if part in TOYWORLD_READERS for key in TOYWORLD_READERS[part](config)]


def data_files(*keys):
    """The user's local files of the text sources at config ``keys`` (``data_files``, or a ``path`` naming a file)
    as named inputs (``<key>_files``): a rule whose job reads them reruns when one is edited, and a missing one stops
    the plan with one line naming its key."""
    return {key.replace(".", "_") + "_files": files for key in keys if (files := data_plan.dataset_files(config, key))}


def data_inputs(prompt_sets=(), datasets=(), chat_eval=True):
    """An input function of the data a rule's job reads besides the run's results: the toy world's chat prompts
    when one of ``prompt_sets`` (config keys) reads them (unless ``chat_eval`` is False: the model card measures the
    toy world only when the run generates it), the files of the prompt sets (``prompt_files``: installed package
    files, so that a package upgrade reruns the job too, and the user's files) and :func:`data_files` of the text
    sources ``datasets``."""

    def get_data_inputs(wildcards=None):
        inputs = data_files(*datasets)
        if chat_eval and any(data_plan.reads_toyworld(config, key) for key in prompt_sets):
            inputs["chat_eval"] = f"{RESULTS}/toyworld/chat_eval.jsonl"
        if files := data_plan.prompt_files(config, prompt_sets):
            inputs["prompt_files"] = files
        return inputs

    return get_data_inputs
