"""Entry points of the unlearning stage's rules: each reads config sections and writes declared outputs."""

from __future__ import annotations

import os
from typing import Any

import transformers

from lmscalpel.io import atomic_path, read_json, write_json
from lmscalpel.models import ModelRef
from lmscalpel.models.loader import model_provenance
from lmscalpel.unlearning.data import build_mini_clear
from lmscalpel.unlearning.evaluate import evaluate_model, gold_ratios, summarise
from lmscalpel.unlearning.items import Encoder
from lmscalpel.unlearning.robustness import measure
from lmscalpel.unlearning.train import finetune_vlm, unlearn
from lmscalpel.unlearning.vlm import build_tiny_llava, load_vlm, save_vlm


def _prompts(cfg: dict[str, Any]) -> dict[str, Any]:
    return {"caption_prompts": list(cfg["eval"]["caption_prompts"]), "face_prompt": cfg["eval"]["face_prompt"]}


def _eval_kwargs(cfg: dict[str, Any]) -> dict[str, Any]:
    e = cfg["eval"]
    return {"max_rows": int(e["max_rows"]), "batch_size": int(e["batch_size"]),
            "max_new_tokens": int(e["max_new_tokens"]), "max_generate_rows": int(e["max_generate_rows"]),
            **_prompts(cfg)}


def _train_cfg(cfg: dict[str, Any], section: str) -> dict[str, Any]:
    """A training section plus the keys shared by fine-tuning and unlearning."""
    return {**cfg[section], "max_length": int(cfg["max_length"]), "face_items": bool(cfg["data"]["face_items"])}


def _provenance(ref: ModelRef, source: str, cfg: dict[str, Any], seed: int) -> dict[str, Any]:
    return {**model_provenance(ref), "dataset": source if not os.path.isdir(source) else "mini-clear",
            "dataset_path": source, "dataset_revision": cfg["data"]["revision"], "seed": seed}


def _quiet() -> None:
    """transformers' per-load progress bars and warnings would flood the rule logs."""
    transformers.logging.set_verbosity_error()


def run_build_data(toyworld_dir: str, out_dir: str, cfg: dict[str, Any], seed: int) -> None:
    d = cfg["data"]
    build_mini_clear(toyworld_dir, out_dir, forget_fractions=dict(d["forget_fractions"]),
                     real_fraction=float(d["real_fraction"]), n_perturbed=int(d["n_perturbed"]),
                     n_real_world=int(d["n_real_world"]), seed=seed)


def run_build_vlm(lm_ref: ModelRef, out_dir: str, cfg: dict[str, Any], image_size: int, seed: int) -> None:
    v = cfg["vlm"]
    model, processor = build_tiny_llava(lm_ref, image_size=image_size, patch_size=int(v["patch_size"]),
                                        vision_hidden_size=int(v["vision_hidden_size"]),
                                        vision_layers=int(v["vision_layers"]), vision_heads=int(v["vision_heads"]),
                                        vision_intermediate_size=int(v["vision_intermediate_size"]), seed=seed)
    with atomic_path(out_dir) as tmp:
        save_vlm(model, processor, tmp)


def run_finetune(base: ModelRef, source: str, split: str | None, out_dir: str, cfg: dict[str, Any],
                 checkpoint_dir: str, seed: int) -> None:
    """The original model (``split=None``) or the gold model of ``split``; the summary lands next to the weights."""
    _quiet()
    finetune_vlm(base=base, source=source, revision=cfg["data"]["revision"], split=split, out_dir=out_dir,
                 cfg=_train_cfg(cfg, "finetune"), prompts=_prompts(cfg), checkpoint_dir=checkpoint_dir, seed=seed,
                 provenance={**_provenance(base, source, cfg, seed), "split": split or "full"})


def run_evaluate_reference(model_ref: ModelRef, source: str, split: str, which: str, cfg: dict[str, Any],
                           metrics_out: str, seed: int, gold_ratios_in: str | None = None,
                           gold_ratios_out: str | None = None) -> None:
    """Metrics of the original or gold model; the gold run also writes the truth ratios later runs compare to."""
    _quiet()
    model, processor = load_vlm(model_ref)
    results = evaluate_model(model, Encoder(processor, int(cfg["max_length"])), split=split, source=source,
                             revision=cfg["data"]["revision"], **_eval_kwargs(cfg))
    gold = read_json(gold_ratios_in) if gold_ratios_in else gold_ratios(results)
    if gold_ratios_out:
        write_json(gold_ratios_out, gold)
    flat = summarise(results, gold)
    write_json(metrics_out, {**flat, "method": which, "split": split, "modality": "none", "l1": False,
                             **_provenance(model_ref, source, cfg, seed),
                             "examples": {k: v.get("examples", []) for k, v in results.items()}})


def l1_lambda_of(tag: str) -> float | None:
    """The ``l1`` wildcard: ``off`` (no LoRA) or the λ of LoRA + L1 (``unlearning.unlearn.l1.lambdas``)."""
    return None if tag == "off" else float(tag)


def run_unlearn(original: ModelRef, source: str, split: str, modality: str, method: str, l1_lambda: float | None,
                cfg: dict[str, Any], gold_ratios_in: str, metrics_out: str, checkpoint_dir: str,
                seed: int) -> None:
    _quiet()
    model, processor, info = unlearn(original=original, source=source, revision=cfg["data"]["revision"],
                                     split=split, modality=modality, method=method, l1_lambda=l1_lambda,
                                     cfg=_train_cfg(cfg, "unlearn"), prompts=_prompts(cfg),
                                     checkpoint_dir=checkpoint_dir, seed=seed)
    results = evaluate_model(model, Encoder(processor, int(cfg["max_length"])), split=split, source=source,
                             revision=cfg["data"]["revision"], **_eval_kwargs(cfg))
    flat = summarise(results, read_json(gold_ratios_in))
    params = cfg["unlearn"]["methods"].get(method, {})
    record = {**flat, **{f"train_{k}": v for k, v in info.items()}, "method": method, "split": split,
              "modality": modality, "l1": l1_lambda is not None, "l1_lambda": l1_lambda,
              "nll_reduction": cfg["unlearn"]["nll_reduction"],
              "lr": cfg["unlearn"]["lr"], "epochs": cfg["unlearn"]["epochs"],
              **{f"param_{k}": (v if not isinstance(v, list) else ",".join(map(str, v))) for k, v in params.items()},
              **_provenance(original, source, cfg, seed), "base_model_for_unlearning": original.name_or_path}
    record["examples"] = {k: v.get("examples", []) for k, v in results.items()}
    write_json(metrics_out, record)


def run_robustness(original: ModelRef, source: str, split: str, modality: str, method: str, l1_lambda: float | None,
                   cfg: dict[str, Any], gold_ratios_in: str, metrics_out: str, checkpoint_dir: str | None,
                   seed: int) -> None:
    """Re-measure an unlearning run (``method='original'``: the original model) under steering and pruning.

    The unlearned weights come back from the run's finished checkpoint (its training is not repeated)."""
    _quiet()
    if method == "original":
        model, processor = load_vlm(original)
    else:
        model, processor, _ = unlearn(original=original, source=source, revision=cfg["data"]["revision"],
                                      split=split, modality=modality, method=method, l1_lambda=l1_lambda,
                                      cfg=_train_cfg(cfg, "unlearn"), prompts=_prompts(cfg),
                                      checkpoint_dir=checkpoint_dir, seed=seed)
    record = measure(model, processor, source=source, revision=cfg["data"]["revision"], split=split,
                     gold=read_json(gold_ratios_in), cfg=cfg["robustness"], eval_cfg=cfg["eval"],
                     max_length=int(cfg["max_length"]), seed=seed)
    write_json(metrics_out, {**record, "method": method, "split": split, "modality": modality,
                             "l1": l1_lambda is not None, "l1_lambda": l1_lambda,
                             "pruning_pattern": cfg["robustness"]["pruning_pattern"],
                             "steering_scale": cfg["robustness"]["steering_scale"],
                             **_provenance(original, source, cfg, seed)})


def vlm_ref(model_cfg: dict[str, Any], vlm_cfg: dict[str, Any], local: str | None) -> ModelRef:
    """The VLM to fine-tune: a local directory (the tiny LLaVA) or ``unlearning.vlm.id``, with the model dtype."""
    if local is None and not vlm_cfg.get("id"):
        raise ValueError("config key unlearning.vlm.id: required when model.source is hub")
    return ModelRef(name_or_path=local or vlm_cfg["id"], revision=None if local else vlm_cfg.get("revision"),
                    dtype=model_cfg.get("dtype", "float32"), device=model_cfg.get("device", "auto"),
                    trust_remote_code=bool(model_cfg.get("trust_remote_code", False)))


def local_ref(model_cfg: dict[str, Any], path: str) -> ModelRef:
    """A model this stage saved (original, gold)."""
    return ModelRef(name_or_path=path, dtype=model_cfg.get("dtype", "float32"), device=model_cfg.get("device", "auto"))
