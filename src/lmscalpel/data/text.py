"""Text sources: the toy world's corpus, local text (``pydoc``, ``text``) or any dataset ``datasets.load_dataset``
can read (hub id or local files), behind one config shape (``cache.dataset``, ``pruning.perplexity.dataset``, ...).

Local text needs no hub: ``path: pydoc`` is the pydoc topics that ship with every CPython
(``pydoc_data.topics.topics``, one document per topic, ~465 k characters of English); ``path: text`` reads a
user's ``data_files`` (.txt: documents separated by blank lines; .jsonl: one document per row, ``text_column``).
Documents are split into ``train`` / ``calibration`` / ``test`` by ``fractions``, ordered by a hash of their id
(topic name, file name + index), so every stage and every run sees the same split without a seed.

Two ways to read a source: :func:`iter_texts` streams a corpus (the activation cache, SAE evaluation, the reasoning
corpus), :func:`load_texts` reads a whole split (perplexity and calibration texts). Each caller names the split
read when the config gives none (``default_split``); local text then reads ``train``.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any, Iterator, Mapping

from lmscalpel.data.files import check_file, read_jsonl, read_text, validate
from lmscalpel.io import read_jsonl as read_rows

LOCAL_SOURCES = ("pydoc", "text")
LOCAL_SPLITS = ("train", "calibration", "test")
DEFAULT_FRACTIONS = {"train": 0.8, "calibration": 0.1, "test": 0.1}
TOYWORLD_FILES = {"heldout": "narrative_heldout.jsonl", "train": "train.jsonl"}
_FILE_BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".txt": "text", ".csv": "csv"}


def is_local_source(dataset_cfg: dict[str, Any]) -> bool:
    return dataset_cfg.get("path") in LOCAL_SOURCES


def local_documents(dataset_cfg: dict[str, Any], key: str = "dataset") -> list[str]:
    """The documents of ``dataset_cfg['split']`` of a local source; ``key`` is the config key named in errors."""
    split = dataset_cfg.get("split") or "train"
    if split not in LOCAL_SPLITS:
        raise ValueError(f"config key {key}.split: {split!r}; local text ({dataset_cfg['path']}) has splits "
                         f"{', '.join(LOCAL_SPLITS)}")
    documents = _pydoc_documents() if dataset_cfg["path"] == "pydoc" else _file_documents(dataset_cfg, key)
    chosen = split_documents(documents, dataset_cfg.get("fractions") or DEFAULT_FRACTIONS, key)[split]
    if not chosen:
        raise ValueError(f"config key {key}.fractions: split {split!r} of {dataset_cfg['path']} has no document "
                         f"({len(documents)} in all)")
    return chosen


def split_documents(documents: list[tuple[str, str]], fractions: dict[str, float], key: str = "dataset"
                    ) -> dict[str, list[str]]:
    """``(id, text)`` documents -> {split: texts}: ordered by sha256 of the id, cut at the cumulative fractions."""
    if set(fractions) != set(LOCAL_SPLITS) or abs(sum(fractions.values()) - 1) > 1e-6:
        raise ValueError(f"config key {key}.fractions: expected {', '.join(LOCAL_SPLITS)} summing to 1, "
                         f"got {fractions}")
    ordered = sorted(documents, key=lambda doc: hashlib.sha256(doc[0].encode()).hexdigest())
    splits, start, cumulative = {}, 0, 0.0
    for split in LOCAL_SPLITS:
        cumulative += fractions[split]
        end = round(cumulative * len(ordered))
        splits[split] = [text for _, text in ordered[start:end]]
        start = end
    return splits


def _pydoc_documents() -> list[tuple[str, str]]:
    from pydoc_data.topics import topics

    return [(name, text) for name, text in sorted(topics.items()) if text.strip()]


def _file_documents(dataset_cfg: dict[str, Any], key: str) -> list[tuple[str, str]]:
    files = dataset_cfg.get("data_files")
    if not files:
        raise ValueError(f"config key {key}.data_files: path 'text' needs one or more .txt / .jsonl files")
    documents = []
    for file in [files] if isinstance(files, str) else files:
        path = check_file(file, f"{key}.data_files")
        if path.suffix == ".txt":
            blocks = re.split(r"\n\s*\n", read_text(path, f"{key}.data_files"))
            documents += [(f"{path.name}:{i}", block.strip()) for i, block in enumerate(blocks) if block.strip()]
        elif path.suffix == ".jsonl":
            documents += _jsonl_documents(path, dataset_cfg.get("text_column") or "text", key)
        else:
            raise ValueError(f"config key {key}.data_files: {path} is neither .txt nor .jsonl")
    return documents


def _jsonl_documents(path: Path, column: str, key: str) -> list[tuple[str, str]]:
    rows = read_jsonl(path, f"{key}.data_files")
    for number, row in enumerate(rows, start=1):
        if column not in row:
            raise KeyError(f"config key {key}.text_column: column {column!r} not in {path} (record {number} has "
                           f"keys {sorted(row)})")
    return [(f"{path.name}:{i}", str(row[column])) for i, row in enumerate(rows)]


def local_files(dataset_cfg: Mapping[str, Any]) -> list[str]:
    """The local files a text source reads: its ``data_files`` (``path: text`` or a loader such as ``json``), or
    ``path`` itself when it is a local file; none for the toy world, pydoc and hub datasets."""
    files = dataset_cfg.get("data_files")
    if files:
        return [files] if isinstance(files, str) else list(files)
    path = dataset_cfg.get("path") or ""
    return [path] if Path(path).suffix.lower() in _FILE_BUILDERS else []


def _validated(dataset_cfg: Mapping[str, Any], key: str) -> None:
    """Refuse a bad local file before ``datasets`` reads it (its errors do not name the file or the key)."""
    for file in local_files(dataset_cfg):
        validate(file, f"{key}.data_files" if dataset_cfg.get("data_files") else f"{key}.path")


def _toyworld(toyworld_dir: str | os.PathLike | None) -> Path:
    if toyworld_dir is None:
        raise ValueError("dataset path 'toyworld' needs the toy world directory")
    return Path(toyworld_dir)


def iter_texts(dataset_cfg: Mapping[str, Any], toyworld_dir: str | os.PathLike | None = None,
               key: str = "cache.dataset", *, default_split: str) -> Iterator[str]:
    """Stream the texts of a source: ``path: toyworld`` is the toy model's training corpus as it saw it
    (``train.jsonl``, BOS/END per document), a ``load_dataset`` source is streamed; ``key`` is the config key named
    in errors."""
    if is_local_source(dataset_cfg):
        yield from local_documents(dict(dataset_cfg), key)
        return
    if dataset_cfg.get("path", "toyworld") == "toyworld":
        from lmscalpel.toyworld.train import document_text

        yield from (document_text(r) for r in read_rows(_toyworld(toyworld_dir) / TOYWORLD_FILES["train"]))
        return
    _validated(dataset_cfg, key)
    import datasets

    kwargs = {k: dataset_cfg[k] for k in ("name", "revision", "data_files") if dataset_cfg.get(k)}
    ds = datasets.load_dataset(dataset_cfg["path"], split=dataset_cfg.get("split") or default_split, streaming=True,
                               **kwargs)
    column = dataset_cfg.get("text_column", "text")
    for row in ds:
        if column not in row:
            raise KeyError(f"config key {key}.text_column: column {column!r} not in {sorted(row)}")
        yield row[column]


def load_texts(dataset_cfg: Mapping[str, Any], toyworld_dir: str | os.PathLike | None = None, key: str = "dataset",
               *, default_split: str) -> list[str]:
    """All texts of a source's split, in order: ``path: toyworld`` reads the split's file as written
    (``heldout``: ``narrative_heldout.jsonl``, ``train``: ``train.jsonl``); a path to a local
    .jsonl/.json/.parquet/.txt/.csv file is read through ``datasets``; anything else is a hub dataset for
    ``datasets.load_dataset(path, name, split=..., revision=...)``; ``key`` is the config key named in errors."""
    if is_local_source(dataset_cfg):
        return local_documents(dict(dataset_cfg), key)
    path, split = dataset_cfg["path"], dataset_cfg.get("split") or default_split
    column = dataset_cfg.get("text_column") or "text"
    if path == "toyworld":
        world = _toyworld(toyworld_dir)
        if split not in TOYWORLD_FILES:
            raise ValueError(f"toyworld split {split!r}: expected one of {sorted(TOYWORLD_FILES)}")
        return [row[column] for row in read_rows(world / TOYWORLD_FILES[split])]
    _validated(dataset_cfg, key)
    import datasets

    suffix = Path(path).suffix.lower()
    if Path(path).is_file() and suffix in _FILE_BUILDERS:
        data = datasets.load_dataset(_FILE_BUILDERS[suffix], data_files=str(path), split="train")
    else:
        data = datasets.load_dataset(path, dataset_cfg.get("name"), split=split, revision=dataset_cfg.get("revision"),
                                     data_files=dataset_cfg.get("data_files"))
    if column not in data.column_names:
        raise ValueError(f"dataset {path}: no column {column!r} (config key text_column); has {data.column_names}")
    return list(data[column])


def iter_token_blocks(texts: Iterator[str], tokenizer, context_length: int, add_bos: bool = True
                      ) -> Iterator[list[int]]:
    """Pack tokenised texts into blocks of ``context_length`` ids (BOS-prefixed texts separated by EOS)."""
    buffer: list[int] = []
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if add_bos and tokenizer.bos_token_id is not None and (not ids or ids[0] != tokenizer.bos_token_id):
            ids = [tokenizer.bos_token_id] + ids
        buffer += ids
        while len(buffer) >= context_length:
            yield buffer[:context_length]
            buffer = buffer[context_length:]
