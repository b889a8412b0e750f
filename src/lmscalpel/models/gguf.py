"""GGUF checkpoints (llama.cpp's format) as a model source, de-quantised once into a ``save_pretrained`` directory.

transformers reads a GGUF file (``from_pretrained(dir, gguf_file=...)``, de-quantised to fp32) but refuses to
``save_pretrained`` the result ("quantized with gguf and is not serializable"). The conversion therefore builds a
plain model of the same class from the config without ``quantization_config``, gives it the de-quantised state
dict and saves that (safetensors) with the tokenizer (its chat template included). Every later stage then loads the
directory through :func:`lmscalpel.models.load_model` like any local model.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from collections import Counter
from pathlib import Path
from typing import Any

from lmscalpel.data import packaged
from lmscalpel.io import atomic_path, sha256_file, write_json

PROVENANCE_FILE = "lmscalpel_provenance.json"


def install_command(distribution: str | None = None) -> str:
    return f"{packaged.install_command(distribution)} gguf" if distribution else "pip install gguf"


def locate_gguf(gguf_cfg: dict[str, Any]) -> Path:
    """The GGUF file of ``model.gguf``: ``path``, or ``file`` inside the installed ``distribution``."""
    if importlib.util.find_spec("gguf") is None:
        raise ModuleNotFoundError("config key model.source: 'gguf' needs the gguf package "
                                  f"({install_command(gguf_cfg.get('distribution'))})")
    if gguf_cfg.get("path"):
        path = Path(gguf_cfg["path"])
        if not path.is_file():
            raise FileNotFoundError(f"config key model.gguf.path: {path} is not a file")
        return path
    distribution, name = gguf_cfg.get("distribution"), gguf_cfg.get("file")
    if not distribution or not name:
        raise ValueError("config key model.gguf: set path, or distribution and file, when model.source is 'gguf'")
    return packaged.locate(distribution, name, "model.gguf.distribution", file_key="model.gguf.file", suffix=".gguf")


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


def gguf_num_layers(gguf_file: str | Path) -> int:
    """The decoder block count (``<architecture>.block_count``) from the file's header, read without loading the
    weights, so a run can be planned before the conversion."""
    architecture = None
    for key, value in _header_scalars(gguf_file):
        if key == "general.architecture":
            architecture = value
        elif architecture is not None and key == f"{architecture}.block_count":
            return int(value)
    raise ValueError(f"{gguf_file}: no general.architecture / <architecture>.block_count in the GGUF header")


_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9


def _header_scalars(gguf_file: str | Path):
    """Yield ``(key, value)`` of the header's key-value pairs in file order, skipping arrays (the tokenizer's
    vocabulary) cheaply; ``gguf.GGUFReader`` parses every array and tensor first (tens of seconds on 2 cores)."""
    import struct

    with open(gguf_file, "rb") as f:
        def read(fmt: str):
            return struct.unpack("<" + fmt, f.read(struct.calcsize("<" + fmt)))[0]

        def string() -> str:
            return f.read(read("Q")).decode("utf-8")

        def skip(kind: int) -> None:
            if kind == _STRING:
                f.seek(read("Q"), 1)
            elif kind == _ARRAY:
                item, count = read("I"), read("Q")
                if item in _SCALARS:
                    f.seek(struct.calcsize("<" + _SCALARS[item]) * count, 1)
                else:
                    for _ in range(count):
                        skip(item)
            else:
                f.seek(struct.calcsize("<" + _SCALARS[kind]), 1)

        if f.read(4) != b"GGUF" or read("I") < 2:
            raise ValueError(f"{gguf_file}: not a GGUF file of version 2 or later")
        read("Q")  # tensor count
        for _ in range(read("Q")):
            key, kind = string(), read("I")
            if kind == _STRING:
                yield key, string()
            elif kind in _SCALARS:
                yield key, read(_SCALARS[kind])
            else:
                skip(kind)


def _plain_copy(quantised):
    """The same architecture without ``quantization_config``, holding the de-quantised weights."""
    import copy

    import transformers

    config = copy.deepcopy(quantised.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = getattr(transformers, type(quantised).__name__)(config)
    plain.load_state_dict(quantised.state_dict())
    return plain.eval()


def _max_logit_difference(model_a, model_b, vocab_size: int) -> float:
    import torch

    probe = torch.arange(1, 33).remainder(vocab_size).unsqueeze(0)
    with torch.no_grad():
        return (model_a(input_ids=probe).logits - model_b(input_ids=probe).logits).abs().max().item()


def convert_gguf(gguf_cfg: dict[str, Any], out_dir: str | Path) -> dict[str, Any]:
    """De-quantise the configured GGUF file to fp32 and save model, tokenizer and provenance in ``out_dir``.

    The saved directory is reloaded and must give the GGUF model's logits exactly (else nothing is written).
    """
    import torch
    import transformers

    gguf_file = locate_gguf(gguf_cfg)
    kwargs = {"gguf_file": gguf_file.name}
    quantised = transformers.AutoModelForCausalLM.from_pretrained(gguf_file.parent, dtype=torch.float32,
                                                                  **kwargs).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(gguf_file.parent, **kwargs)
    plain = _plain_copy(quantised)
    provenance = {"model_source": "gguf", "gguf_file": gguf_file.name, "gguf_sha256": sha256_file(gguf_file),
                  "gguf_distribution": gguf_cfg.get("distribution"),
                  "gguf_distribution_version": _distribution_version(gguf_cfg.get("distribution")),
                  **quantisation_summary(gguf_file), "conversion": "de-quantised to fp32",
                  "architecture": type(plain).__name__, "has_chat_template": tokenizer.chat_template is not None}
    with atomic_path(out_dir) as tmp:
        plain.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        reloaded = transformers.AutoModelForCausalLM.from_pretrained(tmp, dtype=torch.float32,
                                                                     use_safetensors=True).eval()
        difference = _max_logit_difference(quantised, reloaded, plain.config.vocab_size)
        if difference != 0.0:
            raise RuntimeError(f"{gguf_file}: the saved model's logits differ from the GGUF model's by {difference}")
        provenance["reload_max_logit_difference"] = difference
        write_json(Path(tmp) / PROVENANCE_FILE, provenance)
    return provenance


def _distribution_version(distribution: str | None) -> str | None:
    return importlib.metadata.version(distribution) if distribution else None


def read_provenance(model_dir: str | Path) -> dict[str, Any]:
    """The conversion provenance of a converted directory ({} for other models)."""
    from lmscalpel.io import read_json

    path = Path(model_dir) / PROVENANCE_FILE
    return read_json(path) if path.is_file() else {}
