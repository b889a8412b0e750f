"""Device selection and seeding shared by every stage."""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then CPU; anything else is passed to ``torch.device``."""
    if device != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    try:
        return {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
                "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}[dtype]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}; expected float32, bfloat16 or float16") from None


def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch; return a torch generator seeded the same way.

    CPU runs with the same seed give identical numbers (deterministic algorithms are requested where torch
    offers them without a performance cliff).
    """
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    return torch.Generator().manual_seed(seed)


def set_threads(threads: int | None) -> None:
    """Respect Snakemake's ``threads`` so parallel jobs do not oversubscribe the cores."""
    if threads:
        torch.set_num_threads(max(1, int(threads)))


def save_training_state(ckpt_dir: Path, weights: dict[str, torch.Tensor], optimizer, step: int, fingerprint: str,
                        weights_file: str = "model.safetensors") -> None:
    """Atomically write ``ckpt_dir/last``: the trained weights (safetensors) plus optimizer state, step and the
    run's fingerprint, so a killed run resumes only from its own state."""
    from safetensors.torch import save_file

    from lmscalpel.io import atomic_path

    with atomic_path(Path(ckpt_dir) / "last") as tmp:
        tmp.mkdir()
        save_file({k: v.detach().clone() for k, v in weights.items()}, tmp / weights_file)
        torch.save({"optimizer": optimizer.state_dict(), "step": step, "fingerprint": fingerprint}, tmp / "trainer.pt")


def load_training_state(ckpt_dir: Path, optimizer, fingerprint: str, weights_file: str = "model.safetensors"
                        ) -> tuple[int, dict[str, torch.Tensor] | None]:
    """``(step, weights)`` of ``ckpt_dir/last`` with the optimizer state restored, or ``(0, None)`` when there is
    none or it belongs to another run (a different fingerprint)."""
    from safetensors.torch import load_file

    last = Path(ckpt_dir) / "last"
    if not (last / "trainer.pt").exists():
        return 0, None
    state = torch.load(last / "trainer.pt", weights_only=True)
    if state.get("fingerprint") != fingerprint:
        log.warning("%s belongs to another run (config, data or seed changed); starting from scratch", last)
        return 0, None
    optimizer.load_state_dict(state["optimizer"])
    log.info("resumed from step %d", state["step"])
    return int(state["step"]), load_file(last / weights_file)
