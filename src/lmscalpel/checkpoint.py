"""A job's resumable state (trainer state, finished chunks) in its directory under ``checkpoints/<run_name>/``.

A resumed job must end with the numbers of an uninterrupted one, so it may resume only from state written under
the same inputs, and only while no other process still writes there. Every resumable loop opens its directory with
:func:`open_checkpoint`, which checks three things:

- keyed: ``key.json`` holds the key, everything that changes the loop's numbers (the config keys it reads, the
  seed, the identity of its input and model files); a directory written under another key is emptied and the log
  names the entries that changed. ``checkpoint_every`` never enters a key: how often state is saved changes nothing.
- owned: the job holds ``flock`` on ``.lock``, which names its PID and host; a second process is refused with
  :class:`CheckpointInUse` (rather than made to wait: the other one is typically an orphan of a killed Snakemake
  that holds a GPU and writes the same outputs, and only the user can tell whether to wait for it or kill it). The
  kernel drops the lock of a dead process, so a stale file never blocks.
- atomic: each file is written under a temporary name and moved into place, so a kill leaves the previous state or
  the new one; trainer state is one ``torch.save`` file, read back with ``weights_only=True``.

An unwritable or unreadable directory or file raises :class:`CheckpointError`, one line naming it, the config
section whose run it holds and what is wrong.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import hashlib
import json
import logging
import os
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from lmscalpel.io import atomic_path, read_json, sha256_file, write_json, write_jsonl

log = logging.getLogger(__name__)

KEY_FILE = "key.json"
LOCK_FILE = ".lock"
STATE_FILE = "state.pt"
UNKEYED = "checkpoint_every"
# The files that define a local model directory (not its summaries, which record how it was trained).
MODEL_FILES = ("*.safetensors", "*.bin", "config.json", "generation_config.json", "tokenizer*",
               "special_tokens_map.json", "added_tokens.json", "chat_template*", "preprocessor_config.json",
               "processor_config.json")


class CheckpointError(RuntimeError):
    """A checkpoint directory or file that cannot be used (one line: the path, its owner, what is wrong)."""


class CheckpointInUse(CheckpointError):
    """Another live process owns the checkpoint directory."""


@contextlib.contextmanager
def open_checkpoint(directory: str | os.PathLike | None, key: Mapping[str, Any], *, what: str
                    ) -> Iterator["Checkpoint | None"]:
    """Own ``directory`` for the block and keep its contents only if they were written under ``key``.

    ``what`` names the config section whose run it holds (for messages). No directory: yields None (nothing is
    checkpointed)."""
    if directory is None:
        yield None
        return
    directory = Path(directory)
    with _owned(directory, what):
        checkpoint = Checkpoint(directory, what)
        checkpoint._claim(key)
        yield checkpoint


class Checkpoint:
    """An owned, keyed directory (from :func:`open_checkpoint` or :meth:`child`); names are relative to it."""

    def __init__(self, directory: Path, what: str):
        self.directory, self.what = directory, what

    def path(self, name: str) -> Path:
        return self.directory / name

    def exists(self, name: str) -> bool:
        return self.path(name).exists()

    def child(self, name: str, key: Mapping[str, Any]) -> "Checkpoint":
        """A sub-directory with a key of its own (one piece of the job), owned with this one."""
        child = Checkpoint(self.path(name), self.what)
        with self._failing(child.directory, "written"):
            child.directory.mkdir(parents=True, exist_ok=True)
        child._claim(key)
        return child

    def _claim(self, key: Mapping[str, Any]) -> None:
        """Empty the directory unless ``key.json`` records ``key``; then record it."""
        key = canonical(key)
        digest = key_digest(key)
        stored = self._stored_key()
        if stored is not None and stored.get("digest") == digest:
            return
        leftovers = [p for p in self.directory.iterdir() if p.name != LOCK_FILE]
        if leftovers:
            why = ("no key.json (an older format)" if stored is None else
                   "changed: " + "; ".join(key_changes(stored.get("key", {}), key)))
            log.warning("%s: written for another run (%s); starting from scratch", self.directory, why)
        with self._failing(self.directory, "emptied"):
            for path in leftovers:
                shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
        self.write_json(KEY_FILE, {"digest": digest, "key": key})

    @contextlib.contextmanager
    def writing(self, name: str) -> Iterator[Path]:
        """A temporary path that becomes ``name`` when the block succeeds (the whole file or nothing)."""
        target = self.path(name)
        with self._failing(target, "written"), atomic_path(target) as tmp:
            yield tmp

    def write_json(self, name: str, obj: Any) -> None:
        with self._failing(self.path(name), "written"):
            write_json(self.path(name), obj)

    def write_jsonl(self, name: str, rows: list[dict]) -> None:
        with self._failing(self.path(name), "written"):
            write_jsonl(self.path(name), rows)

    def cached_json(self, name: str, compute: Callable[[], Any]) -> Any:
        """``compute()`` once per key, kept as ``name`` (survives a kill)."""
        if self.exists(name):
            with self._failing(self.path(name), "read"):
                return read_json(self.path(name))
        value = compute()
        self.write_json(name, value)
        return value

    def save_state(self, state: Mapping[str, Any], name: str = STATE_FILE) -> None:
        """Tensors, optimiser and scheduler states, counters: one file, written atomically."""
        import torch

        with self.writing(name) as tmp:
            torch.save(dict(state), tmp)

    def load_state(self, name: str = STATE_FILE) -> dict[str, Any] | None:
        """What :meth:`save_state` wrote (tensors on the devices they were saved from), or None when there is
        nothing yet."""
        import pickle

        import torch

        if not self.exists(name):
            return None
        with self._failing(self.path(name), "read", pickle.UnpicklingError, EOFError):
            return torch.load(self.path(name), weights_only=True)

    def remove(self, name: str) -> None:
        with self._failing(self.path(name), "removed"):
            self.path(name).unlink(missing_ok=True)

    def _stored_key(self) -> dict | None:
        try:
            stored = read_json(self.path(KEY_FILE))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}  # unreadable: as good as another key
        return stored if isinstance(stored, dict) else {}

    @contextlib.contextmanager
    def _failing(self, path: Path, doing: str, *errors: type[BaseException]) -> Iterator[None]:
        # torch reports a failed write or read as RuntimeError (inline_container.cc), without the path
        try:
            yield
        except (OSError, RuntimeError, *errors) as err:
            raise CheckpointError(problem(path, self.what, f"cannot be {doing}", err)) from err


def problem(path: Path, what: str, failure: str, err: BaseException) -> str:
    """One line: ``<path>: checkpoint of <what> <failure> (<reason>): <remedy>``."""
    if isinstance(err, OSError):
        reason = err.strerror or str(err)
    else:
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        reason = lines[-1] if lines else type(err).__name__
    remedy = ("free some space" if getattr(err, "errno", None) == errno.ENOSPC else
              "fix its permissions or delete it to start over")
    return f"{path}: checkpoint of {what} {failure} ({reason}): {remedy}"


@contextlib.contextmanager
def _owned(directory: Path, what: str) -> Iterator[None]:
    """Hold ``flock`` on ``directory/.lock`` (naming this PID and host) for the block, or raise CheckpointInUse."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        handle = os.fdopen(os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644), "r+", encoding="utf-8")
    except OSError as err:
        raise CheckpointError(problem(directory, what, "is not writable", err)) from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = handle.read().split()
            owner = f"PID {holder[0]} on host {holder[1]}" if len(holder) == 2 else "another process"
            raise CheckpointInUse(f"{directory} ({what}) is in use by {owner} (a job still running, e.g. an orphan "
                                  f"of a killed Snakemake): wait for it or kill it") from None
        try:  # a lock file may still open in a directory that no longer takes new files
            handle.truncate(0)  # what a killed owner left
            handle.write(f"{os.getpid()} {socket.gethostname()}\n")
            handle.flush()
            descriptor, probe = tempfile.mkstemp(dir=directory, prefix=".probe.")
            os.close(descriptor)
            os.unlink(probe)
        except OSError as err:
            raise CheckpointError(problem(directory, what, "is not writable", err)) from None
        try:
            yield
        finally:
            handle.truncate(0)  # a process that finds the lock free in between reads no stale PID


def canonical(key: Any) -> Any:
    """``key`` as plain JSON values (tuples as lists, other objects as ``str``), ``checkpoint_every`` left out."""
    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k != UNKEYED}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return strip(json.loads(json.dumps(key, sort_keys=True, default=str)))


def key_digest(key: Any) -> str:
    return hashlib.sha256(json.dumps(canonical(key), sort_keys=True).encode()).hexdigest()


def key_changes(old: Any, new: Any, prefix: str = "", limit: int = 5) -> list[str]:
    """``entry: old -> new`` for the (dotted) entries of two keys that differ, at most ``limit``."""
    if isinstance(old, dict) and isinstance(new, dict):
        changes = []
        for name in sorted(set(old) | set(new)):
            changes += key_changes(old.get(name), new.get(name), f"{prefix}{name}.", limit)
        return changes[:limit]
    if old == new:
        return []
    return [f"{prefix.rstrip('.') or 'key'}: {_short(old)} -> {_short(new)}"]


def _short(value: Any, width: int = 40) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= width else text[:width - 3] + "..."


def files_identity(directory: str | os.PathLike, patterns: Sequence[str] = MODEL_FILES) -> dict[str, str] | None:
    """sha256 of each file of a local directory matching ``patterns``, by name; None when ``directory`` is not
    one (a hub id, which its name and revision identify)."""
    path = Path(directory)
    if not path.is_dir():
        return None
    files = sorted({f for pattern in patterns for f in path.glob(pattern) if f.is_file()})
    return {f.name: file_identity(f) for f in files}


def file_identity(path: str | os.PathLike) -> str:
    """sha256 of a file's content (hashed once per process while its size and mtime stay the same)."""
    stat = os.stat(path)
    return _sha256(os.fspath(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=1024)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    return sha256_file(path)


def tensor_identity(tensor: Any) -> str:
    """sha256 of a tensor's dtype, shape and bytes (directions, calibration windows are keyed by what they are)."""
    import torch

    data = tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
    return hashlib.sha256(f"{tensor.dtype} {tuple(tensor.shape)} ".encode() + data).hexdigest()


def model_identity(model: Any) -> dict[str, Any]:
    """A model's source (``name_or_path``, revision), dtype and, for a local directory, its files' content; for a
    loaded model or a ``ModelRef`` alike."""
    name = getattr(model, "name_or_path", None)
    return {"name_or_path": name, "revision": getattr(model, "revision", None),
            "dtype": str(getattr(model, "dtype", None)), "files": files_identity(name) if name else None}
