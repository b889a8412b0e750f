"""Text sources: the toy world's corpus or any dataset ``datasets.load_dataset`` can read (hub id or local files)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator


def iter_texts(dataset_cfg: dict[str, Any], toyworld_dir: str | Path | None = None) -> Iterator[str]:
    """Yield texts from ``cache.dataset``-style config: ``path: toyworld`` or a ``load_dataset`` source."""
    if dataset_cfg.get("path", "toyworld") == "toyworld":
        if toyworld_dir is None:
            raise ValueError("dataset path 'toyworld' needs the toy world directory (model.source: toy)")
        from lmscalpel.io import read_jsonl
        from lmscalpel.toyworld.train import document_text

        yield from (document_text(r) for r in read_jsonl(Path(toyworld_dir) / "train.jsonl"))
        return
    import datasets

    kwargs = {k: dataset_cfg[k] for k in ("name", "revision", "data_files") if dataset_cfg.get(k)}
    ds = datasets.load_dataset(dataset_cfg["path"], split=dataset_cfg.get("split", "train"), streaming=True, **kwargs)
    column = dataset_cfg.get("text_column", "text")
    for row in ds:
        if column not in row:
            raise KeyError(f"config key cache.dataset.text_column: column {column!r} not in {sorted(row)}")
        yield row[column]


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
