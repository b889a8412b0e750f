"""Atomic file writing and small JSON helpers.

Every declared Snakemake output is written through these helpers: the data goes to a temporary file in the
same directory and is moved into place with ``os.replace``, so a killed job never leaves a half-written file
that looks complete.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; move it onto ``path`` only if the block succeeds.

    Works for files and directories (e.g. ``save_pretrained`` targets). A path with a ``.`` or ``..`` component
    past its start is refused: ``reports/.`` would replace (delete) ``reports/`` itself, ``reports/..`` its parent.
    """
    parts = os.fspath(path).replace(os.sep, "/").split("/")
    if any(part in (".", "..") for part in parts[1:]) or parts[0] == "..":
        raise ValueError(f"refusing to replace {os.fspath(path)!r}: an output path must not contain '.' or '..' "
                         "(a run_name of '.' or '..'?)")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent)) / target.name
    try:
        yield tmp
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp.parent, ignore_errors=True)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_jsonable) + "\n")


def write_jsonl(path: str | os.PathLike, rows: list[dict]) -> None:
    write_text(path, "".join(json.dumps(r, sort_keys=True, default=_jsonable) + "\n" for r in rows))


def save_figure(fig, path: str | os.PathLike, *, dpi: int = 120, bbox_inches: str | None = None) -> None:
    """Write a matplotlib figure as PNG atomically and close it (``bbox_inches="tight"`` crops to the drawing)."""
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png", bbox_inches=bbox_inches)
    plt.close(fig)


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _jsonable(obj: Any) -> Any:
    """Make numpy/torch scalars and paths JSON-serialisable."""
    if hasattr(obj, "item") and callable(obj.item):
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"not JSON-serialisable: {type(obj).__name__}")
