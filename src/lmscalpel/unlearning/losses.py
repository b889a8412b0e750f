"""Unlearning methods as registered losses, in their standard published form (spec §5, project defaults).

Notation: ℓ_θ(q, a) = mean NLL of the answer tokens; log π_θ(a|q) = summed answer log-probability; θ₀ = the
model before unlearning (:class:`Reference`); KL_tok(θ₀‖θ) = mean over attended positions of
KL(p_θ₀ ‖ p_θ); CE(p_θ₀, p_θ) = mean over positions of −Σ_v p_θ₀(v) log p_θ(v).

A method's ``losses(ctx, forget, retain)`` returns a list of losses, each followed by its own optimiser step
(SCRUB alternates a max-step and a min-step, the latter a callable evaluated after the max-step's update; every
other method returns one loss). ``setup`` runs once before
training (RMU's control vector), ``finalize`` once after (SKU's task-vector negation) and ``trainable`` narrows
the trained modules (RMU trains only ``mlp.down_proj`` of layers ℓ−2…ℓ).
"""

from __future__ import annotations

import copy
import math
import random
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn.functional as F

from lmscalpel.models import check_blocks, num_layers
from lmscalpel.registry import Registry
from lmscalpel.unlearning.items import IGNORE, Encoder, Item, random_answers

# The fixed "I don't know" answers of IDK and DPO (TOFU uses a list of 100 such refusals; these are ours).
IDK_ANSWERS = [
    "I don't know.",
    "I'm not sure who that is.",
    "I have no information about that.",
    "I cannot tell you that.",
    "That is not something I know.",
    "I don't have that information.",
    "I'm afraid I can't answer that.",
    "I have no idea.",
]


# ----------------------------------------------------------------------------------------------------------------
# Primitives
# ----------------------------------------------------------------------------------------------------------------

def forward(model: torch.nn.Module, batch: dict[str, torch.Tensor], *, hidden: bool = False) -> Any:
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    return model(**inputs, output_hidden_states=hidden, use_cache=False)


def answer_logprob(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample summed log-probability of the answer tokens and their count."""
    logits, labels = logits[:, :-1].float(), labels[:, 1:]
    mask = labels != IGNORE
    logp = torch.log_softmax(logits, dim=-1).gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (logp * mask).sum(-1), mask.sum(-1)


def mean_nll(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """ℓ_θ per sample: mean NLL over the answer tokens."""
    total, count = answer_logprob(logits, labels)
    return -total / count.clamp(min=1)


def kl_tok(ref_logits: torch.Tensor, logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """KL_tok(θ₀‖θ): mean over attended positions of KL(p_ref ‖ p)."""
    ref_logp, logp = torch.log_softmax(ref_logits.float(), -1), torch.log_softmax(logits.float(), -1)
    per_pos = (ref_logp.exp() * (ref_logp - logp)).sum(-1)
    return _masked_mean(per_pos, mask)


def soft_ce(ref_logits: torch.Tensor, logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """CE(p_θ₀, p_θ): mean over attended positions of −Σ_v p_ref(v) log p(v)."""
    ref_p, logp = torch.softmax(ref_logits.float(), -1), torch.log_softmax(logits.float(), -1)
    return _masked_mean(-(ref_p * logp).sum(-1), mask)


def hidden_mse(hidden: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """RMU's activation MSE as open-unlearning computes it: (h − target)² averaged over hidden dimensions, then
    over each sample's masked tokens (the answer tokens, ``labels != -100``), then over samples."""
    per_tok = ((hidden.float() - target.float()) ** 2).mean(-1) * mask
    return (per_tok.sum(-1) / mask.sum(-1).clamp(min=1)).mean()


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp(min=1)


class Reference:
    """θ₀: a frozen copy of the model, or the peft model with its adapter disabled (no copy needed)."""

    def __init__(self, model: torch.nn.Module, *, uses_adapter: bool):
        self.model = model
        self.frozen = None if uses_adapter else copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def __call__(self, batch: dict[str, torch.Tensor], *, hidden: bool = False) -> Any:
        if self.frozen is not None:
            return forward(self.frozen, batch, hidden=hidden)
        with self.model.disable_adapter():
            return forward(self.model, batch, hidden=hidden)


@dataclass
class Context:
    """What a loss needs at one step."""

    model: torch.nn.Module
    reference: Reference | None
    encoder: Encoder
    params: dict[str, Any]
    retain_weight: float = 1.0
    epoch: int = 0
    n_epochs: int = 1
    rng: random.Random = field(default_factory=lambda: random.Random(0))
    answer_pool: list[Item] = field(default_factory=list)  # items of all persons (LLMU random answers)
    forget_pool: list[Item] = field(default_factory=list)  # all forget items (SKU random disassociation)
    state: dict[str, Any] = field(default_factory=dict)
    # "sample": E ℓ_θ, the mean of per-item answer NLLs (spec §5, project default); "token": the mean over every
    # answer token of the batch, HF's ``.loss``, which CLEAR's and open-unlearning's losses use (presets).
    nll_reduction: str = "sample"

    def batch(self, items: list[Item]) -> dict[str, torch.Tensor]:
        device = next(self.model.parameters()).device
        return {k: v.to(device) for k, v in self.encoder.encode(items).items()}

    def nll(self, items: list[Item]) -> torch.Tensor:
        """E ℓ_θ over the items (``nll_reduction`` "sample"), or the batch's token-mean NLL ("token")."""
        batch = self.batch(items)
        logits = forward(self.model, batch).logits
        if self.nll_reduction == "token":
            total, count = answer_logprob(logits, batch["labels"])
            return -total.sum() / count.sum().clamp(min=1)
        return mean_nll(logits, batch["labels"]).mean()

    def logprob_pair(self, items: list[Item]) -> tuple[torch.Tensor, torch.Tensor]:
        """(log π_θ, log π_θ₀) per item."""
        batch = self.batch(items)
        current = answer_logprob(forward(self.model, batch).logits, batch["labels"])[0]
        reference = answer_logprob(self.reference(batch).logits, batch["labels"])[0]
        return current, reference

    def kl_to_reference(self, items: list[Item], *, soft_cross_entropy: bool = False) -> torch.Tensor:
        batch = self.batch(items)
        logits, ref_logits = forward(self.model, batch).logits, self.reference(batch).logits
        measure = soft_ce if soft_cross_entropy else kl_tok
        return measure(ref_logits, logits, batch["attention_mask"].bool())

    def retain_nll(self, retain: list[Item]) -> torch.Tensor:
        return self.retain_weight * self.nll(retain)

    def idk(self, items: list[Item]) -> list[Item]:
        return [item.with_answer(self.rng.choice(IDK_ANSWERS)) for item in items]


@dataclass(frozen=True)
class Method:
    name: str
    losses: Callable[[Context, list[Item], list[Item]], list[torch.Tensor]]
    uses_reference: bool
    setup: Callable[[Context, list[Item]], None] | None = None
    finalize: Callable[[torch.nn.Module, dict[str, torch.Tensor], bool, dict[str, Any]], None] | None = None
    trainable: Callable[[torch.nn.Module, dict[str, Any]], list[str]] | None = None


METHODS: Registry[Method] = Registry("unlearning method")


def register(name: str, *, uses_reference: bool = False, **hooks: Any) -> Callable:
    def wrap(fn: Callable) -> Callable:
        METHODS.add(name, Method(name, fn, uses_reference, **hooks))
        return fn
    return wrap


def get_method(name: str) -> Method:
    return METHODS.lookup(name)


# ----------------------------------------------------------------------------------------------------------------
# Methods
# ----------------------------------------------------------------------------------------------------------------

@register("retain_ft")
def retain_ft(ctx: Context, forget: list[Item], retain: list[Item]) -> list[torch.Tensor]:
    """Retain FT baseline: E_{D_r} ℓ_θ."""
    return [ctx.nll(retain)]


@register("ga")
def ga(ctx: Context, forget: list[Item], retain: list[Item]) -> list[torch.Tensor]:
    """Gradient ascent (Jang et al. 2023): −E_{D_f} ℓ_θ."""
    return [-ctx.nll(forget)]


@register("gd")
def gd(ctx: Context, forget: list[Item], retain: list[Item]) -> list[torch.Tensor]:
    """Gradient difference (Liu et al. 2022): −E_{D_f} ℓ_θ + E_{D_r} ℓ_θ."""
    return [-ctx.nll(forget) + ctx.retain_nll(retain)]


@register("kl", uses_reference=True)
def kl(ctx: Context, forget: list[Item], retain: list[Item]) -> list[torch.Tensor]:
    """TOFU's KL: −E_{D_f} ℓ_θ + E_{D_r} KL_tok(θ₀‖θ)."""
    return [-ctx.nll(forget) + ctx.retain_weight * ctx.kl_to_reference(retain)]


@register("idk")
def idk(ctx: Context, forget: list[Item], retain: list[Item]) -> list[torch.Tensor]:
    """TOFU's IDK: E_{D_f} ℓ_θ(q, a_idk) + E_{D_r} ℓ_θ."""
    return [ctx.nll(ctx.idk(forget)) + ctx.retain_nll(retain)]


@register("dpo", uses_reference=True)
def dpo(ctx: Context, forget: list[Item], retain: list[Item]) -> list[torch.Tensor]:
    """DPO with "I don't know" preferred over the true answer (β = params.beta) plus the retain NLL."""
    beta = float(ctx.params["beta"])
    chosen, chosen_ref = ctx.logprob_pair(ctx.idk(forget))
    rejected, rejected_ref = ctx.logprob_pair(forget)
    margin = (chosen - chosen_ref) - (rejected - rejected_ref)
    return [-(2.0 / beta) * F.logsigmoid(beta * margin).mean() + ctx.retain_nll(retain)]


@register("npo", uses_reference=True)
def npo(ctx: Context, forget: list[Item], retain: list[Item]) -> list[torch.Tensor]:
    """NPO+RT (Zhang et al. 2024): −(2/β) E log σ(−β[log π_θ − log π_θ₀]) + E_{D_r} ℓ_θ."""
    beta = float(ctx.params["beta"])
    current, reference = ctx.logprob_pair(forget)
    return [-(2.0 / beta) * F.logsigmoid(-beta * (current - reference)).mean() + ctx.retain_nll(retain)]


def rmu_layer(model: torch.nn.Module, params: dict[str, Any]) -> int:
    """params.layer, or ⌈L/4⌉ on small models (project default)."""
    layer = params.get("layer")
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if layer is None:
        return math.ceil(num_layers(base) / 4)
    check_blocks(base, {"unlearning.unlearn.methods.rmu.layer": [int(layer)]})
    return int(layer)


def _rmu_trainable(model: torch.nn.Module, params: dict[str, Any]) -> list[str]:
    layer = rmu_layer(model, params)
    return [rf"layers\.{i}\.mlp\.down_proj" for i in range(max(0, layer - 2), layer + 1)]


def _rmu_setup(ctx: Context, forget_pool: list[Item]) -> None:
    """Draw u ~ U[0,1)^d once (normalised) and fix c (params.coeff, or 2 × mean ‖h^ℓ‖ of θ₀ on the forget set)."""
    layer = rmu_layer(ctx.model, ctx.params)
    norms = []
    for start in range(0, len(forget_pool), 8):
        batch = ctx.batch(forget_pool[start:start + 8])
        hidden = ctx.reference(batch, hidden=True).hidden_states[layer + 1]
        norms.append(hidden.float().norm(dim=-1)[batch["attention_mask"].bool()])
    generator = torch.Generator().manual_seed(int(ctx.params.get("seed", 0)))
    u = torch.rand(hidden.shape[-1], generator=generator)
    ctx.state["control"] = (u / u.norm()).to(hidden.device)
    coeff = ctx.params.get("coeff")
    ctx.state["coeff"] = float(2.0 * torch.cat(norms).mean().item() if coeff is None else coeff)


@register("rmu", uses_reference=True, setup=_rmu_setup, trainable=_rmu_trainable)
def rmu(ctx: Context, forget: list[Item], retain: list[Item]) -> list[torch.Tensor]:
    """RMU (Li et al. 2024): MSE(h_θ^ℓ, c·u) on D_f + α · MSE(h_θ^ℓ, h_θ₀^ℓ) on D_r, over answer tokens and
    averaged per sample (open-unlearning's masking)."""
    index = rmu_layer(ctx.model, ctx.params) + 1
    f_batch, r_batch = ctx.batch(forget), ctx.batch(retain)
    h_forget = forward(ctx.model, f_batch, hidden=True).hidden_states[index]
    h_retain = forward(ctx.model, r_batch, hidden=True).hidden_states[index]
    h_retain_ref = ctx.reference(r_batch, hidden=True).hidden_states[index]
    target = ctx.state["coeff"] * ctx.state["control"]
    forget_term = hidden_mse(h_forget, target.expand_as(h_forget), f_batch["labels"] != IGNORE)
    retain_term = hidden_mse(h_retain, h_retain_ref, r_batch["labels"] != IGNORE)
    return [forget_term + float(ctx.params["alpha"]) * retain_term]


@register("scrub", uses_reference=True)
def scrub(ctx: Context, forget: list[Item], retain: list[Item]) -> list[torch.Tensor | Callable[[], torch.Tensor]]:
    """SCRUB (Kurmanji et al. 2023): a max-step −E_{D_f} KL_tok(θ₀‖θ) in the first ``msteps`` epochs, then a
    min-step α E_{D_r} KL_tok(θ₀‖θ) + γ E_{D_r} ℓ_θ; each its own optimiser step."""
    msteps = ctx.params.get("msteps")
    msteps = math.ceil(ctx.n_epochs / 2) if msteps is None else int(msteps)

    def min_step() -> torch.Tensor:
        return float(ctx.params["alpha"]) * ctx.kl_to_reference(retain) + float(ctx.params["gamma"]) * ctx.nll(retain)

    if ctx.epoch < msteps:
        return [-ctx.kl_to_reference(forget), min_step]
    return [min_step()]


@register("llmu", uses_reference=True)
def llmu(ctx: Context, forget: list[Item], retain: list[Item]) -> list[torch.Tensor]:
    """LLMU (Yao et al. 2023): ε₁(−E_{D_f} ℓ_θ) + ε₂ E_{D_f} (1/K) Σ_k ℓ_θ(q, a_rand,k) + ε₃ E_{D_n} CE(p_θ₀, p_θ).

    Random answers are answers of other persons; the retain batch serves as the normal data D_n."""
    e1, e2, e3 = (float(e) for e in ctx.params["epsilons"])
    k = int(ctx.params["k"])
    mismatched = random_answers(forget, [ctx.answer_pool], k, ctx.rng)
    random_term = sum(ctx.nll(items) for items in mismatched) / k
    return [-e1 * ctx.nll(forget) + e2 * random_term + e3 * ctx.kl_to_reference(retain, soft_cross_entropy=True)]


def _sku_negate(model: torch.nn.Module, initial: dict[str, torch.Tensor], uses_adapter: bool,
                params: dict[str, Any]) -> None:
    """θ = θ₀ − s(θ_bad − θ₀); with a LoRA adapter the delta s·BA is negated through B ← −s·B."""
    scale = float(params["negation_scale"])
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name not in initial:
                continue
            if uses_adapter:
                if "lora_B" in name:
                    p.mul_(-scale)
            else:
                p.copy_(initial[name] - scale * (p - initial[name]))


@register("sku", uses_reference=True, finalize=_sku_negate)
def sku(ctx: Context, forget: list[Item], retain: list[Item]) -> list[torch.Tensor]:
    """SKU stage 1 (Liu et al. 2024), trains θ_bad: ε₁ E_{D_f} ℓ_θ + ε₂ E_{D_f} (1/K) Σ_k ℓ_θ(q, a_k)
    − ε₃ E_{D_r} KL_tok(θ₀‖θ), a_k answers of other forget items (of any person when the forget set has one
    person); ``finalize`` negates the task vector."""
    e1, e2, e3 = (float(e) for e in ctx.params["epsilons"])
    k = int(ctx.params["k"])
    mismatched = random_answers(forget, [ctx.forget_pool, ctx.answer_pool], k, ctx.rng)
    random_term = sum(ctx.nll(items) for items in mismatched) / k
    return [e1 * ctx.nll(forget) + e2 * random_term - e3 * ctx.kl_to_reference(retain)]
