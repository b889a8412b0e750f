"""N:M activation pruning on the inputs of chosen linear layers: the hooks, installed and removed again.

:class:`ActivationPruning` registers a forward pre-hook on every
target module (matched by the last component of its name inside the decoder blocks, e.g. ``q_proj``) that replaces
the input by the mitigated, pruned input; the module itself (and its bias) runs unchanged. Dynamic and per token:
every forward call, prefill and decode, is pruned. ``lm_head`` and embeddings are never targets.

Padding: a caller that batches padded sequences marks the real tokens with ``token_mask(valid)`` ([batch, seq],
e.g. the lm-eval adapter in ``zero_shot``); criteria that pool over tokens (CLACT's column norm, the global
unstructured top-k) then leave the padded positions out, so a sequence's scores do not depend on its batch.
"""

from __future__ import annotations

import contextlib
import contextvars
import weakref
from typing import Iterable, Iterator, Mapping

import torch

from lmscalpel.models import decoder_layers
from lmscalpel.pruning.criteria import get_criterion
from lmscalpel.pruning.masks import Pattern, global_keep_mask, keep_mask, parse_pattern
from lmscalpel.pruning.mitigations import Mitigation, get_mitigation

DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

ModuleParams = dict[str, dict[str, torch.Tensor]]
UNSTRUCTURED_SCOPES = ("token", "global")

_TOKEN_MASK: contextvars.ContextVar[torch.Tensor | None] = contextvars.ContextVar("token_mask", default=None)


@contextlib.contextmanager
def token_mask(valid: torch.Tensor | None) -> Iterator[None]:
    """Mark the real (non-padding) tokens [batch, seq] of the forward calls run inside the block."""
    reset = _TOKEN_MASK.set(valid)
    try:
        yield
    finally:
        _TOKEN_MASK.reset(reset)


def current_token_mask(x: torch.Tensor) -> torch.Tensor | None:
    """The marked real tokens when they match the leading [batch, seq] dimensions of ``x``, else None (all real)."""
    valid = _TOKEN_MASK.get()
    if valid is None or x.dim() < 3 or tuple(valid.shape) != tuple(x.shape[:-1]):
        return None
    return valid.to(device=x.device, dtype=torch.bool)


def module_weight(module: torch.nn.Module) -> torch.Tensor | None:
    """The 2-D weight of a linear layer, looking through PEFT wrappers (``get_base_layer``)."""
    base = module.get_base_layer() if hasattr(module, "get_base_layer") else module
    weight = getattr(base, "weight", None)
    return weight if isinstance(weight, torch.Tensor) and weight.dim() == 2 else None


def find_target_modules(model: torch.nn.Module, targets: Iterable[str] = DEFAULT_TARGETS,
                        layers: Iterable[int] | None = None) -> dict[str, torch.nn.Module]:
    """Full module name -> module for the target linear layers of the chosen decoder blocks (all by default)."""
    targets = set(targets)
    chosen = None if layers is None else set(layers)
    names = {id(module): name for name, module in model.named_modules()}
    found: dict[str, torch.nn.Module] = {}
    for index, block in enumerate(decoder_layers(model)):
        if chosen is not None and index not in chosen:
            continue
        for name, module in block.named_modules():
            if name.rsplit(".", 1)[-1] in targets and module_weight(module) is not None:
                found[names[id(module)]] = module
    if not found:
        raise ValueError(f"no linear layers named {sorted(targets)} in the decoder blocks "
                         "(config key pruning.target_sets)")
    return found


class ActivationPruning:
    """The installed state: one hook per target module, per-module criterion factors and mitigation parameters.

    ``enabled`` can be switched off to run the dense model without removing the hooks (used in calibration).
    ``criterion_options`` go to the criterion, except ``unstructured_scope`` (``token``, default, or ``global``:
    one top-k over the whole forward call for an unstructured pattern, config ``pruning.unstructured``).
    """

    def __init__(self, model: torch.nn.Module, pattern: str | Pattern = "8:16", criterion: str = "magnitude",
                 mitigation: str = "none", targets: Iterable[str] = DEFAULT_TARGETS,
                 layers: Iterable[int] | None = None, params: ModuleParams | None = None,
                 criterion_options: Mapping | None = None):
        self.model = model
        self.pattern = parse_pattern(pattern)
        self.criterion = get_criterion(criterion)
        self.mitigation: Mitigation = get_mitigation(mitigation)
        self.criterion_options = dict(criterion_options or {})
        scope = self.criterion_options.pop("unstructured_scope", "token")
        if scope not in UNSTRUCTURED_SCOPES:
            raise ValueError(f"config key pruning.unstructured.scope: expected one of {UNSTRUCTURED_SCOPES}, "
                             f"got {scope!r}")
        self.global_topk = scope == "global" and self.pattern.is_unstructured
        self.modules = find_target_modules(model, targets, layers)
        self.factors = {name: self.criterion.prepare(module_weight(m), **self.criterion_options)
                        for name, m in self.modules.items()}
        self.params = self._check_params(params or {})
        self.enabled = True
        self.calls = 0
        self._handles: list = []
        # q/k/v (and gate/up) read the same tensor; when the transform does not depend on the module it is
        # computed once per input and reused by the siblings
        self._shared = self.criterion.weight_factor is None and not self.params
        self._last: tuple | None = None

    def _check_params(self, params: ModuleParams) -> ModuleParams:
        needed = [key for key, _ in self.mitigation.param_shapes] or (["eta"] if self.mitigation.calibration else [])
        if not needed:
            return {}
        missing = [name for name in self.modules if any(key not in params.get(name, {}) for key in needed)]
        if missing:
            raise ValueError(f"mitigation {self.mitigation.name!r} needs calibrated parameters {needed} for "
                             f"{len(missing)} modules (e.g. {missing[0]}); pass calibration= windows or a file")
        device = module_weight(next(iter(self.modules.values()))).device
        return {name: {key: params[name][key].to(device) for key in needed} for name in self.modules}

    def prune(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """The criterion + pattern on ``x`` (no mitigation)."""
        valid = current_token_mask(x)
        with torch.no_grad():
            scores = self.criterion.score(x.detach(), self.factors[name], valid=valid, **self.criterion_options)
            if self.global_topk:
                mask = global_keep_mask(scores, self.pattern, valid)
            else:
                mask = keep_mask(scores, self.pattern)
        return x * mask

    def transform(self, name: str, x: torch.Tensor) -> torch.Tensor:
        return self.mitigation.transform_input(x, lambda z: self.prune(name, z), self.params.get(name, {}))

    def _transform_shared(self, name: str, x: torch.Tensor) -> torch.Tensor:
        if not self._shared:
            return self.transform(name, x)
        if self._last is not None:
            source, version, result = self._last
            if source() is x and version == x._version:
                return result
        result = self.transform(name, x)
        self._last = (weakref.ref(x), x._version, result)
        return result

    def _pre_hook(self, name: str):
        def hook(module, args):
            if not self.enabled or not args:
                return None
            self.calls += 1
            return (self._transform_shared(name, args[0]), *args[1:])
        return hook

    def _post_hook(self, name: str):
        def hook(module, args, output):
            if not self.enabled:
                return None
            return self.mitigation.transform_output(output, self.params[name])
        return hook

    def install(self) -> "ActivationPruning":
        if self._handles:
            raise RuntimeError("activation pruning is already installed")
        for name, module in self.modules.items():
            self._handles.append(module.register_forward_pre_hook(self._pre_hook(name)))
            if self.mitigation.transform_output is not None:
                self._handles.append(module.register_forward_hook(self._post_hook(name)))
        return self

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self._last = None
