"""Evaluation prompts: the toy world's chat prompts on the default config, JailbreakBench behaviours on presets.

Every loader returns the same record layout, ``{"id", "prompt", "category", "kind", "split"}``, so the grid, the
metrics and the universal attack never look at where the prompts came from.
"""

from __future__ import annotations

from pathlib import Path

from lmscalpel.io import read_jsonl

JBB_COLUMNS = ("Goal", "Target", "Behavior", "Category", "Source")


def toy_prompts(chat_eval: str | Path, *, kind: str, split: str | None) -> list[dict]:
    """Rows of the toy world's ``chat_eval.jsonl`` with ``kind`` ('harmful'|'benign') and ``split`` (None: all)."""
    rows = [r for r in read_jsonl(chat_eval) if r["kind"] == kind and (split is None or r["split"] == split)]
    if not rows:
        raise ValueError(f"{chat_eval}: no {kind} prompts in split {split!r}")
    return [{"id": r["id"], "prompt": r["prompt"], "category": r["category"], "kind": kind, "split": r["split"]}
            for r in rows]


def jbb_prompts(*, path: str = "JailbreakBench/JBB-Behaviors", name: str | None = "behaviors",
                split: str = "harmful", revision: str | None = None, data_files: str | None = None,
                kind: str = "harmful") -> list[dict]:
    """JailbreakBench behaviours through ``datasets``; the prompt is the ``Goal`` column (spec §1).

    ``path='csv'`` with ``data_files`` reads a local CSV of the same schema (used by the tests and offline).
    """
    import datasets

    kwargs = {"revision": revision} if revision else {}
    if data_files:
        kwargs["data_files"] = data_files
        split = "train" if path in ("csv", "json") else split
    table = datasets.load_dataset(path, name if not data_files else None, split=split, **kwargs)
    missing = [c for c in JBB_COLUMNS if c not in table.column_names]
    if missing:
        raise ValueError(f"steering.prompts.jbb ({path}): missing JailbreakBench columns {missing}")
    return [{"id": f"jbb-{kind}-{i:03d}", "prompt": row["Goal"], "category": row["Category"], "kind": kind,
             "split": "heldout", "behavior": row["Behavior"], "target": row["Target"]}
            for i, row in enumerate(table)]


def chat_prompt(tokenizer, prompt: str) -> str:
    """One user turn through the model's own chat template, no system prompt (spec §1 project default)."""
    return tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                         tokenize=False)


def load_prompts(cfg: dict, *, chat_eval: str | Path | None, kind: str, split: str | None) -> list[dict]:
    """Prompts from ``steering.prompts`` config: ``source`` 'toyworld' (needs ``chat_eval``) or 'jbb'."""
    source = cfg.get("source", "toyworld")
    if source == "toyworld":
        if chat_eval is None:
            raise ValueError("steering.prompts.source is 'toyworld' but no chat_eval.jsonl was given")
        return toy_prompts(chat_eval, kind=kind, split=split)
    if source == "jbb":
        jbb = dict(cfg.get("jbb", {}))
        jbb_split = jbb.pop("split", "harmful") if kind == "harmful" else jbb.pop("benign_split", "benign")
        jbb.pop("benign_split", None)
        return jbb_prompts(split=jbb_split, kind=kind, **jbb)
    raise ValueError(f"steering.prompts.source: unknown {source!r} (expected 'toyworld' or 'jbb')")
