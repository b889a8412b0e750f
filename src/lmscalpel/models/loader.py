"""Load a causal LM (or LLaVA-style VLM) and its tokenizer through the same code path for the toy model and hub ids.

Safetensors only (``use_safetensors=True``) and ``trust_remote_code`` off unless the config turns it on: a
preset that needs remote code has to say so explicitly.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import transformers

from lmscalpel.runtime import resolve_device, resolve_dtype


@dataclass(frozen=True)
class ModelRef:
    """Where a model comes from. ``name_or_path`` is a local directory or a hub id."""

    name_or_path: str
    revision: str | None = None
    dtype: str = "float32"
    device: str = "auto"
    trust_remote_code: bool = False

    @classmethod
    def from_config(cls, model_cfg: dict[str, Any], local_path: str | os.PathLike | None = None) -> "ModelRef":
        """Build from the ``model`` config section; ``local_path`` (the toy model directory) wins over ``id``."""
        source = os.fspath(local_path) if local_path else model_cfg.get("id")
        if not source:
            raise ValueError("config key model.id: expected a hub id or local directory when model.source is 'hub'")
        return cls(
            name_or_path=source,
            revision=model_cfg.get("revision"),
            dtype=model_cfg.get("dtype", "float32"),
            device=model_cfg.get("device", "auto"),
            trust_remote_code=bool(model_cfg.get("trust_remote_code", False)),
        )

    @property
    def is_local(self) -> bool:
        return Path(self.name_or_path).is_dir()


def _common_kwargs(ref: ModelRef) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"trust_remote_code": ref.trust_remote_code}
    if ref.revision and not ref.is_local:
        kwargs["revision"] = ref.revision
    return kwargs


def load_tokenizer(ref: ModelRef) -> transformers.PreTrainedTokenizerBase:
    tokenizer = transformers.AutoTokenizer.from_pretrained(ref.name_or_path, **_common_kwargs(ref))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(ref: ModelRef, *, auto_class: str = "AutoModelForCausalLM", eval_mode: bool = True):
    """Return ``(model, tokenizer)`` on the resolved device, in eval mode, gradients off for the weights.

    ``auto_class`` selects the transformers auto class (e.g. ``AutoModelForImageTextToText`` for LLaVA).
    """
    if ref.is_local and not any(Path(ref.name_or_path).glob("*.safetensors")):
        raise FileNotFoundError(f"{ref.name_or_path}: no *.safetensors weights (only safetensors are loaded)")
    device = resolve_device(ref.device)
    model_cls = getattr(transformers, auto_class)
    model = model_cls.from_pretrained(
        ref.name_or_path, dtype=resolve_dtype(ref.dtype), use_safetensors=True, **_common_kwargs(ref)
    ).to(device)
    if eval_mode:
        model.eval()
        model.requires_grad_(False)
    _contiguous_head_input(model)
    return model, load_tokenizer(ref)


def _contiguous_head_input(model) -> None:
    """Give the output embedding a contiguous input. transformers slices the last position out of the hidden states
    ([B, T, d] -> [B, 1, d], a strided view) before the head, and torch 2.13's CPU bfloat16 matmul on such a view
    allocates gigabytes (6.7 GiB for 128 rows of SmolLM2's 49,152-token head; fp32: none): the steering grid's peak
    memory. Copying the B x d view first costs nothing measurable."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is not None:
        head.register_forward_pre_hook(lambda _module, args: (args[0].contiguous(), *args[1:]) if args else None)


def model_provenance(ref: ModelRef) -> dict[str, Any]:
    """The fields every metric JSON records about its model."""
    return {"model": ref.name_or_path, "model_revision": ref.revision, "dtype": ref.dtype,
            "torch": torch.__version__, "transformers": transformers.__version__}
