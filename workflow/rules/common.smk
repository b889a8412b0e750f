# Config validation, path constants and input helpers (no rules in this file).
from pathlib import Path

from snakemake.utils import validate

from lmscalpel import jobserver
from lmscalpel.config import check_config
# rules pass code=code_fingerprint("<subpackage>"): an edit of the library code a rule runs reruns it
from lmscalpel.fingerprint import code_fingerprint
from lmscalpel.pruning.patterns import check_pruning_values


check_config(config, Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml")
validate(config, schema="../schemas/config.schema.yaml")

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


def get_gguf_file(wildcards=None):
    """The configured GGUF file (model.gguf.path, or model.gguf.file inside model.gguf.distribution)."""
    from lmscalpel.models.gguf import locate_gguf

    return str(locate_gguf(config["model"]["gguf"]))


def is_safety_tuned():
    return config["safety_tune"]["enabled"]


def get_model_dir(wildcards=None):
    """The model every stage loads (lmscalpel.models.load_model reads the ``model`` input, else model.id): the
    safety-tuned one when safety_tune.enabled, else the base model."""
    return {"model": f"{RESULTS}/model/safety-tuned"} if is_safety_tuned() else get_base_model_dir()


def get_safety_tune_text(wildcards=None):
    """The toy world's held-out narrative for the tune's test perplexity (other datasets are read by the script)."""
    if config["safety_tune"]["perplexity"]["dataset"]["path"] != "toyworld":
        return {}
    return {"text": f"{RESULTS}/toyworld/narrative_heldout.jsonl"}


def get_final_outputs(wildcards):
    targets = [f"{RESULTS}/model/model_card.json", *get_cache_manifests()]
    if is_safety_tuned():
        targets.append(f"{RESULTS}/model/safety_card.json")
    for stage in STAGES:
        targets += STAGE_TARGETS[stage]()
    return targets


# --- foundation ---
TOYWORLD_FILES = ["train", "chat_eval", "spelling", "reasoning", "people", "bios", "reviews", "narrative_heldout"]
CACHE_HOOK = config["cache"]["hook"]
CACHE_LAYERS = config["cache"]["layers"]


def toyworld_readers():
    """The config keys whose values read the generated toy world (model-independent text: chat prompts, reasoning
    traces, bios, ...). generate_toyworld runs when any does; the model card then measures any model on it."""
    steering, reasoning, pruning, features = (config[s] for s in ("steering", "reasoning", "pruning", "features"))
    zero_shot = pruning["zero_shot"]
    reads = {"model.source": is_toy_model(), "cache.dataset.path": config["cache"]["dataset"]["path"] == "toyworld",
             "safety_tune.enabled": is_safety_tuned()}
    if "steering" in STAGES:
        reads["steering.prompts.source"] = "toyworld" in (steering["prompts"]["source"],
                                                         steering["prompts"]["benign"]["source"])
        reads["steering.capability.task"] = steering["capability"]["task"] == "toy"
    if "reasoning" in STAGES:
        reads["reasoning.corpus.path"] = reasoning["corpus"]["path"] == "toyworld"
        reads["reasoning.eval.benchmarks"] = "toyworld" in reasoning["eval"]["benchmarks"]
    if "pruning" in STAGES:
        reads["pruning.perplexity.dataset.path"] = pruning["perplexity"]["dataset"]["path"] == "toyworld"
        reads["pruning.calibration.dataset.path"] = pruning["calibration"]["dataset"]["path"] == "toyworld"
        reads["pruning.chat.enabled"] = pruning["chat"]["enabled"]
        reads["pruning.zero_shot.tasks"] = zero_shot["enabled"] and any(t.startswith("toy_") for t in zero_shot["tasks"])
    if "features" in STAGES:
        reads["features.datasets"] = any(d["path"] == "toyworld" for d in features["datasets"].values())
        reads["features.absorption.words"] = features["absorption"]["words"] == "toyworld"
    if "unlearning" in STAGES:
        reads["unlearning.data.source"] = config["unlearning"]["data"]["source"] == "toyworld"
    return [key for key, reads_toyworld in reads.items() if reads_toyworld]


def chat_refusal_markers():
    """The keyword verdicts of the model card, the pruning chat row and steering capability: steering.judge.
    keyword_markers, else the toy world's ground truth on the toy model and Arditi et al.'s refusal substrings
    otherwise (as the steering judge)."""
    return config["steering"]["judge"]["keyword_markers"] or ("toyworld" if is_toy_model() else "arditi")


def get_toyworld_files(wildcards=None):
    """Toy-world ground truth the model card measures on, when the run generates the toy world."""
    if not toyworld_readers():
        return {}
    return {name: f"{RESULTS}/toyworld/{name}.jsonl" for name in TOYWORLD_FILES}


def get_cache_text(wildcards=None):
    """The toy corpus when the cache reads the toy world; other datasets are read by the script."""
    if config["cache"]["dataset"]["path"] != "toyworld":
        return {}
    return {"text": f"{RESULTS}/toyworld/train.jsonl"}


def get_cache_manifests():
    return [f"{RESULTS}/cache/layer{layer}-{CACHE_HOOK}/manifest.json" for layer in CACHE_LAYERS]


# --- end foundation ---

# --- sae ---
import re

SAE_CFG = config["sae"]


def sae_layers():
    """Layers with an SAE grid: sae.layers, or every cached layer when null."""
    layers = SAE_CFG["layers"] if SAE_CFG["layers"] is not None else CACHE_LAYERS
    missing = sorted(set(layers) - set(CACHE_LAYERS))
    if missing:
        raise ValueError(f"config key sae.layers: layers {missing} are not cached (cache.layers: {CACHE_LAYERS})")
    return list(layers)


def sae_grid():
    """Per-layer grid entries (without the layer): id suffix + hyper-parameters, architecture-major order.

    Ids: layer{L}-relu-w{width}-l1c{l1}, layer{L}-{topk|batchtopk}-w{width}-k{k}, layer{L}-ortsae-w{width}-k{k}-g{gamma}.
    """
    entries = []
    for arch in SAE_CFG["architectures"]:
        for width in SAE_CFG["widths"]:
            base = {"architecture": arch, "width": width, "k": None, "l1_coefficient": None, "gamma": None}
            if arch == "relu":
                for l1 in SAE_CFG["relu_l1_coefficients"]:
                    entries.append({**base, "l1_coefficient": l1, "suffix": f"relu-w{width}-l1c{l1:g}"})
                continue
            for k in SAE_CFG["ks"]:
                if arch == "ortsae":
                    for gamma in SAE_CFG["ortsae_gammas"]:
                        entries.append({**base, "k": k, "gamma": gamma, "suffix": f"ortsae-w{width}-k{k}-g{gamma:g}"})
                else:
                    entries.append({**base, "k": k, "suffix": f"{arch}-w{width}-k{k}"})
    return entries


def sae_suffixes():
    return [entry["suffix"] for entry in sae_grid()]


def sae_specs(layer):
    """Grid entries of one layer, with their sae_id (what the train_saes script receives)."""
    return [{**{k: v for k, v in e.items() if k != "suffix"}, "sae_id": f"layer{layer}-{e['suffix']}"}
            for e in sae_grid()]


def sae_grid_ids():
    """Every SAE id of the trained grid."""
    return [spec["sae_id"] for layer in sae_layers() for spec in sae_specs(layer)]


def sae_imports():
    """``sae.imports`` by id (released SAEs, rule import_sae); ids are unique and not ids of the trained grid."""
    imports = {}
    for spec in SAE_CFG["imports"]:
        if spec["id"] in imports:
            raise ValueError(f"config key sae.imports: id {spec['id']!r} is given twice")
        imports[spec["id"]] = spec
    clash = sorted(set(imports) & set(sae_grid_ids()))
    if clash:
        raise ValueError(f"config key sae.imports: ids {clash} are ids of the trained SAE grid; rename them")
    return imports


def sae_ids():
    """Every SAE id (directories results/<run>/sae/<sae_id>/): the trained grid, then the imported SAEs."""
    return sae_grid_ids() + list(sae_imports())


def sae_import_constraint():
    """Wildcard pattern of the imported ids; matches nothing when there are none."""
    return "|".join(re.escape(sae_id) for sae_id in sae_imports()) or "(?!)"


def sae_id_constraint():
    """Wildcard pattern of every SAE id (grid ids start with layer<L>-)."""
    return "|".join([r"layer\d+-[A-Za-z0-9_.-]+", *(re.escape(sae_id) for sae_id in sae_imports())])


def get_sae_import_spec(wildcards):
    return sae_imports()[wildcards.sae]


def sae_ids_for(arch):
    return [spec["sae_id"] for layer in sae_layers() for spec in sae_specs(layer) if spec["architecture"] == arch]


def get_sae_eval_text(wildcards=None):
    """The toy world's held-out narrative for core metrics when the cache reads the toy world; otherwise the
    script reads cache.dataset (local text: its test split; hub: past the cached tokens)."""
    if config["cache"]["dataset"]["path"] != "toyworld":
        return {}
    return {"text": f"{RESULTS}/toyworld/narrative_heldout.jsonl"}


def get_sae_targets():
    return [f"{RESULTS}/sae/figures/l0_vs_fvu.png", f"{RESULTS}/sae/core_metrics.csv"] + [
        f"{RESULTS}/sae/{sae}/core_metrics.json" for sae in sae_ids()
    ]


# --- end sae ---

# --- features ---
FEATURE_METRICS = ["absorption", "composition", "distinct", "scr", "tpp", "sparse_probing"]
FEATURE_FIGURES = ["absorption_vs_l0", "composition_vs_width", "max_cos_hist", "scr_vs_n", "tpp_vs_n"]


def features_sae_layer(sae_id):
    """The block an SAE reads: an import's hook_layer, ``layer<L>`` in its id, else the only cached layer."""
    import re

    if sae_id in sae_imports():
        return sae_imports()[sae_id]["hook_layer"]
    match = re.search(r"layer(\d+)", sae_id)
    if match:
        return int(match.group(1))
    if len(CACHE_LAYERS) != 1:
        raise ValueError(f"SAE id {sae_id!r} names no layer and cache.layers has several; cannot place it")
    return CACHE_LAYERS[0]


def features_reference_sae(sae_id):
    """The run's reference SAE (``features.distinct.reference_arch``) at the same layer sharing most id parts
    (width, k) with ``sae_id``; None if the grid has none."""
    arch = config["features"]["distinct"]["reference_arch"]
    layer = features_sae_layer(sae_id)
    parts = set(sae_id.replace("_", "-").split("-"))
    candidates = [s for s in sae_ids_for(arch) if features_sae_layer(s) == layer]
    if not candidates:
        return None
    return max(candidates, key=lambda s: len(parts & set(s.replace("_", "-").split("-"))))


def _features_toyworld(file):
    return {"source": f"{RESULTS}/toyworld/{file}"}


def get_features_dataset_source(wildcards):
    """The toy-world file of a ``features.datasets`` entry (hub datasets are read by the script)."""
    spec = config["features"]["datasets"][wildcards.dataset]
    if spec["path"] != "toyworld":
        return {}
    return _features_toyworld(spec["file"])


def get_features_spelling_source(wildcards):
    if config["features"]["absorption"]["words"] != "toyworld":
        return {}
    return _features_toyworld("spelling.jsonl")


def get_features_sae(wildcards):
    return {"cfg": f"{RESULTS}/sae/{wildcards.sae}/cfg.json",
            "weights": f"{RESULTS}/sae/{wildcards.sae}/sae_weights.safetensors"}


def get_features_distinct_inputs(wildcards):
    inputs = get_features_sae(wildcards)
    ref = features_reference_sae(wildcards.sae)
    if ref is not None and ref != wildcards.sae:
        inputs["reference"] = f"{RESULTS}/sae/{ref}/sae_weights.safetensors"
    return inputs


def _features_layer_files(wildcards, datasets, kind):
    layer = features_sae_layer(wildcards.sae)
    return {f"{kind}_{d}_{ext}": f"{RESULTS}/features/{kind}/layer{layer}/{d}.{ext}" for d in datasets
            for ext in ("safetensors", "json")}


def get_features_absorption_inputs(wildcards):
    return {**get_features_sae(wildcards),
            **_features_layer_files(wildcards, ["spelling"], "activations"),
            **_features_layer_files(wildcards, ["first_letter"], "probes")}


def get_features_probe_task_inputs(wildcards):
    """SCR, TPP and sparse probing: the SAE, the cached dataset activations and the per-dataset probes."""
    used = sorted(features_probe_datasets())
    return {**get_features_sae(wildcards),
            **_features_layer_files(wildcards, used, "activations"),
            **_features_layer_files(wildcards, used, "probes")}


def features_probe_datasets():
    """The ``features.datasets`` that SCR, TPP or sparse probing use."""
    cfg = config["features"]
    used = set(cfg["scr"]["pairs"]) | set(cfg["tpp"]["classes"])
    used |= {task["dataset"] for task in cfg["sparse_probing"]["tasks"]}
    return used


def features_sae_arch(sae_id):
    """The architecture of an SAE of the grid (relu, topk, batchtopk, ortsae), or imported-<format>."""
    if sae_id in sae_imports():
        return f"imported-{sae_imports()[sae_id]['format']}"
    for arch in ("relu", "topk", "batchtopk", "ortsae"):
        if sae_id in sae_ids_for(arch):
            return arch
    raise ValueError(f"SAE id {sae_id!r} is in no architecture of the sae grid")


def features_sae_ids():
    """The SAEs that get feature metrics: trained SAEs of ``features.archs`` (null: all), and every import."""
    archs = config["features"]["archs"]
    return [sae for sae in sae_ids() if archs is None or sae in sae_imports() or features_sae_arch(sae) in archs]


def get_features_sae_archs(wildcards):
    return {sae: features_sae_arch(sae) for sae in features_sae_ids()}


def get_features_layer(wildcards):
    return features_sae_layer(wildcards.sae)


def get_features_compare_inputs(wildcards):
    saes = features_sae_ids()
    return {"metrics": [f"{RESULTS}/features/{sae}/{metric}.json" for sae in saes for metric in FEATURE_METRICS],
            "max_cos": [f"{RESULTS}/features/{sae}/max_cos.safetensors" for sae in saes],
            "core": [f"{RESULTS}/sae/{sae}/core_metrics.json" for sae in saes]}


def get_features_targets():
    return [f"{RESULTS}/features/comparison.csv"] + [
        f"{RESULTS}/features/figures/{name}.png" for name in FEATURE_FIGURES]


# --- end features ---

# --- steering ---
# The helpers below run only while Snakemake plans steering jobs (rule inputs/params are functions), so presets
# without the steering stage never ask the hub for the model's layer count.
import functools
import re


@functools.lru_cache(maxsize=None)
def _steering_hub_num_layers(model_id, revision, trust_remote_code):
    from transformers import AutoConfig

    hub_config = AutoConfig.from_pretrained(model_id, revision=revision, trust_remote_code=trust_remote_code)
    return hub_config.get_text_config().num_hidden_layers


@functools.lru_cache(maxsize=None)
def _steering_gguf_num_layers(path):
    from lmscalpel.models.gguf import gguf_num_layers

    return gguf_num_layers(path)


def steering_num_layers(key):
    """L, the model's decoder blocks (toy_model.num_hidden_layers, the GGUF metadata, or the hub config); ``key``
    is the config key whose null value needs it, named in the error when the hub cannot be reached."""
    if is_toy_model():
        return config["toy_model"]["num_hidden_layers"]
    model = config["model"]
    if model["source"] == "gguf":
        return _steering_gguf_num_layers(get_gguf_file())
    try:
        return _steering_hub_num_layers(model["id"], model["revision"], model["trust_remote_code"])
    except OSError as err:
        raise ValueError(f"config key {key}: null needs the layer count of {model['id']} from the hub, which failed "
                         f"(offline?); set {key} explicitly ({err})") from err


def steering_layers():
    """Steered blocks: steering.layers, else floor(L/3), floor(L/2), floor(2L/3) of the model (deduplicated)."""
    if config["steering"]["layers"]:
        return sorted(set(config["steering"]["layers"]))
    n = steering_num_layers("steering.layers")
    return sorted({n // 3, n // 2, (2 * n) // 3})


def steering_universal_layer():
    """steering.universal.layer, else floor(L/2) of the model (the universal and capability jobs build their own
    setup at that layer, so it need not be among steering.layers)."""
    layer = config["steering"]["universal"]["layer"]
    return layer if layer is not None else steering_num_layers("steering.universal.layer") // 2


def _steering_sae_layer(sae_id):
    """The block an SAE of the SAE stage reads (its helper ``sae_layer`` when defined, else 'layer<N>' in the id)."""
    if "sae_layer" in globals():
        return sae_layer(sae_id)
    match = re.search(r"layer(\d+)", sae_id)
    return int(match.group(1)) if match else None


def get_steering_project_saes(layer):
    """{direction kind: SAE dir} of the SAE stage at ``layer``: the first id of each configured architecture.
    Empty unless the sae stage is in ``stages`` (steering alone never pulls SAE training in)."""
    if "sae" not in STAGES:
        return {}
    found = {}
    for arch in config["steering"]["sae"]["archs"]:
        ids = [i for i in sae_ids_for(arch) if _steering_sae_layer(i) == int(layer)]
        if ids:
            found[f"sae-{arch}"] = f"{RESULTS}/sae/{ids[0]}"
    return found


def steering_external_saes(layer):
    """{name: (SAE dir, built by the DAG)} of steering.sae.external at ``layer``: an SAE id of results/<run>/sae/
    (e.g. an sae.imports id), or a local path."""
    found = {}
    for ext in config["steering"]["sae"]["external"]:
        if ext["layer"] != int(layer):
            continue
        if ext.get("sae_id") is None:
            found[ext["name"]] = (ext["path"], False)
            continue
        imported = sae_imports().get(ext["sae_id"])
        if imported is not None and imported["hook_layer"] != ext["layer"]:
            raise ValueError(f"config key steering.sae.external ({ext['name']}): layer {ext['layer']}, but "
                             f"sae.imports {ext['sae_id']} has hook_layer {imported['hook_layer']}")
        found[ext["name"]] = (f"{RESULTS}/sae/{ext['sae_id']}", True)
    return found


def get_steering_sae_dirs(wildcards):
    """Project SAEs plus external ones (steering.sae.external) at the grid's layer."""
    dirs = get_steering_project_saes(wildcards.layer)
    dirs.update({name: path for name, (path, _) in steering_external_saes(wildcards.layer).items()})
    return dirs


def get_steering_sae_inputs(wildcards):
    dirs = get_steering_project_saes(wildcards.layer)
    dirs.update({name: path for name, (path, built) in steering_external_saes(wildcards.layer).items() if built})
    return {kind: f"{path}/cfg.json" for kind, path in dirs.items()}


def get_steering_sae_kinds(wildcards=None):
    """The two project SAE kinds the cross-paper table compares (empty when fewer than two exist)."""
    kinds = [f"sae-{arch}" for arch in config["steering"]["sae"]["archs"]]
    have = {k for layer in steering_layers() for k in get_steering_project_saes(layer)}
    return kinds[:2] if len(kinds) >= 2 and set(kinds[:2]) <= have else []


def get_steering_prompts(wildcards=None):
    """The toy world's chat prompts when steering.prompts.source (or prompts.benign.source) is toyworld; datasets
    and local files are read by the script."""
    prompts = config["steering"]["prompts"]
    if "toyworld" not in (prompts["source"], prompts["benign"]["source"]):
        return {}
    return {"chat_eval": f"{RESULTS}/toyworld/chat_eval.jsonl"}


def get_steering_capability_inputs(wildcards=None):
    if config["steering"]["capability"]["task"] != "toy":
        return {}
    return {"chat_eval": f"{RESULTS}/toyworld/chat_eval.jsonl", "reasoning": f"{RESULTS}/toyworld/reasoning.jsonl"}


def get_steering_coherence_reference(wildcards=None):
    """The model as shipped (before safety_tune): the coherence judge's reference; hub models come from model.id."""
    base = get_base_model_dir()
    return {"reference": base["model"]} if base else {}


def get_steering_coherence(wildcards=None):
    """The coherence reference and its calibration, when steering.coherence.enabled."""
    if not config["steering"]["coherence"]["enabled"]:
        return {}
    return {**get_steering_coherence_reference(), "coherence": f"{RESULTS}/steering/coherence.json"}


def get_steering_grids(wildcards=None):
    return [f"{RESULTS}/steering/layer{layer}/grid.parquet" for layer in steering_layers()]


def get_steering_setup(wildcards=None):
    layer = steering_universal_layer()
    return {"setup": f"{RESULTS}/steering/layer{layer}/setup.json"}


def get_steering_targets():
    out = f"{RESULTS}/steering"
    return [f"{out}/metrics.json", f"{out}/universal/summary.json", f"{out}/capability.json",
            f"{out}/figures/compliance_vs_c.png", f"{out}/figures/per_category.png",
            f"{out}/figures/universal_vs_random.png", f"{out}/figures/vector_histogram.png",
            f"{out}/figures/cross_category.png"]


# --- end steering ---

# --- reasoning ---
REASONING_BENCHMARKS = config["reasoning"]["eval"]["benchmarks"]
REASONING_BENCHMARK_PATTERN = "|".join(REASONING_BENCHMARKS)


def get_reasoning_sae_ids():
    """reasoning.sae_ids, else the first SAE of the first architecture in reasoning.sae_archs that has one."""
    if config["reasoning"]["sae_ids"]:
        return list(config["reasoning"]["sae_ids"])
    for arch in config["reasoning"]["sae_archs"]:
        ids = sae_ids_for(arch)
        if ids:
            return [ids[0]]
    raise ValueError(
        "config key reasoning.sae_ids is empty and the sae stage configures no SAE of "
        f"reasoning.sae_archs={config['reasoning']['sae_archs']}"
    )


def get_reasoning_sae(wildcards):
    return {"sae": f"{RESULTS}/sae/{wildcards.sae}/cfg.json"}


def get_reasoning_corpus(wildcards):
    """The toy world's reasoning file when the ReasonScore corpus or a benchmark is the toy world."""
    cfg = config["reasoning"]
    if cfg["corpus"]["path"] != "toyworld" and "toyworld" not in REASONING_BENCHMARKS:
        return {}
    return {"toyworld": f"{RESULTS}/toyworld/reasoning.jsonl"}


def get_reasoning_targets():
    targets = []
    for sae in get_reasoning_sae_ids():
        targets += [
            f"{RESULTS}/reasoning/{sae}/reasonscore.parquet",
            f"{RESULTS}/reasoning/{sae}/selected.json",
            f"{RESULTS}/reasoning/{sae}/interpretation.md",
            f"{RESULTS}/reasoning/figures/{sae}_reasonscore.png",
        ]
        for benchmark in REASONING_BENCHMARKS:
            targets += [
                f"{RESULTS}/reasoning/{sae}/{benchmark}/steering.json",
                f"{RESULTS}/reasoning/figures/{sae}_{benchmark}_steering.png",
            ]
    targets += [f"{RESULTS}/reasoning/{benchmark}/banned_vocab.json" for benchmark in REASONING_BENCHMARKS]
    return targets


# --- end reasoning ---

# --- pruning ---
PRUNING = config["pruning"]
PRUNING_LEARNED = ("learnable", "learnable_bias", "learnable_scale_shift")
check_pruning_values(PRUNING)


def pruning_config(*keys, targets=None, pattern=None, criterion=None):
    """The pruning keys a job reads, so that editing another key (or another cell's option) does not rerun it;
    ``keys``, the one target set, the unstructured options of an unstructured pattern, the criterion's option."""
    cfg = {key: PRUNING[key] for key in keys}
    if targets is not None:
        cfg["target_sets"] = {targets: PRUNING["target_sets"][targets]}
    if pattern is not None and pattern.startswith("u"):
        cfg["unstructured"] = PRUNING["unstructured"]
    cfg |= {key: PRUNING[key] for key in PRUNING_CRITERION_KEYS.get(criterion, ())}
    return cfg


PRUNING_CRITERION_KEYS = {"clact": ("clact_scope",), "amber": ("amber_quantile",)}


def get_pruning_dense_config(wildcards):
    """The dense cell: evaluation settings and the per-kind diagnostic (every grid target set)."""
    cfg = pruning_config("perplexity", "zero_shot", "grid_targets", "per_kind_pattern", "per_kind_max_windows",
                         pattern=PRUNING["per_kind_pattern"] or "")
    cfg["target_sets"] = {name: PRUNING["target_sets"][name] for name in PRUNING["grid_targets"]}
    return cfg


def get_pruning_activation_config(wildcards):
    return pruning_config("perplexity", "zero_shot", targets=wildcards.targets, pattern=wildcards.pattern,
                          criterion=wildcards.criterion)


def get_pruning_weight_config(wildcards):
    """Weight baselines: the unstructured options are activation-side; Wanda reads the calibration set."""
    keys = ("perplexity", "zero_shot", "calibration") if wildcards.method == "wanda" else ("perplexity", "zero_shot")
    return pruning_config(*keys, targets=wildcards.targets)


def get_pruning_learnable_config(wildcards):
    """Learnable mitigations read their own windows and batch size (not calibration.n_windows / batch_size)."""
    cfg = pruning_config("learnable", targets=wildcards.targets, pattern=wildcards.pattern,
                         criterion=wildcards.criterion)
    cfg["calibration"] = {k: v for k, v in PRUNING["calibration"].items() if k not in ("n_windows", "batch_size")}
    return cfg


def get_pruning_chat_config(wildcards):
    if wildcards.pattern == "dense":
        return pruning_config("chat")
    return pruning_config("chat", targets=wildcards.targets, pattern=wildcards.pattern, criterion="magnitude")


def pruning_slug(pattern):
    """File-name form of a pattern: '8:16' -> '8-16', 'u50' stays."""
    return pattern.replace(":", "-")


def pruning_activation_cells():
    """(targets, pattern, criterion, mitigation): magnitude at every pattern and every criterion at
    criteria_patterns (null: every pattern), both without mitigation, plus the mitigations at mitigation_patterns
    x mitigation_criteria."""
    criteria_patterns = PRUNING["patterns"] if PRUNING["criteria_patterns"] is None else PRUNING["criteria_patterns"]
    cells = []
    for targets in PRUNING["grid_targets"]:
        cells += [(targets, p, "magnitude", "none") for p in PRUNING["patterns"]]
        cells += [(targets, p, c, "none") for p in criteria_patterns for c in PRUNING["criteria"]]
        cells += [(targets, p, c, m) for p in PRUNING["mitigation_patterns"] for c in PRUNING["mitigation_criteria"]
                  for m in PRUNING["mitigations"]]
    return list(dict.fromkeys(cells))


def get_pruning_cell_files(wildcards=None):
    cells = [f"{RESULTS}/pruning/cells/dense.json"]
    cells += [f"{RESULTS}/pruning/cells/act/{t}/{pruning_slug(p)}/{c}/{m}.json"
              for t, p, c, m in pruning_activation_cells()]
    cells += [f"{RESULTS}/pruning/cells/weight/{t}/{pruning_slug(p)}/{w}.json" for t in PRUNING["grid_targets"]
              for p in PRUNING["weight_patterns"] for w in PRUNING["weight_methods"]]
    return cells


def get_pruning_chat_files(wildcards=None):
    if not PRUNING["chat"]["enabled"]:
        return []
    return [f"{RESULTS}/pruning/chat/none/dense.json"] + [
        f"{RESULTS}/pruning/chat/{t}/{pruning_slug(p)}.json"
        for t in PRUNING["grid_targets"] for p in PRUNING["chat_patterns"]]


def get_pruning_eval_inputs(wildcards):
    """Evaluation text and local lm-eval tasks when they come from the toy world."""
    inputs = {}
    if PRUNING["perplexity"]["dataset"]["path"] == "toyworld":
        inputs["narrative"] = f"{RESULTS}/toyworld/narrative_heldout.jsonl"
    zero_shot = PRUNING["zero_shot"]
    if zero_shot["enabled"] and any(task.startswith("toy_") for task in zero_shot["tasks"]):
        inputs["tasks"] = f"{RESULTS}/pruning/tasks"
    return inputs


def get_pruning_calibration_text(wildcards=None):
    if PRUNING["calibration"]["dataset"]["path"] == "toyworld":
        return {"train": f"{RESULTS}/toyworld/train.jsonl"}
    return {}


def get_pruning_mitigation_params(wildcards):
    """The cached calibration file of S-PTS or of a learnable mitigation (computed once, reused by cells)."""
    if wildcards.mitigation == "spts":
        return {"calibration": f"{RESULTS}/pruning/calibration/spts/{wildcards.targets}.safetensors"}
    if wildcards.mitigation in PRUNING_LEARNED:
        return {"calibration": f"{RESULTS}/pruning/calibration/{wildcards.mitigation}/{wildcards.targets}/"
                               f"{wildcards.pattern}/{wildcards.criterion}.safetensors"}
    return {}


def get_pruning_weight_inputs(wildcards):
    return get_pruning_calibration_text() if wildcards.method == "wanda" else {}


def get_pruning_targets():
    figures = f"{RESULTS}/pruning/figures"
    return [f"{RESULTS}/pruning/table.csv", f"{RESULTS}/pruning/summary.json", f"{figures}/perplexity_heatmap.png",
            f"{figures}/activation_vs_weight.png", f"{figures}/refusal_by_pattern.png"]


# --- end pruning ---

# --- unlearning ---
UNLEARNING = config["unlearning"]
UNLEARNING_METHODS = ["ga", "gd", "kl", "npo", "dpo", "idk", "rmu", "scrub", "llmu", "sku", "retain_ft"]


def _unlearning_l1_tags(flag, lambdas=None):
    """The l1 wildcard values of a grid entry: 'off', or one λ of unlearning.unlearn.l1.lambdas per run."""
    if not flag:
        return ["off"]
    return [repr(float(lam)) for lam in (lambdas or UNLEARNING["unlearn"]["l1"]["lambdas"])]


def unlearning_runs():
    """Every (method, split, modality, l1) of unlearning.grid; l1 is 'off' or the λ of LoRA + L1."""
    runs = {}
    for block in UNLEARNING["grid"]:
        for method in block["methods"]:
            for split in block["splits"]:
                for modality in block["modalities"]:
                    for flag in block["l1"]:
                        for l1 in _unlearning_l1_tags(flag):
                            runs[(method, split, modality, l1)] = dict(
                                method=method, split=split, modality=modality, l1=l1
                            )
    return list(runs.values())


def unlearning_splits():
    return sorted({run["split"] for run in unlearning_runs()})


def unlearning_config(*sections):
    """The unlearning sections a rule depends on (so editing one section reruns only the rules that read it)."""
    return {name: UNLEARNING[name] for name in sections}


def get_unlearning_data(wildcards=None):
    """mini-CLEAR on the toy world; hub datasets (therem/CLEAR) are read by the scripts."""
    if UNLEARNING["data"]["source"] == "toyworld":
        return {"data": f"{RESULTS}/unlearning/data/mini-clear"}
    return {}


def unlearning_source():
    if UNLEARNING["data"]["source"] == "toyworld":
        return f"{RESULTS}/unlearning/data/mini-clear"
    return UNLEARNING["data"]["source"]


def get_unlearning_base(wildcards=None):
    """The tiny LLaVA built from the toy LM, or nothing for a hub VLM (unlearning.vlm.id)."""
    if UNLEARNING["vlm"]["id"] is None:
        if not is_toy_model():
            raise ValueError("config key unlearning.vlm.id: set a LLaVA-style hub model when model.source is hub")
        return {"base": f"{RESULTS}/unlearning/models/base"}
    return {}


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
        for r in unlearning_runs()
    ]
    for split in unlearning_splits():
        paths += [f"{RESULTS}/unlearning/{split}/original.json", f"{RESULTS}/unlearning/{split}/gold.json"]
    return paths


def get_unlearning_robustness(wildcards=None):
    runs = UNLEARNING["robustness"]["runs"]
    known = {(r["method"], r["split"], r["modality"], r["l1"]) for r in unlearning_runs()}
    paths = []
    for r in runs:
        lam = r.get("l1_lambda")
        tag = _unlearning_l1_tags(r["l1"], None if lam is None else [lam])[0]
        key = (r["method"], r["split"], r["modality"], tag)
        if key not in known:
            raise ValueError(f"config key unlearning.robustness.runs: {r} is not in unlearning.grid")
        paths.append(f"{RESULTS}/unlearning/robustness/{key[1]}/{key[2]}/{key[0]}/l1_{key[3]}.json")
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
    if UNLEARNING["robustness"]["runs"]:
        targets += [f"{RESULTS}/unlearning/robustness.csv", f"{RESULTS}/unlearning/figures/robustness.png"]
    return targets


# --- end unlearning ---

# --- report ---
REPORT = f"reports/{RUN}"
CAPTIONS_DIR = str(Path(workflow.basedir) / "workflow" / "report")


def get_report_inputs(wildcards):
    """Everything the report reads: the model card and the final outputs of every other configured stage."""
    stage_outputs = [path for stage in STAGES if stage != "report" for path in STAGE_TARGETS[stage]()]
    return {"card": f"{RESULTS}/model/model_card.json", "stage_outputs": stage_outputs}


def get_report_targets():
    return [f"{REPORT}/index.html", f"{REPORT}/README.md", f"{REPORT}/manifest.json", f"{REPORT}/claims.json"]


# --- end report ---

STAGE_TARGETS = {
    "sae": get_sae_targets,
    "features": get_features_targets,
    "steering": get_steering_targets,
    "reasoning": get_reasoning_targets,
    "pruning": get_pruning_targets,
    "unlearning": get_unlearning_targets,
    "report": get_report_targets,
}
