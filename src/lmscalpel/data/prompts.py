"""Chat prompts: the toy world's on the default config, JailbreakBench behaviours on presets, or a researcher's own
file (JailbreakBench or AdvBench CSV, JSON lines, one prompt per line of text).

Every loader returns the same record layout, ``{"id", "prompt", "category", "kind", "split"}``, so the grid, the
metrics and the universal attack never look at where the prompts came from. The harmless prompts of the refusal
direction come from their own source (``steering.prompts.benign``): a harmful file has no harmless counterpart.
"""

from __future__ import annotations

from pathlib import Path

from lmscalpel.io import read_jsonl

LOCAL_BUILDERS = ("csv", "json", "text")
UNCATEGORISED = "all"


def toy_prompts(chat_eval: str | Path, *, kind: str, split: str | None) -> list[dict]:
    """Rows of the toy world's ``chat_eval.jsonl`` with ``kind`` ('harmful'|'benign') and ``split`` (None: all)."""
    rows = [r for r in read_jsonl(chat_eval) if r["kind"] == kind and (split is None or r["split"] == split)]
    if not rows:
        raise ValueError(f"{chat_eval}: no {kind} prompts in split {split!r}")
    return [{"id": r["id"], "prompt": r["prompt"], "category": r["category"], "kind": kind, "split": r["split"]}
            for r in rows]


def dataset_prompts(*, path: str = "JailbreakBench/JBB-Behaviors", name: str | None = "behaviors",
                    split: str = "harmful", revision: str | None = None, data_files: str | None = None,
                    columns: dict | None = None, kind: str = "harmful",
                    key: str = "steering.prompts.jbb") -> list[dict]:
    """Prompts of a hub dataset or a local file through ``datasets``; ``columns`` maps ``prompt`` and ``category``
    to column names (JailbreakBench: Goal, Category; AdvBench ``harmful_behaviors.csv``: goal and no category;
    a text file: text). ``key`` is the config key named in errors."""
    import datasets

    columns = {"prompt": "Goal", "category": "Category", **(columns or {})}
    if data_files and path not in LOCAL_BUILDERS:
        raise ValueError(f"{key}.data_files is set ({data_files}) but {key}.path is {path!r}, a hub dataset: "
                         f"set {key}.path to one of {', '.join(LOCAL_BUILDERS)} to read a local file")
    kwargs = {"revision": revision} if revision else {}
    if data_files:
        kwargs["data_files"] = data_files
    # A local file is one 'train' split (datasets' convention); hub datasets have named splits.
    table = datasets.load_dataset(path, None if data_files else name, split="train" if data_files else split,
                                  **kwargs)
    where = data_files or f"{path} (split {split})"
    wanted = {role: col for role, col in columns.items() if col is not None}
    missing = {role: col for role, col in wanted.items() if col not in table.column_names}
    if "prompt" not in wanted or missing:
        raise ValueError(f"{where}: no column for {missing or {'prompt': None}} (config key {key}.columns); "
                         f"its columns are {table.column_names}")
    rows = []
    for i, row in enumerate(table):
        cells = {role: row[col] for role, col in wanted.items()}
        for role, value in cells.items():
            if value is None or not str(value).strip():
                raise ValueError(f"{where}: row {i + 1} (first record = 1) has an empty {wanted[role]!r} cell "
                                 f"({key}.columns.{role})")
        rows.append({"id": f"jbb-{kind}-{i:03d}", "prompt": str(cells["prompt"]),
                     "category": str(cells.get("category", UNCATEGORISED)), "kind": kind, "split": "heldout"})
    if not rows:
        raise ValueError(f"{where}: no prompts (config key {key})")
    return rows


def load_prompts(cfg: dict, *, chat_eval: str | Path | None, kind: str, split: str | None) -> list[dict]:
    """Harmful prompts from ``steering.prompts`` (``source`` 'toyworld', needing ``chat_eval``, or 'jbb'), or with
    ``kind='benign'`` the harmless prompts of :func:`benign_prompts`."""
    if kind == "benign":
        return benign_prompts(cfg, chat_eval=chat_eval, split=split)
    source = cfg.get("source", "toyworld")
    if source == "toyworld":
        return toy_prompts(_need_toyworld(chat_eval, "steering.prompts.source"), kind=kind, split=split)
    if source == "jbb":
        jbb = dict(cfg.get("jbb", {}))
        jbb.pop("benign_split", None)
        return dataset_prompts(**jbb, kind=kind)
    raise ValueError(f"steering.prompts.source: unknown {source!r} (expected 'toyworld' or 'jbb')")


def benign_prompts(cfg: dict, *, chat_eval: str | Path | None, split: str | None) -> list[dict]:
    """Harmless prompts (refusal direction) from ``steering.prompts.benign``: ``auto`` takes the toy world's benign
    prompts, or the hub JailbreakBench's ``benign_split``; ``toyworld``; ``dataset`` reads ``benign`` like ``jbb``."""
    benign = dict(cfg.get("benign", {}))
    source = benign.pop("source", "auto")
    if source == "auto":
        if cfg.get("source", "toyworld") == "toyworld":
            source = "toyworld"
        elif cfg.get("jbb", {}).get("data_files"):
            raise ValueError("steering.prompts.jbb.data_files reads harmful prompts only: give the harmless prompts "
                             "of the refusal direction in steering.prompts.benign (source: dataset with path and "
                             "data_files, or source: toyworld)")
        else:
            jbb = dict(cfg.get("jbb", {}))
            jbb["split"] = jbb.pop("benign_split", "benign")
            return dataset_prompts(**jbb, kind="benign")
    if source == "toyworld":
        return toy_prompts(_need_toyworld(chat_eval, "steering.prompts.benign.source"), kind="benign", split=split)
    if source == "dataset":
        return dataset_prompts(**benign, kind="benign", key="steering.prompts.benign")
    raise ValueError(f"steering.prompts.benign.source: unknown {source!r} (expected auto, toyworld or dataset)")


def _need_toyworld(chat_eval, key: str):
    if chat_eval is None:
        raise ValueError(f"{key} is 'toyworld' but no chat_eval.jsonl was given (the rule's toy-world input)")
    return chat_eval
