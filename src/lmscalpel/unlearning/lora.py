"""LoRA adapters (peft) on the language model's linear layers, and CLEAR's L1 penalty on the LoRA weights."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from peft import PeftModel

LM_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def lm_target_regex(module_patterns: list[str] | None = None) -> str:
    """peft ``target_modules`` regex: the language model's linear layers (optionally only ``module_patterns``)."""
    if module_patterns:
        return rf".*language_model.*(?:{'|'.join(module_patterns)})"
    return rf".*language_model.*\.(?:{'|'.join(LM_LINEAR)})"


def attach_lora(model: torch.nn.Module, *, r: int, alpha: int, dropout: float,
                module_patterns: list[str] | None = None,
                modules_to_save: list[str] | None = None) -> "PeftModel":
    """Wrap ``model`` with a fresh LoRA adapter; only the adapter (and ``modules_to_save``) train.

    peft is imported here, not at module level: it costs ~2 s of start-up that most unlearning jobs never use.
    """
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, bias="none",
                        target_modules=lm_target_regex(module_patterns), modules_to_save=modules_to_save)
    return get_peft_model(model, config)


def lora_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The LoRA A and B matrices."""
    return [p for name, p in model.named_parameters() if "lora_A" in name or "lora_B" in name]


def l1_penalty(model: torch.nn.Module, lam: float) -> torch.Tensor:
    """λ · Σ_{p ∈ LoRA A, B} Σ|p| (CLEAR's ℓ1-regularised LoRA); base weights are never penalised."""
    params = lora_parameters(model)
    if not params:
        raise ValueError("l1_penalty: the model has no LoRA parameters (attach_lora first)")
    return lam * sum(p.abs().sum() for p in params)
