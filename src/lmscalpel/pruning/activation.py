"""``activation_pruning(model, ...)``, the entry point other stages use: calibrate the mitigation if it needs it,
install :class:`~lmscalpel.pruning.pruner.ActivationPruning` for the block, remove it afterwards.

Here rather than in ``pruner``: calibration (``lmscalpel.pruning.calibration``) runs the pruner itself.
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterable, Iterator, Mapping

import torch

from lmscalpel.pruning.calibration import compute_spts, load_params, train_learnable
from lmscalpel.pruning.masks import Pattern
from lmscalpel.pruning.mitigations import get_mitigation
from lmscalpel.pruning.pruner import DEFAULT_TARGETS, ActivationPruning, ModuleParams


def resolve_calibration(model: torch.nn.Module, calibration, *, pattern, criterion, mitigation, targets, layers,
                        criterion_options) -> ModuleParams | None:
    """Turn ``calibration`` (None, a params dict, a safetensors file, or calibration windows) into module params."""
    kind = get_mitigation(mitigation).calibration
    if kind is None or calibration is None:
        return None
    if isinstance(calibration, Mapping):
        return dict(calibration)
    if isinstance(calibration, (str, os.PathLike)):
        return load_params(calibration, expect={"mitigation": mitigation} if kind == "learned" else None)
    if isinstance(calibration, torch.Tensor):
        if kind == "static":
            return compute_spts(model, calibration, targets=targets, layers=layers)
        return train_learnable(model, calibration, pattern=pattern, criterion=criterion, mitigation=mitigation,
                               targets=targets, layers=layers, criterion_options=criterion_options)
    raise TypeError(f"calibration must be None, a dict, a file path or a LongTensor of windows, not "
                    f"{type(calibration).__name__}")


@contextlib.contextmanager
def activation_pruning(model: torch.nn.Module, pattern: str | Pattern = "8:16", criterion: str = "magnitude",
                       mitigation: str = "none", targets: Iterable[str] = DEFAULT_TARGETS, calibration=None, *,
                       layers: Iterable[int] | None = None,
                       criterion_options: Mapping | None = None) -> Iterator[ActivationPruning]:
    """Prune the inputs of the target linear layers while the block runs; the model is unchanged afterwards.

    ``calibration`` is only used by mitigations that need it (``spts``, ``learnable*``): a dict
    ``{module_name: {param: tensor}}``, a safetensors file written by ``calibration.save_params``, or a LongTensor
    of calibration windows [n, seqlen] (statistics are then computed here).
    """
    targets = tuple(targets)
    params = resolve_calibration(model, calibration, pattern=pattern, criterion=criterion, mitigation=mitigation,
                                 targets=targets, layers=layers, criterion_options=criterion_options)
    pruning = ActivationPruning(model, pattern, criterion, mitigation, targets, layers, params, criterion_options)
    pruning.install()
    try:
        yield pruning
    finally:
        pruning.remove()
