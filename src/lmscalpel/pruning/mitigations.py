"""Error mitigations for activation pruning, a registry by name.

Every mitigation maps the dense input x of a linear layer (rows = tokens) to the input actually multiplied by W,
given ``prune`` (the criterion + pattern applied to its argument); some also correct the layer output. Biases are
always kept (the linear layer itself runs unchanged), unlike the paper's code which drops them.

- ``none``: P(x).
- ``var`` (VAR): v_t * P(x)_t with v_t = sqrt(Var_j x_t / max(Var_j P(x)_t, 1e-9)), unbiased variance over channels.
- ``dpts`` (D-PTS): P(x - eta_t) + eta_t with eta_t = median_j x_tj (torch's lower median for even widths).
- ``spts`` (S-PTS): the same with one static scalar eta per layer from a calibration set (``calibration.compute_spts``).
- ``learnable`` (L-PTS, the code's ``shift2``): P(x - s) + s with s in R^{d_in}, trained layer by layer.
- ``learnable_bias`` (the code's ``shift``): P(x) W^T + b + b' with b' in R^{out}.
- ``learnable_scale_shift``: (P(x) W^T + b) * (1 + a) + b' with a, b' in R^{out}.
Learnable parameters start at zero (identical to ``none`` before training).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from lmscalpel.registry import Registry

Prune = Callable[[torch.Tensor], torch.Tensor]
Params = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Mitigation:
    name: str
    transform_input: Callable[[torch.Tensor, Prune, Params], torch.Tensor]
    transform_output: Callable[[torch.Tensor, Params], torch.Tensor] | None = None
    # None: nothing to fit; "static": statistics from calibration windows; "learned": parameters trained on them
    calibration: str | None = None
    # shapes of the learned parameters: name -> "in" (d_in) or "out" (d_out)
    param_shapes: tuple[tuple[str, str], ...] = ()


MITIGATIONS: Registry[Mitigation] = Registry("pruning mitigation")


def register_mitigation(mitigation: Mitigation) -> Mitigation:
    return MITIGATIONS.add(mitigation.name, mitigation)


def get_mitigation(name: str) -> Mitigation:
    return MITIGATIONS.lookup(name)


def _none(x: torch.Tensor, prune: Prune, params: Params) -> torch.Tensor:
    return prune(x)


def _variance(x: torch.Tensor, prune: Prune, params: Params) -> torch.Tensor:
    pruned = prune(x)
    ratio = x.var(dim=-1, keepdim=True) / pruned.var(dim=-1, keepdim=True).clamp_min(1e-9)
    return pruned * ratio.sqrt()


def _shifted(x: torch.Tensor, prune: Prune, eta: torch.Tensor) -> torch.Tensor:
    eta = eta.to(dtype=x.dtype, device=x.device)
    return prune(x - eta) + eta


def _dynamic_shift(x: torch.Tensor, prune: Prune, params: Params) -> torch.Tensor:
    return _shifted(x, prune, x.median(dim=-1, keepdim=True).values)


def _static_shift(x: torch.Tensor, prune: Prune, params: Params) -> torch.Tensor:
    return _shifted(x, prune, params["eta"])


def _learned_shift(x: torch.Tensor, prune: Prune, params: Params) -> torch.Tensor:
    return _shifted(x, prune, params["shift"])


def _output_bias(y: torch.Tensor, params: Params) -> torch.Tensor:
    return y + params["bias"].to(y.dtype)


def _output_scale_shift(y: torch.Tensor, params: Params) -> torch.Tensor:
    return y * (1 + params["scale"].to(y.dtype)) + params["bias"].to(y.dtype)


register_mitigation(Mitigation("none", _none))
register_mitigation(Mitigation("var", _variance))
register_mitigation(Mitigation("dpts", _dynamic_shift))
register_mitigation(Mitigation("spts", _static_shift, calibration="static"))
register_mitigation(Mitigation("learnable", _learned_shift, calibration="learned", param_shapes=(("shift", "in"),)))
register_mitigation(Mitigation("learnable_bias", _none, _output_bias, calibration="learned",
                               param_shapes=(("bias", "out"),)))
register_mitigation(Mitigation("learnable_scale_shift", _none, _output_scale_shift, calibration="learned",
                               param_shapes=(("scale", "out"), ("bias", "out"))))
