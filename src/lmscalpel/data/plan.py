"""What the plan needs to know about the run's data, from the validated config: which prompt set each consumer
reads and for what, the files outside the results that rules read (packaged files, the user's files) so that they
are rule inputs, and the checks made before any job (each set can hold its kind, a run's training and
direction-building prompts never overlap its evaluation prompts).

Cheap to import: the readers it calls import ``datasets`` or ``yaml`` only when a set is read.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from lmscalpel.config import ConfigError
from lmscalpel.data import lm_eval_tasks, prompts
from lmscalpel.data.benchmarks import BENCHMARKS, check_disjoint, load_benchmark
from lmscalpel.data.files import check_file
from lmscalpel.data.packaged import installed_version
from lmscalpel.data.text import local_files

# every prompt set of the config: key -> (kind, the roles it is read for)
PROMPT_SETS = {
    "model_card.prompts.harmful": ("harmful", ("evaluation",)),
    "model_card.prompts.benign": ("benign", ("evaluation",)),
    "safety_tune.training_prompts.harmful": ("harmful", ("train",)),
    "safety_tune.training_prompts.benign": ("benign", ("train",)),
    "safety_tune.evaluation_prompts.harmful": ("harmful", ("evaluation",)),
    "safety_tune.evaluation_prompts.benign": ("benign", ("evaluation",)),
    "steering.prompts": ("harmful", ("evaluation",)),
    "steering.refusal.prompts": ("harmful", ("train",)),
    "steering.prompts.benign": ("benign", ("train", "evaluation")),  # the direction's, the coherence calibration's
    "pruning.chat.prompts.harmful": ("harmful", ("evaluation",)),
    "pruning.chat.prompts.benign": ("benign", ("evaluation",)),
}
# a set whose legacy source 'auto' follows another one
PARENTS = {"steering.prompts.benign": "steering.prompts"}
# the config keys that list lm-eval tasks, some built from packaged benchmarks (data.lm_eval_tasks): their package
# files are rule inputs and in the run manifest
TASK_LISTS = ("pruning.zero_shot.tasks", "steering.capability.benchmark_tasks")
# the text sources a config names (data.text): their local files are rule inputs too
TEXT_DATASETS = ("cache.dataset", "reasoning.corpus", "pruning.perplexity.dataset", "pruning.calibration.dataset",
                 "model_card.perplexity.dataset", "safety_tune.perplexity.dataset")
# the reasoning benchmarks read from installed data packages: name in reasoning.eval.benchmarks -> registered benchmark
# (GPQA's packaged copy keeps a name of its own beside the hub's gpqa_diamond, whose choices follow the released code)
PACKAGED_REASONING_BENCHMARKS = {"gsm8k": "gsm8k", "aime2025": "aime2025", "gpqa_diamond_packaged": "gpqa_diamond"}


def prompt_sets_of(section_key: str) -> list[str]:
    """The prompt sets under a config section (``model_card``, ``safety_tune``, ``steering``, ``pruning.chat``)."""
    return [key for key in PROMPT_SETS if key.startswith(f"{section_key}.")]


def section(config: Mapping[str, Any], key: str) -> Any:
    node = config
    for part in key.split("."):
        node = node[part]
    return node


def parent(config: Mapping[str, Any], key: str) -> Mapping[str, Any] | None:
    return section(config, PARENTS[key]) if key in PARENTS else None


def read_roles(config: Mapping[str, Any], key: str) -> tuple[str, ...]:
    """The roles ``key`` is read for in this run (the coherence calibration reads steering's benign set too)."""
    roles = PROMPT_SETS[key][1]
    if key == "steering.prompts.benign" and not config["steering"]["coherence"]["enabled"]:
        return ("train",)
    return roles


def active_prompt_sets(config: Mapping[str, Any]) -> list[str]:
    """The prompt sets some job of this run reads."""
    stages = config["stages"]
    active = ["model_card.prompts.harmful", "model_card.prompts.benign"]
    if config["safety_tune"]["enabled"]:
        active += [k for k in PROMPT_SETS if k.startswith("safety_tune.")]
    if "steering" in stages:
        active += ["steering.prompts", "steering.refusal.prompts", "steering.prompts.benign"]  # setup builds the
        # refusal direction whether or not it is steered (the grid reports every vector's cosine to it)
    if "pruning" in stages and config["pruning"]["chat"]["enabled"]:
        active += ["pruning.chat.prompts.harmful", "pruning.chat.prompts.benign"]
    return active


def active_task_lists(config: Mapping[str, Any]) -> list[str]:
    """The task lists (:data:`TASK_LISTS`) some job of this run evaluates."""
    stages = config["stages"]
    read = {"pruning.zero_shot.tasks": "pruning" in stages and config["pruning"]["zero_shot"]["enabled"],
            "steering.capability.benchmark_tasks": ("steering" in stages
                                                    and config["steering"]["capability"]["task"] == "benchmarks")}
    return [key for key in TASK_LISTS if read[key]]


def task_files(config: Mapping[str, Any], key: str) -> list[str]:
    """The installed package files the benchmark tasks of the task list ``key`` read (a package that is not
    installed fails the plan with its pip command)."""
    return [str(f.path(key)) for f in lm_eval_tasks.benchmark_task_files(section(config, key))]


def reads_toyworld(config: Mapping[str, Any], key: str) -> bool:
    return prompts.reads_toyworld(section(config, key), key, parent(config, key))


def toyworld_prompt_keys(config: Mapping[str, Any], keys: Iterable[str]) -> list[str]:
    """The ``<set>.source`` keys of ``keys`` that read the toy world's chat prompts."""
    return [f"{key}.source" for key in keys if reads_toyworld(config, key)]


def prompt_files(config: Mapping[str, Any], keys: Iterable[str]) -> list[str]:
    """The packaged and user files the prompt sets ``keys`` read (rule inputs)."""
    found = []
    for key in keys:
        for role in read_roles(config, key):
            found += map(str, prompts.input_files(section(config, key), role=role, key=key,
                                                  parent=parent(config, key)))
    return list(dict.fromkeys(found))


def dataset_files(config: Mapping[str, Any], key: str) -> list[str]:
    """The user's files of the text source at ``key`` (``data_files``, or ``path`` naming a local file), each
    checked to exist: a missing one fails the plan naming the key."""
    dataset = section(config, key)
    if not dataset:  # model_card.perplexity.dataset null: the toy world's narrative
        return []
    where = f"{key}.data_files" if dataset.get("data_files") else f"{key}.path"
    return [str(check_file(path, where)) for path in local_files(dataset)]


def data_file_map(files: Mapping[str, str | None], key: str) -> list[str]:
    """The files of a name -> file mapping (``reasoning.eval.data_files``), each checked to exist."""
    return [str(check_file(path, f"{key}.{name}")) for name, path in files.items() if path]


def active_datasets(config: Mapping[str, Any]) -> list[str]:
    """The text sources some job of this run reads (``features.datasets.<name>`` for each labelled dataset)."""
    stages = config["stages"]
    read = {"cache.dataset": True, "model_card.perplexity.dataset": True,
            "safety_tune.perplexity.dataset": config["safety_tune"]["enabled"],
            "reasoning.corpus": "reasoning" in stages, "pruning.perplexity.dataset": "pruning" in stages,
            "pruning.calibration.dataset": "pruning" in stages}
    features = [f"features.datasets.{name}" for name in config["features"]["datasets"]] if "features" in stages else []
    return [key for key in TEXT_DATASETS if read[key]] + features


def reasoning_eval_subset(eval_cfg: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The ``load_benchmark`` config of the packaged evaluation benchmark ``name``: its window in
    ``reasoning.eval.subsets`` (none: file order from the start) and ``max_problems`` items."""
    window = (eval_cfg.get("subsets") or {}).get(name) or {}
    return {"name": PACKAGED_REASONING_BENCHMARKS[name], "seed": window.get("seed"), "skip": window.get("skip", 0),
            "max_items": eval_cfg["max_problems"]}


def reasoning_subsets(config: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The packaged benchmark subsets the reasoning stage reads, by the config key named in their errors: the
    model_cot corpus (``reasoning.corpus.benchmark``) and each packaged evaluation benchmark
    (``reasoning.eval.subsets.<name>``)."""
    reasoning = config["reasoning"]
    subsets = {}
    if reasoning["corpus"]["path"] == "model_cot":
        subsets["reasoning.corpus.benchmark"] = dict(reasoning["corpus"]["benchmark"])
    for name in reasoning["eval"]["benchmarks"]:
        if name in PACKAGED_REASONING_BENCHMARKS:
            subsets[f"reasoning.eval.subsets.{name}"] = reasoning_eval_subset(reasoning["eval"], name)
    return subsets


def benchmark_files(subset_cfg: Mapping[str, Any], key: str) -> list[str]:
    """The installed package files a benchmark subset reads (rule inputs: a package upgrade reruns its jobs)."""
    return [str(f.path(f"{key}.name")) for f in BENCHMARKS.lookup(subset_cfg["name"]).files]


def check_reasoning_subsets(config: Mapping[str, Any]) -> None:
    """The chain-of-thought corpus never holds a problem the reasoning evaluation scores (by item id)."""
    check_disjoint({key: load_benchmark(cfg, key=key) for key, cfg in reasoning_subsets(config).items()})


def data_sources(config: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every file outside the results this run reads, by config key: the package files of its prompt sets and
    benchmarks (distribution, version, file inside it, path) and the user's files of its prompt sets and text
    sources (path). The report rule passes them to the run manifest, which records each one's sha256."""
    found = []
    for key in active_prompt_sets(config):
        for role in read_roles(config, key):
            found += [{"key": key, **source, "path": str(source["path"])} for source in
                      prompts.file_sources(section(config, key), role=role, key=key, parent=parent(config, key))]
    for key in active_datasets(config):
        found += [{"key": key, "path": path} for path in dataset_files(config, key)]
    for key in active_task_lists(config):
        found += [{"key": key, "distribution": f.distribution, "version": installed_version(f.distribution),
                   "file": f.file, "path": str(f.path(key))}
                  for f in lm_eval_tasks.benchmark_task_files(section(config, key))]
    if "reasoning" in config["stages"]:
        found += [{"key": "reasoning.eval.data_files", "path": path}
                  for path in data_file_map(config["reasoning"]["eval"]["data_files"], "reasoning.eval.data_files")]
        for key, cfg in reasoning_subsets(config).items():
            found += [{"key": key, "distribution": f.distribution, "version": installed_version(f.distribution),
                       "file": f.file, "path": str(f.path(key))} for f in BENCHMARKS.lookup(cfg["name"]).files]
    return list({(s["key"], s["path"]): s for s in found}.values())


# --- checks before any job ------------------------------------------------------------------------------------
def check_data(config: Mapping[str, Any]) -> None:
    """Before any job: every local file a read text source names exists, every active prompt set can be read for
    its kind, no training or direction-building set shares prompts with an evaluation set it must not have seen
    (:func:`disjoint_pairs`), and the reasoning corpus shares no problem with the reasoning evaluation; a
    ConfigError names the key(s)."""
    try:
        for key in active_datasets(config):
            dataset_files(config, key)
        for key in active_task_lists(config):
            task_files(config, key)
        if "reasoning" in config["stages"]:
            data_file_map(config["reasoning"]["eval"]["data_files"], "reasoning.eval.data_files")
            check_reasoning_subsets(config)
        for key in active_prompt_sets(config):
            resolved = prompts.resolve(section(config, key), key, parent(config, key))
            prompts.check_set(resolved, PROMPT_SETS[key][0], key)
        for (train, train_role), (evaluation, evaluation_role) in disjoint_pairs(config):
            why = prompts.overlap(_entry(config, train, train_role), _entry(config, evaluation, evaluation_role),
                                  {k: parent(config, k) for k in (train, evaluation) if k in PARENTS})
            if why:
                raise ConfigError(f"config keys {train} and {evaluation}: the prompts that train or build a direction "
                                  f"overlap the evaluation prompts ({why}); give them disjoint sources, splits, "
                                  "categories or seeded skip / max_prompts windows")
    except ConfigError:
        raise
    except (ValueError, OSError, ImportError) as err:  # a bad or missing file, a package not installed
        raise ConfigError(str(err)) from None


def _entry(config, key: str, role: str) -> tuple[Mapping[str, Any], str, str, str]:
    return section(config, key), PROMPT_SETS[key][0], role, key


def disjoint_pairs(config: Mapping[str, Any]) -> list[tuple[tuple[str, str], tuple[str, str]]]:
    """((training key, role), (evaluation key, role)) pairs that must not share prompts: steering's refusal
    direction and its evaluation prompts; the safety tune's training prompts and every evaluation of the tuned
    model (its own, the model card's, steering's, the pruning refusal row's)."""
    active = set(active_prompt_sets(config))
    pairs = []
    if {"steering.prompts", "steering.refusal.prompts"} <= active and config["steering"]["refusal"]["enabled"]:
        pairs.append((("steering.refusal.prompts", "train"), ("steering.prompts", "evaluation")))
    if config["safety_tune"]["enabled"]:
        evaluations = {"harmful": ["safety_tune.evaluation_prompts.harmful", "model_card.prompts.harmful",
                                   "steering.prompts", "pruning.chat.prompts.harmful"],
                       "benign": ["safety_tune.evaluation_prompts.benign", "model_card.prompts.benign",
                                  "pruning.chat.prompts.benign"]}
        if "evaluation" in read_roles(config, "steering.prompts.benign"):
            evaluations["benign"].append("steering.prompts.benign")
        for kind, keys in evaluations.items():
            pairs += [((f"safety_tune.training_prompts.{kind}", "train"), (key, "evaluation"))
                      for key in keys if key in active]
    return pairs


def prompt_descriptions(config: Mapping[str, Any], keys: Iterable[str]) -> dict[str, str]:
    """key -> a short line saying what the set reads (for outputs the report shows)."""
    out = {}
    for key in keys:
        resolved = prompts.resolve(section(config, key), key, parent(config, key))
        out[key] = prompts.describe(resolved, read_roles(config, key)[0])
    return out

