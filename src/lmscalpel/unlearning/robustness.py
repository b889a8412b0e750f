"""Cross-paper row: does forgetting survive random steering and N:M activation pruning?

The unlearned model (re-materialised from its finished checkpoint, so no weights are stored as outputs) and the
original model are re-scored on the forget and retain tasks (truth ratios and probabilities, no generation) under
(a) no intervention, (b) additive random steering at one block (the steering hook of ``models.intervention``;
α = scale × mean residual norm at that block on the forget prompts, unit random direction, special and image tokens
not steered) and (c) magnitude N:M activation pruning of every linear layer of the language model (the pruning
stage's context manager).
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import numpy as np
import torch

from lmscalpel.models import check_blocks, num_layers
from lmscalpel.models.intervention import special_token_ids, steering
from lmscalpel.pruning import activation_pruning
from lmscalpel.unlearning.evaluate import evaluate_model, summarise, task_samples, tasks_for
from lmscalpel.unlearning.data import load_clear_subset, rows_of
from lmscalpel.unlearning.items import Encoder
from lmscalpel.unlearning.losses import forward

TASKS = ["forget", "forget_facerec", "retain", "retain_facerec"]
REPORTED = ("forget_quality", "forget", "retain", "forget_prob", "forget_facerec_option_accuracy",
            "retain_facerec_option_accuracy")


@torch.no_grad()
def mean_residual_norm(model: torch.nn.Module, encoder: Encoder, items: list, layer: int) -> float:
    batch = encoder.encode(items)
    device = next(model.parameters()).device
    batch = {k: v.to(device) for k, v in batch.items()}
    hidden = forward(model, batch, hidden=True).hidden_states[layer + 1]
    return float(hidden.float().norm(dim=-1)[batch["attention_mask"].bool()].mean())


@contextlib.contextmanager
def _nothing() -> Iterator[None]:
    yield None


def conditions(model: torch.nn.Module, encoder: Encoder, forget_items: list, cfg: dict[str, Any],
               seed: int) -> dict[str, Any]:
    """Name → zero-argument context-manager factory for every intervention."""
    if cfg["steering_layer"] is not None:
        check_blocks(model, {"unlearning.robustness.steering_layer": [cfg["steering_layer"]]})
    layer = cfg["steering_layer"] if cfg["steering_layer"] is not None else num_layers(model) // 2
    alpha = float(cfg["steering_scale"]) * mean_residual_norm(model, encoder, forget_items, layer)
    d = model.config.text_config.hidden_size
    skip = special_token_ids(encoder.tokenizer)
    out: dict[str, Any] = {"none": _nothing}
    for i in range(int(cfg["n_directions"])):
        v = torch.randn(d, generator=torch.Generator().manual_seed(seed * 1000 + i))
        v = v / v.norm()
        out[f"steering{i}"] = (lambda v=v: steering(model, layer, v, alpha, skip_token_ids=skip))
    out["pruning"] = lambda: activation_pruning(model, pattern=cfg["pruning_pattern"])
    out["_meta"] = {"steering_layer": layer, "steering_alpha": alpha}
    return out


def measure(model: torch.nn.Module, processor: Any, *, source: str, revision: str | None, split: str,
            gold: dict[str, list[float]], cfg: dict[str, Any], eval_cfg: dict[str, Any], max_length: int,
            seed: int) -> dict[str, Any]:
    """Flat record: ``{condition}_{metric}`` for every condition; steering averaged over directions."""
    encoder = Encoder(processor, max_length)
    forget_task = next(t for t in tasks_for(split, source) if t.name == "forget")
    rows = rows_of(load_clear_subset(source, forget_task.subset, revision=revision, max_rows=eval_cfg["max_rows"]))
    forget_items = [s.item for s in task_samples(forget_task, rows, caption_prompts=eval_cfg["caption_prompts"],
                                                 face_prompt=eval_cfg["face_prompt"])]
    conds = conditions(model, encoder, forget_items, cfg, seed)
    record: dict[str, Any] = dict(conds.pop("_meta"))
    steered: dict[str, list[float]] = {}
    for name, factory in conds.items():
        with factory():
            results = evaluate_model(model, encoder, split=split, source=source, revision=revision,
                                     caption_prompts=eval_cfg["caption_prompts"], face_prompt=eval_cfg["face_prompt"],
                                     max_rows=eval_cfg["max_rows"], batch_size=eval_cfg["batch_size"],
                                     max_new_tokens=1, task_names=TASKS, generate_answers=False)
        flat = summarise(results, gold)
        key = "steering" if name.startswith("steering") else name
        for metric in REPORTED:
            value = flat.get(metric)
            if key == "steering":
                steered.setdefault(metric, []).append(np.nan if value is None else value)
            else:
                record[f"{key}_{metric}"] = value
    for metric, values in steered.items():
        record[f"steering_{metric}"] = float(np.nanmean(values))
    return record
