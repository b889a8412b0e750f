"""Fine-tuning (LoRA, merged) and unlearning loops, resumable from a checkpoint directory.

Both loops use AdamW with HF's linear warm-up/decay schedule, gradient clipping at 1.0 and no weight decay on
biases and norm weights (the HF Trainer defaults, which CLEAR and open-unlearning train with). CLEAR uses
bitsandbytes' 8-bit AdamW and bf16 on GPUs; on CPU the project uses torch's AdamW in the configured dtype.
Batches are a pure function of (seed, epoch), so a resumed run sees the same data order; the checkpoint
(``lmscalpel.checkpoint``) is keyed by the loop's own settings and the caller's key (config section, method, split,
data and model files, seed), so a run resumes only from its own state.
"""

from __future__ import annotations

import logging
import math
import os
import random
import re
from typing import Any, Callable

import torch
import transformers
from tqdm import tqdm

from lmscalpel.checkpoint import files_identity, model_identity, open_checkpoint
from lmscalpel.io import atomic_path, write_json
from lmscalpel.models import ModelRef
from lmscalpel.unlearning.data import has_subset, load_clear_subset, retain_name, rows_of
from lmscalpel.unlearning.items import Encoder, Item, rows_to_items
from lmscalpel.unlearning.lora import attach_lora, l1_penalty, lora_parameters
from lmscalpel.unlearning.losses import Context, Reference, get_method
from lmscalpel.unlearning.vlm import load_vlm, save_vlm, vision_modules

log = logging.getLogger(__name__)

MAX_GRAD_NORM = 1.0
# transformers.Trainer.get_decay_parameter_names: parameters of LayerNorm modules and names matching these are
# exempt from weight decay.
NO_DECAY_PATTERNS = [r"bias", r"layernorm", r"rmsnorm", r"(?:^|\.)norm(?:$|\.)", r"_norm(?:$|\.)"]
MODALITIES = ("text", "visual", "both")


def epoch_order(n: int, epoch: int, seed: int) -> list[int]:
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.randperm(n, generator=generator).tolist()


def epoch_batches(n: int, batch_size: int, epoch: int, seed: int) -> list[list[int]]:
    order = epoch_order(n, epoch, seed)
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


def decayed_parameter_names(model: torch.nn.Module) -> set[str]:
    """Names of the parameters AdamW decays, as the HF Trainer chooses them (no biases, no norm weights)."""
    from transformers.trainer_pt_utils import get_parameter_names

    return set(get_parameter_names(model, [torch.nn.LayerNorm], NO_DECAY_PATTERNS))


def _param_groups(named_params: dict[str, torch.nn.Parameter], decayed: set[str] | None,
                  weight_decay: float) -> list[dict[str, Any]]:
    """One AdamW group with ``weight_decay`` (names in ``decayed``; all if None) and one without."""
    decay = [n for n in named_params if decayed is None or n in decayed]
    exempt = [n for n in named_params if decayed is not None and n not in decayed]
    return [{"params": [named_params[n] for n in group], "weight_decay": wd}
            for group, wd in ((decay, weight_decay), (exempt, 0.0)) if group]


def train_loop(named_params: dict[str, torch.nn.Parameter],
               step_losses: Callable[[int], list[torch.Tensor | Callable[[], torch.Tensor]]], *,
               n_steps: int, lr: float, weight_decay: float, warmup_steps: int,
               checkpoint_dir: str | os.PathLike | None, checkpoint_every: int,
               penalty: Callable[[], torch.Tensor] | None = None, decayed: set[str] | None = None,
               desc: str = "train", key: dict[str, Any] | None = None, what: str = "unlearning") -> list[float]:
    """Run ``n_steps`` steps; each loss returned by ``step_losses(step)`` (plus ``penalty()``) gets an optimiser
    step. A loss may be a zero-argument callable, evaluated only after the previous loss's step (SCRUB). Weight
    decay applies to the names in ``decayed`` (all when None; see :func:`decayed_parameter_names`). Saves the
    trained parameters, optimiser and schedule every ``checkpoint_every`` steps and resumes from them when the
    checkpoint was written under the same ``key`` (what ``step_losses`` and the model depend on) and the same loop
    settings (``what``: the config section, for messages). Returns the per-step loss history (summed over the
    step's losses, penalty included)."""
    params = list(named_params.values())
    optimizer = torch.optim.AdamW(_param_groups(named_params, decayed, weight_decay), lr=lr)
    schedule = transformers.get_linear_schedule_with_warmup(optimizer, warmup_steps, max(n_steps, 1))
    loop = {"n_steps": n_steps, "lr": lr, "weight_decay": weight_decay, "warmup_steps": warmup_steps,
            "decayed": sorted(decayed) if decayed is not None else None, "penalty": penalty is not None,
            "parameters": {n: [list(p.shape), str(p.dtype)] for n, p in named_params.items()}}
    with open_checkpoint(checkpoint_dir, {**(key or {}), "train_loop": loop}, what=what) as ckpt:
        start, history = _resume(ckpt, named_params, optimizer, schedule)
        for step in tqdm(range(start, n_steps), desc=desc, initial=start, total=n_steps, leave=False):
            total = 0.0
            for loss in step_losses(step):
                loss = loss() if callable(loss) else loss
                if penalty is not None:
                    loss = loss + penalty()
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"{desc}: non-finite loss at step {step}")
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, MAX_GRAD_NORM)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                total += float(loss.detach())
            schedule.step()
            history.append(total)
            if ckpt and ((step + 1) % checkpoint_every == 0 or step + 1 == n_steps):
                ckpt.save_state({"params": {n: p.detach().cpu() for n, p in named_params.items()},
                                 "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
                                 "step": step + 1, "history": history})
    return history


def _resume(ckpt, named_params, optimizer, schedule) -> tuple[int, list[float]]:
    state = ckpt.load_state() if ckpt else None
    if state is None:
        return 0, []
    with torch.no_grad():
        for name, p in named_params.items():
            p.copy_(state["params"][name].to(p.device))
    optimizer.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["schedule"])
    log.info("resumed from %s at step %d", ckpt.directory, state["step"])
    return int(state["step"]), list(state["history"])


def data_identity(source: str | os.PathLike, revision: str | None) -> dict[str, Any]:
    """A mini-CLEAR directory by its files' content, a hub dataset by its id and revision."""
    return {"source": os.fspath(source), "revision": revision,
            "files": files_identity(source, ("*.parquet", "manifest.json"))}


def _device_batch(encoder: Encoder, items: list[Item], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in encoder.encode(items).items()}


def training_items(source: str, subsets: list[str], *, revision: str | None, caption_prompts: list[str],
                   face_prompt: str | None, modality: str = "both") -> list[Item]:
    """Items of the given subsets; ``modality`` keeps text rows, image rows or both."""
    if modality not in MODALITIES:
        raise ValueError(f"modality {modality!r}: expected one of {MODALITIES}")
    rows = [r for s in subsets for r in rows_of(load_clear_subset(source, s, revision=revision))]
    rows = [r for r in rows if modality == "both" or (r.get("image") is None) == (modality == "text")]
    return rows_to_items(rows, caption_prompts=caption_prompts, face_prompt=face_prompt)


# --------------------------------------------------------------------------------------------------------------
# Fine-tuning (original and gold models)
# --------------------------------------------------------------------------------------------------------------

def finetune_subsets(source: str, split: str | None) -> list[str]:
    """``full+tofu`` (original) or ``retainYY+tofu`` (gold of ``split``), plus the toy world's real persons."""
    subsets = [f"{retain_name(split)}+tofu" if split else "full+tofu"]
    if has_subset(source, "real_faces_pretrain"):
        subsets.append("real_faces_pretrain")
    return subsets


def finetune_vlm(*, base: ModelRef, source: str, revision: str | None, split: str | None,
                 out_dir: str | os.PathLike, cfg: dict[str, Any], prompts: dict[str, Any],
                 checkpoint_dir: str | os.PathLike | None, seed: int,
                 provenance: dict[str, Any] | None = None) -> dict[str, Any]:
    """Fine-tune with LoRA (+ the projector when ``cfg['train_projector']``), merge and save (with a
    ``finetune.json`` summary next to the weights).

    ``split=None`` trains the original model on everything; ``split='forget10'`` the gold model on retain90.
    """
    model, processor = load_vlm(base, eval_mode=False)
    model.requires_grad_(False)
    saved = ["multi_modal_projector"] if cfg["train_projector"] else None
    model = attach_lora(model, r=cfg["lora_r"], alpha=cfg["lora_alpha"], dropout=cfg["lora_dropout"],
                        modules_to_save=saved)
    encoder = Encoder(processor, max_length=cfg["max_length"])
    subsets = finetune_subsets(source, split)
    items = training_items(source, subsets, revision=revision, caption_prompts=prompts["caption_prompts"],
                           face_prompt=prompts["face_prompt"] if cfg["face_items"] else None)
    steps_per_epoch = math.ceil(len(items) / cfg["batch_size"])
    device = next(model.parameters()).device
    named = {n: p for n, p in model.named_parameters() if p.requires_grad}
    model.train()
    for module in vision_modules(model):
        module.eval()

    def step_losses(step: int) -> list[torch.Tensor]:
        epoch, j = divmod(step, steps_per_epoch)
        batch_idx = epoch_batches(len(items), cfg["batch_size"], epoch, seed)[j]
        batch = _device_batch(encoder, [items[i] for i in batch_idx], device)
        return [model(**batch).loss]

    key = {"finetune": cfg, "prompts": prompts, "subsets": subsets, "data": data_identity(source, revision),
           "base": model_identity(base), "seed": seed}
    history = train_loop(named, step_losses, n_steps=steps_per_epoch * cfg["epochs"], lr=cfg["lr"],
                         weight_decay=cfg["weight_decay"], warmup_steps=steps_per_epoch * cfg["warmup_epochs"],
                         checkpoint_dir=checkpoint_dir, checkpoint_every=cfg["checkpoint_every"],
                         decayed=decayed_parameter_names(model), desc=f"finetune {split or 'full'}", key=key,
                         what="unlearning.finetune")
    merged = model.merge_and_unload()
    merged.eval()
    info = {"subsets": subsets, "n_items": len(items), "steps": len(history), "first_loss": history[0],
            "final_loss": history[-1], **(provenance or {})}
    with atomic_path(out_dir) as tmp:
        save_vlm(merged, processor, tmp)
        write_json(tmp / "finetune.json", info)
    return info


# --------------------------------------------------------------------------------------------------------------
# Unlearning
# --------------------------------------------------------------------------------------------------------------

def trainable_parameters(model: torch.nn.Module, patterns: list[str] | None) -> dict[str, torch.nn.Parameter]:
    """Full-weight unlearning: every non-vision weight, or only the modules matching ``patterns``."""
    vision = {id(p) for m in vision_modules(model) for p in m.parameters()}
    named = {}
    for name, p in model.named_parameters():
        if id(p) in vision or (patterns and not any(re.search(pat, name) for pat in patterns)):
            continue
        p.requires_grad_(True)
        named[name] = p
    if not named:
        raise ValueError(f"no trainable parameters match {patterns}")
    return named


def unlearn_key(cfg: dict[str, Any], method: str, params: dict[str, Any], split: str, modality: str,
                l1_lambda: float | None, prompts: dict[str, Any], original: ModelRef, data: dict[str, Any]) -> dict:
    """What an unlearning run's numbers depend on: the section without the other methods' parameters and the λ
    sweep (its own method's parameters and λ instead), the run's split and modality, prompts, data, original model."""
    section = {k: v for k, v in cfg.items() if k != "methods"}
    section["l1"] = {k: v for k, v in cfg.get("l1", {}).items() if k != "lambdas"}
    return {"unlearn": section, "method": method, "method_params": params, "split": split, "modality": modality,
            "l1_lambda": l1_lambda, "prompts": prompts, "data": data, "original": model_identity(original)}


def unlearn(*, original: ModelRef, source: str, revision: str | None, split: str, modality: str, method: str,
            l1_lambda: float | None, cfg: dict[str, Any], prompts: dict[str, Any],
            checkpoint_dir: str | os.PathLike | None, seed: int) -> tuple[torch.nn.Module, Any, dict[str, Any]]:
    """Unlearn ``split`` (``modality`` rows of ``forgetNN+tofu``) from the original model with ``method``;
    with ``l1_lambda`` λ (not None) a fresh LoRA adapter trains under λ·‖LoRA‖₁ and is merged.
    Returns (model, processor, info)."""
    l1 = l1_lambda is not None
    spec = get_method(method)
    params = {**cfg["methods"].get(method, {}), "seed": seed}
    model, processor = load_vlm(original, eval_mode=False)
    model.requires_grad_(False)
    patterns = spec.trainable(model, params) if spec.trainable else None
    if l1:
        model = attach_lora(model, r=cfg["l1"]["lora_r"], alpha=cfg["l1"]["lora_alpha"], dropout=0.0,
                            module_patterns=patterns)
        named = {n: p for n, p in model.named_parameters() if p.requires_grad}
        penalty = lambda: l1_penalty(model, float(l1_lambda))  # noqa: E731
    else:
        named = trainable_parameters(model, patterns)
        penalty = None
    initial = {n: p.detach().clone() for n, p in named.items()} if spec.finalize else {}
    encoder = Encoder(processor, max_length=cfg["max_length"])
    face = prompts["face_prompt"] if cfg["face_items"] else None
    item_kw = {"revision": revision, "caption_prompts": prompts["caption_prompts"], "face_prompt": face}
    forget = training_items(source, [f"{split}+tofu"], modality=modality, **item_kw)
    retain = training_items(source, [f"{retain_name(split)}+tofu"], **item_kw)
    everyone = training_items(source, ["full+tofu"], **item_kw)
    ctx = Context(model=model, reference=Reference(model, uses_adapter=l1) if spec.uses_reference else None,
                  encoder=encoder, params=params, retain_weight=float(cfg["retain_weight"]),
                  n_epochs=int(cfg["epochs"]), answer_pool=everyone, forget_pool=forget,
                  nll_reduction=cfg["nll_reduction"])
    model.train()
    for module in vision_modules(model):
        module.eval()
    if spec.setup:
        spec.setup(ctx, forget)
    bs = int(cfg["batch_size"])
    steps_per_epoch = math.ceil(len(forget) / bs)

    def step_losses(step: int) -> list[torch.Tensor]:
        epoch, j = divmod(step, steps_per_epoch)
        forget_idx = epoch_batches(len(forget), bs, epoch, seed)[j]
        # each forget sample is paired with one random retain sample (CLEAR's forget data loader)
        pair_rng = random.Random(seed * 7919 + step)
        ctx.epoch, ctx.rng = epoch, random.Random(seed * 104_729 + step)
        return spec.losses(ctx, [forget[i] for i in forget_idx],
                           [retain[pair_rng.randrange(len(retain))] for _ in forget_idx])

    n_steps = steps_per_epoch * int(cfg["epochs"])
    history = train_loop(named, step_losses, n_steps=n_steps, lr=float(cfg["lr"]),
                         weight_decay=float(cfg["weight_decay"]), warmup_steps=steps_per_epoch * cfg["warmup_epochs"],
                         checkpoint_dir=checkpoint_dir, checkpoint_every=int(cfg["checkpoint_every"]),
                         penalty=penalty, decayed=decayed_parameter_names(model),
                         desc=f"{method} {split} {modality} l1={l1_lambda}", what="unlearning.unlearn",
                         key=unlearn_key(cfg, method, params, split, modality, l1_lambda, prompts, original,
                                         data_identity(source, revision)))
    info = {"n_forget_items": len(forget), "n_retain_items": len(retain), "steps": n_steps,
            "first_loss": history[0], "final_loss": history[-1], "trainable_parameters": sum(
                p.numel() for p in named.values())}
    if l1:
        info["l1_norm_lora"] = float(sum(p.detach().abs().sum() for p in lora_parameters(model)))
    if spec.finalize:
        spec.finalize(model, initial, l1, params)
    if "coeff" in ctx.state:
        info["rmu_coeff"] = ctx.state["coeff"]
    if l1:
        model = model.merge_and_unload()
    model.eval().requires_grad_(False)
    return model, processor, info
