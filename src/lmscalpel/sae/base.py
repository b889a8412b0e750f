"""The SAE base class, config dataclasses and the architecture registry.

Shapes follow SAELens: ``W_enc [d, m]``, ``b_enc [m]``, ``W_dec [m, d]`` (row i = direction of latent i), ``b_dec [d]``.
An SAE works in its *input space*: ``activation_scale`` records how that space relates to raw activations
(``x_in = activation_scale * x_raw``). Trained SAEs see scaled activations (spec §0); ``fold_activation_scale``
moves the scale into the weights so the SAE takes raw activations (what ``save_sae``/``load_sae`` produce).

A new architecture is one module: a config dataclass (subclass of :class:`SAEConfig`) and a subclass of
:class:`SparseAutoencoder` decorated with ``@register_sae("name")``, plus its import line in
``lmscalpel.sae.architectures``. As in SAELens, its settings live in its config class: a :func:`setting` field is
read from the config key ``sae.<section>.<field>`` and a :func:`swept` field is a grid axis (one SAE per value of a
``sae.<values>`` list); the config schema's entries for those keys are made from the fields (``lmscalpel.config``).
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from lmscalpel.registry import Registry

SAE_REGISTRY: Registry[type["SparseAutoencoder"]] = Registry("SAE architecture")
SETTING, SWEPT = "lmscalpel_setting", "lmscalpel_swept"  # field metadata keys
JSON_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string", type(None): "null"}


def setting(default: Any, description: str, *, section: str, **schema: Any) -> Any:
    """A config field read from the config key ``sae.<section>.<field name>`` (default ``default``); ``schema``
    adds JSON-schema constraints (``minimum``, ``enum``, ...) to the type its annotation gives."""
    return dataclasses.field(default=default, metadata={SETTING: {"section": section, "description": description,
                                                                  **schema}})


def swept(default: Any, description: str, *, values: str, default_values: list, tag: str,
          less_than_width: bool = False, **item_schema: Any) -> Any:
    """A config field the SAE grid sweeps: one SAE per value of the config list ``sae.<values>`` (default
    ``default_values``; ``item_schema`` constrains each value), named ``tag.format(value)`` in the SAE id.
    ``less_than_width``: each value must be below every width of the grid (the plan checks it, as a schema cannot).
    ``default`` serves SAEs built outside the grid."""
    return dataclasses.field(default=default, metadata={SWEPT: {"values": values, "default": default_values,
                                                                "tag": tag, "less_than_width": less_than_width,
                                                                "description": description, **item_schema}})


@dataclass
class SAEConfig:
    """Fields shared by every architecture.

    ``sections`` describes the config sections (``sae.<section>``) that the class's own settings introduce.
    """

    sections: ClassVar[dict[str, str]] = {}

    d_in: int
    d_sae: int
    apply_b_dec_to_input: bool = True

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def catalog_entry(cls) -> dict[str, Any]:
        """What the config schema and the grid plan need of this architecture (JSON): its settings' schema entries
        by section, its grid axes and the descriptions of the sections it introduces."""
        types = typing.get_type_hints(cls)
        settings: dict[str, dict[str, Any]] = {}
        grid = []
        for field in dataclasses.fields(cls):
            if SETTING in field.metadata:
                meta = dict(field.metadata[SETTING])
                section = meta.pop("section")
                settings.setdefault(section, {})[field.name] = _schema_entry(types[field.name], field.default, meta)
            if SWEPT in field.metadata:
                meta = dict(field.metadata[SWEPT])
                values, default, tag = meta.pop("values"), meta.pop("default"), meta.pop("tag")
                description, less_than_width = meta.pop("description"), meta.pop("less_than_width")
                schema = {"type": "array", "items": {"type": _json_type(types[field.name]), **meta}, "minItems": 1,
                          "default": default, "description": description}
                grid.append({"field": field.name, "values": values, "tag": tag, "less_than_width": less_than_width,
                             "schema": schema})
        described = {k: v for base in reversed(cls.__mro__) for k, v in vars(base).get("sections", {}).items()}
        return {"settings": settings, "grid": grid,
                "sections": {section: described[section] for section in settings if section in described}}

    @classmethod
    def for_grid_entry(cls, spec: dict[str, Any], sae_config: dict[str, Any], d_in: int) -> "SAEConfig":
        """The config of one grid entry: width and swept values from its spec (``lmscalpel.sae.plan``), every
        setting from its section of the ``sae`` config (validated, it has them all; else the field's default)."""
        types = typing.get_type_hints(cls)
        values = {}
        for field in dataclasses.fields(cls):
            if SETTING in field.metadata:
                section = sae_config.get(field.metadata[SETTING]["section"], {})
                values[field.name] = section.get(field.name, field.default)
            if SWEPT in field.metadata:
                values[field.name] = types[field.name](spec[field.name])
        return cls(d_in=d_in, d_sae=int(spec["width"]), **values)


def _json_type(annotation: Any) -> str | list[str]:
    names = [JSON_TYPES[t] for t in typing.get_args(annotation) or (annotation,)]
    return names[0] if len(names) == 1 else names


def _schema_entry(annotation: Any, default: Any, meta: dict[str, Any]) -> dict[str, Any]:
    """The JSON-schema entry of a setting: its type (unless an ``enum`` lists the values), constraints, default
    and description."""
    typed = {} if "enum" in meta else {"type": _json_type(annotation)}
    description = meta.pop("description")
    return {**typed, **meta, "default": default, "description": description}


@dataclass
class StepContext:
    """What one training step needs besides the batch."""

    step: int
    total_steps: int
    dead_mask: torch.Tensor | None = None  # bool [m]: latents that have not fired within the dead window


@dataclass
class StepOutput:
    """Loss to back-propagate plus per-step statistics (floats) and the latents that fired (bool [m])."""

    loss: torch.Tensor
    fired: torch.Tensor
    stats: dict[str, float]
    min_active: float | None = None  # smallest positive kept activation (BatchTopK threshold tracking)


def register_sae(name: str):
    """Class decorator: make an architecture available to :func:`build_sae` and the SAELens reader."""

    def wrap(cls: type[SparseAutoencoder]) -> type[SparseAutoencoder]:
        cls.architecture = name
        return SAE_REGISTRY.add(name, cls)

    return wrap


def build_sae(arch: str, cfg: SAEConfig | dict[str, Any], generator: torch.Generator | None = None):
    """Instantiate a registered architecture from its config dataclass or a plain dict (unknown keys are errors)."""
    cls = SAE_REGISTRY.lookup(arch)
    if isinstance(cfg, dict):
        names = {f.name for f in dataclasses.fields(cls.config_class)}
        unknown = set(cfg) - names
        if unknown:
            raise ValueError(f"{arch}: unknown config keys {sorted(unknown)}; allowed: {sorted(names)}")
        cfg = cls.config_class(**cfg)
    return cls(cfg, generator=generator)


class SparseAutoencoder(nn.Module):
    """Encode ``f = act((x - a·b_dec) W_enc + b_enc)``, decode ``x̂ = f W_dec + b_dec``.

    Subclasses set ``config_class``, implement :meth:`activation` (inference mode) and, if trainable,
    :meth:`training_step` and :meth:`init_parameters`.
    """

    architecture: ClassVar[str] = "base"
    config_class: ClassVar[type[SAEConfig]] = SAEConfig
    #: Decoder rows are kept at unit norm during training (parallel gradient removed, rows renormalised).
    unit_norm_decoder: ClassVar[bool] = True
    #: The ``sae.train`` key of its Adam learning rate; a null value means 2e-4 / sqrt(width / 2^14) (Gao et al.).
    learning_rate_key: ClassVar[str] = "lr"
    #: The SAELens architecture it is exported as (``cfg.json`` ``architecture``); None: not exportable.
    saelens_architecture: ClassVar[str | None] = None
    #: Its colour in the SAE stage's figures (None: matplotlib's next one).
    colour: ClassVar[str | None] = None

    def __init__(self, cfg: SAEConfig, generator: torch.Generator | None = None):
        super().__init__()
        self.cfg = cfg
        d, m = cfg.d_in, cfg.d_sae
        self.W_enc = nn.Parameter(torch.empty(d, m))
        self.b_enc = nn.Parameter(torch.zeros(m))
        self.W_dec = nn.Parameter(torch.empty(m, d))
        self.b_dec = nn.Parameter(torch.zeros(d))
        self.register_buffer("activation_scale", torch.tensor(1.0))
        self.metadata: dict[str, Any] = {}
        self.init_parameters(generator)

    # --- shape attributes (SAEBench / SAELens contract) ---
    @property
    def d_in(self) -> int:
        return self.cfg.d_in

    @property
    def d_sae(self) -> int:
        return self.cfg.d_sae

    @property
    def dtype(self) -> torch.dtype:
        return self.W_enc.dtype

    @property
    def device(self) -> torch.device:
        return self.W_enc.device

    # --- init ---
    @torch.no_grad()
    def init_parameters(self, generator: torch.Generator | None = None) -> None:
        """Unit-norm random decoder rows, encoder = decoder transpose, zero biases (spec §2.1)."""
        w = torch.randn(self.cfg.d_sae, self.cfg.d_in, generator=generator)
        self.W_dec.copy_(w / w.norm(dim=-1, keepdim=True))
        self.W_enc.copy_(self.W_dec.t())
        self.b_enc.zero_()
        self.b_dec.zero_()

    @torch.no_grad()
    def init_from_data(self, geometric_median: torch.Tensor) -> None:
        """Data-dependent init; the TopK family sets ``b_dec`` to the geometric median."""
        self.b_dec.copy_(geometric_median)

    # --- inference ---
    def pre_activation(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.dtype)
        if self.cfg.apply_b_dec_to_input:
            x = x - self.b_dec
        return x @ self.W_enc + self.b_enc

    def activation(self, pre: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.pre_activation(x))

    def decode(self, f: torch.Tensor) -> torch.Tensor:
        return f @ self.W_dec + self.b_dec

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.encode(x)
        return self.decode(f), f

    # --- training hooks ---
    @classmethod
    def trainable(cls) -> bool:
        """Whether the grid can train it (an inference-only architecture keeps the base training step)."""
        return cls.training_step is not SparseAutoencoder.training_step

    def training_step(self, x: torch.Tensor, ctx: StepContext) -> StepOutput:
        raise NotImplementedError(f"{self.architecture} is inference-only")

    def after_optimizer_step(self, out: StepOutput, ctx: StepContext) -> None:
        """Update non-gradient state (e.g. the BatchTopK threshold)."""

    @torch.no_grad()
    def remove_parallel_decoder_grad(self) -> None:
        """g_i ← g_i − (g_i·d_i) d_i for unit-norm rows d_i, so the step stays tangent to the sphere."""
        if self.W_dec.grad is None:
            return
        rows = self.W_dec / self.W_dec.norm(dim=-1, keepdim=True)
        parallel = (self.W_dec.grad * rows).sum(-1, keepdim=True)
        self.W_dec.grad.sub_(parallel * rows)

    @torch.no_grad()
    def normalise_decoder(self) -> None:
        self.W_dec.div_(self.W_dec.norm(dim=-1, keepdim=True).clamp_min(1e-12))

    # --- folding (spec §11) ---
    @torch.no_grad()
    def fold_activation_scale(self) -> None:
        """Make the SAE take raw activations: W_enc ← s·W_enc, b_dec ← b_dec/s, W_dec ← W_dec/s."""
        s = float(self.activation_scale)
        if s == 1.0:
            return
        self.W_enc.mul_(s)
        self.b_dec.div_(s)
        self.W_dec.div_(s)
        self.activation_scale.fill_(1.0)

    @torch.no_grad()
    def fold_decoder_norms(self) -> None:
        """Unit-norm decoder rows with unchanged reconstructions: W_dec,i/n_i, W_enc[:, i]·n_i, b_enc,i·n_i."""
        norms = self.W_dec.norm(dim=-1).clamp_min(1e-12)
        self.W_dec.div_(norms[:, None])
        self.W_enc.mul_(norms[None, :])
        self.b_enc.mul_(norms)
        self._scale_thresholds(norms)

    def _scale_thresholds(self, norms: torch.Tensor) -> None:
        """Architectures with per-latent thresholds rescale them with the encoder (JumpReLU)."""

    def saelens_fields(self) -> dict[str, Any]:
        """Architecture fields of the exported SAELens ``cfg.json`` besides the shared ones."""
        return {}

    @classmethod
    def config_from_saelens(cls, cfg: dict[str, Any]) -> dict[str, Any]:
        """Config fields read from a SAELens ``cfg.json`` besides the shared ones (the inverse of
        :meth:`saelens_fields`)."""
        return {}

    def extra_state(self) -> dict[str, Any]:
        """Non-tensor training state to checkpoint (e.g. generator states)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        pass
