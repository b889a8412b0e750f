"""File-level entry points of the features rules: read inputs, call the metric functions, write flat JSONs."""

from __future__ import annotations

import dataclasses
import logging
import random
from pathlib import Path
from typing import Any

import torch

from lmscalpel.features import absorption as absorption_mod
from lmscalpel.features.activations import (load_tensors, pool, pooled_latents, position_activations,
                                            save_tensors, text_activations)
from lmscalpel.features.composition import MetaSAEConfig, composition_metrics
from lmscalpel.features.plan import ABSORPTION_PROMPT_KEYS
from lmscalpel.features.data import build_prompts, load_labelled_texts, spelling_words, split_rows
from lmscalpel.features.geometry import distinct_features
from lmscalpel.features.probes import BinaryProbe, train_multiclass_ovr
from lmscalpel.features.scr_tpp import (ProbeConfig, ProbeSet, one_vs_rest_sets, scr_run, scr_sets, tpp_run,
                                        train_probes)
from lmscalpel.features.sparse_probing import sparse_probe_task
from lmscalpel.config import section_dataclass
from lmscalpel.io import read_json, write_json
from lmscalpel.runtime import resolve_device, resolve_dtype

log = logging.getLogger(__name__)


def _model_provenance(ref) -> dict[str, Any]:
    from lmscalpel.models.loader import model_provenance

    return model_provenance(ref)


# --- SAE-independent: model activations and probes ---

def run_spelling_activations(ref, source: str | None, layer: int, features: dict, seed: int, out_tensors: str,
                             out_meta: str) -> None:
    """Probe prompts (in-context examples from the word's own split) and absorption prompts (test words, examples
    from the whole list), read at the spelled word's last token (``position: word``, SAEBench) or at the prompt's
    last token, where the letter is predicted (``position: answer``)."""
    from lmscalpel.models import load_model

    cfg = features["absorption"]
    model, tokenizer = load_model(ref)
    words = spelling_words(cfg["words"], source, tokenizer, cfg["test_fraction"], seed, cfg.get("max_words"))
    rng = random.Random(seed)
    by_split = {s: [w["word"] for w in words if w["split"] == s] for s in ("train", "test")}
    every = [w["word"] for w in words]
    sets = {
        "train": build_prompts(by_split["train"], by_split["train"], cfg["n_icl_examples"], cfg["template"],
                               cfg["prompts_per_word"], rng),
        "test": build_prompts(by_split["test"], by_split["test"], cfg["n_icl_examples"], cfg["template"],
                              cfg["prompts_per_word"], rng),
        "absorb": build_prompts(by_split["test"], every, cfg["n_icl_examples"], cfg["template"],
                                cfg["prompts_per_word"], rng),
    }
    tensors = {}
    for name, prompts in sets.items():
        ends = [p.word_end if cfg["position"] == "word" else len(p.text) for p in prompts]
        tensors[f"{name}_x"] = position_activations(
            model, tokenizer, [p.text for p in prompts], ends, layer,
            features["batch_size"], features["context_length"], features["prepend_bos"])
        tensors[f"{name}_y"] = absorption_mod.letter_ids([p.letter for p in prompts])
    save_tensors(out_tensors, tensors, resolve_dtype(features["activation_dtype"]))
    write_json(out_meta, {"dataset": "spelling", "words_source": cfg["words"], "position": cfg["position"],
                          "layer": layer, "seed": seed,
                          "n_words": len(words), **{f"n_{k}_prompts": len(v) for k, v in sets.items()},
                          "example_prompt": sets["absorb"][0].text, **_model_provenance(ref)})


def run_dataset_activations(ref, dataset: str, source: str | None, layer: int, features: dict, seed: int,
                            out_tensors: str, out_meta: str) -> None:
    from lmscalpel.models import load_model

    spec = features["datasets"][dataset]
    rows = load_labelled_texts(spec, source, seed, key=f"features.datasets.{dataset}")
    split = split_rows(len(rows), features["test_fraction"], seed)
    model, tokenizer = load_model(ref)
    acts, offsets = text_activations(model, tokenizer, [r["text"] for r in rows], layer, features["batch_size"],
                                     features["context_length"], features["prepend_bos"])
    save_tensors(out_tensors, {"acts": acts, "offsets": offsets}, resolve_dtype(features["activation_dtype"]))
    write_json(out_meta, {"dataset": dataset, "source": spec["path"], "layer": layer, "seed": seed,
                          "n_texts": len(rows), "n_tokens": int(acts.shape[0]),
                          "rows": [{"labels": r["labels"], "split": s} for r, s in zip(rows, split)],
                          **_model_provenance(ref)})


def run_letter_probe(spelling_tensors: str, spelling_meta: str, features: dict, seed: int, out_tensors: str,
                     out_meta: str) -> None:
    """The ground-truth 26-way probe (spec §5 step 2) and its per-letter test F1."""
    cfg = features["absorption"]
    t = load_tensors(spelling_tensors)
    w, b = train_multiclass_ovr(t["train_x"], t["train_y"], 26, epochs=cfg["probe_epochs"], lr=cfg["probe_lr"],
                                final_lr=cfg["probe_final_lr"], weight_decay=cfg["probe_weight_decay"],
                                batch_size=cfg["probe_batch_size"], l1=0.0, seed=seed)
    f1 = absorption_mod.per_letter_f1(t["test_x"] @ w.T + b, t["test_y"])
    save_tensors(out_tensors, {"weight": w, "bias": b})
    meta = read_json(spelling_meta)
    write_json(out_meta, {"layer": meta["layer"], "model": meta["model"], "seed": seed,
                          "n_train": len(t["train_y"]), "n_test": len(t["test_y"]),
                          "mean_test_f1": sum(f1.values()) / len(f1),
                          "n_letters_above_gate": sum(v > cfg["f1_gate"] for v in f1.values()),
                          **{f"test_f1_{ch}": v for ch, v in f1.items()}})


def _task_sets(dataset: str, labels: list[dict], split: list[str], features: dict,
               seed: int) -> tuple[dict[str, dict[str, ProbeSet]], dict[str, str]]:
    """Every probe task of one dataset, grouped: ``scr|a|b`` (3 keyed sets), ``tpp``, ``sp|column``.

    A task whose classes or quadrants have too few rows in a split is skipped with a warning (small toy
    worlds); the second return value maps skipped groups to the reason.
    """
    builders = {}
    scr = features["scr"]["pairs"].get(dataset)
    for a, b in (scr or {}).get("pairs", []):
        builders[f"scr|{a}|{b}"] = lambda a=a, b=b: scr_sets(
            labels, split, scr["column1"], scr["column2"], (a, b), tuple(scr["values2"]),
            features["scr"]["train_size"], features["scr"]["test_size"], seed)
    tpp = features["tpp"]["classes"].get(dataset)
    if tpp:
        builders["tpp"] = lambda: one_vs_rest_sets(labels, split, tpp["column"], tpp["classes"],
                                                   features["tpp"]["train_size"], features["tpp"]["test_size"], seed,
                                                   tpp.get("balance_column"))
    sp = features["sparse_probing"]
    for task in sp["tasks"]:
        if task["dataset"] == dataset:
            builders[f"sp|{task['column']}"] = lambda task=task: _sparse_probing_sets(labels, split, task, sp, seed)
    groups, skipped = {}, {}
    for name, build in builders.items():
        try:
            groups[name] = build()
        except ValueError as err:
            log.warning("%s: skipping %s: %s", dataset, name, err)
            skipped[name] = str(err)
    return groups, skipped


def _sparse_probing_sets(labels, split, task, sp, seed) -> dict[str, ProbeSet]:
    """One-vs-rest sets of a sparse-probing task; a binary task is probed once."""
    classes = task.get("classes") or sorted({lab[task["column"]] for lab in labels})
    sets = one_vs_rest_sets(labels, split, task["column"], classes, sp["train_size"], sp["test_size"], seed,
                            task.get("balance_column"))
    return dict(list(sets.items())[:1]) if len(classes) == 2 else sets


def run_dataset_probes(dataset: str, act_tensors: str, act_meta: str, features: dict, seed: int,
                       out_tensors: str, out_meta: str) -> None:
    """Index sets of every SCR/TPP/sparse-probing task and the SCR/TPP probes on mean-pooled activations."""
    t, meta = load_tensors(act_tensors), read_json(act_meta)
    pooled_x = pool(t["acts"], t["offsets"])
    labels, split = [r["labels"] for r in meta["rows"]], [r["split"] for r in meta["rows"]]
    pcfg = section_dataclass(ProbeConfig, features["probe"])
    tensors: dict[str, torch.Tensor] = {}
    info: dict[str, Any] = {"dataset": dataset, "layer": meta["layer"], "model": meta["model"], "seed": seed}
    groups, skipped = _task_sets(dataset, labels, split, features, seed)
    info.update({f"skipped|{group}": reason for group, reason in skipped.items()})
    for group, sets in groups.items():
        for key, s in sets.items():
            for field in ("train_idx", "train_y", "test_idx", "test_y"):
                tensors[f"{group}|{key}|{field}"] = getattr(s, field)
            info[f"{group}|{key}|n_train"] = len(s.train_y)
            info[f"{group}|{key}|n_test"] = len(s.test_y)
        if group.startswith("sp|"):
            continue
        for key, probe in train_probes(pooled_x, sets, pcfg, seed).items():
            tensors[f"{group}|{key}|weight"] = probe.weight
            tensors[f"{group}|{key}|bias"] = torch.tensor([probe.bias])
            info[f"{group}|{key}|test_accuracy"] = probe.test_accuracy
    save_tensors(out_tensors, tensors)
    write_json(out_meta, info)


def _load_groups(path: str) -> tuple[dict[str, dict[str, ProbeSet]], dict[str, dict[str, BinaryProbe]]]:
    t = load_tensors(path)
    sets: dict[str, dict[str, ProbeSet]] = {}
    probes: dict[str, dict[str, BinaryProbe]] = {}
    for name in t:
        group, key, field = name.rsplit("|", 2)
        if field == "train_idx":
            sets.setdefault(group, {})[key] = ProbeSet(*(t[f"{group}|{key}|{f}"]
                                                         for f in ("train_idx", "train_y", "test_idx", "test_y")))
        elif field == "weight":
            probes.setdefault(group, {})[key] = BinaryProbe(t[name], float(t[f"{group}|{key}|bias"]), float("nan"))
    return sets, probes


# --- per SAE ---

class DeviceSAE:
    """An SAE on ``device`` behind CPU-tensor ``encode``/``decode``/``W_enc``/``W_dec`` (metrics stay on CPU)."""

    def __init__(self, sae, device: torch.device):
        self.sae, self.device = sae.to(device), device
        self.W_dec = sae.W_dec.detach().float().cpu()
        self.W_enc = sae.W_enc.detach().float().cpu()

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.sae.encode(x.to(self.device)).float().cpu()

    @torch.no_grad()
    def decode(self, f: torch.Tensor) -> torch.Tensor:
        return self.sae.decode(f.to(self.device)).float().cpu()


def load_sae_for_metrics(sae_dir: str | Path, device: str = "auto") -> DeviceSAE:
    """The exported SAE (raw-activation space) in eval mode, gradients off, on ``model.device``."""
    from lmscalpel.sae import load_sae

    sae = load_sae(sae_dir)
    sae.eval()
    sae.requires_grad_(False)
    return DeviceSAE(sae, resolve_device(device))


def _sae_provenance(sae_dir, features_layer: int | None, seed: int) -> dict[str, Any]:
    cfg = read_json(Path(sae_dir) / "cfg.json")
    meta = cfg.get("metadata", {})
    return {"sae_path": str(sae_dir), "sae_width": cfg.get("d_sae"), "sae_architecture": cfg.get("architecture"),
            "model": meta.get("model_name"), "hook_name": meta.get("hook_name"), "layer": features_layer,
            "seed": seed}


def run_absorption(sae_dir: str, spelling_tensors: str, probe_tensors: str, probe_meta: str, features: dict,
                   seed: int, layer: int, output: str, device: str = "auto") -> None:
    sae = load_sae_for_metrics(sae_dir, device)
    probe = load_tensors(probe_tensors)
    f1 = {k.removeprefix("test_f1_"): v for k, v in read_json(probe_meta).items() if k.startswith("test_f1_")}
    cfg = section_dataclass(absorption_mod.AbsorptionConfig, features["absorption"],
                            read_elsewhere=ABSORPTION_PROMPT_KEYS)
    metrics = absorption_mod.absorption_metrics(sae, load_tensors(spelling_tensors), probe["weight"],
                                                probe["bias"], f1, cfg, seed)
    write_json(output, {**metrics, **_sae_provenance(sae_dir, layer, seed), "dataset": "spelling"})


def run_composition(sae_dir: str, features: dict, seed: int, output: str, device: str = "auto") -> None:
    sae = load_sae_for_metrics(sae_dir, device)
    cfg = section_dataclass(MetaSAEConfig, features["composition"])
    metrics = composition_metrics(sae.W_dec, cfg, seed, sae.device)
    write_json(output, {**metrics, **_sae_provenance(sae_dir, None, seed), "dataset": "decoder rows",
                        **{f"meta_sae_{k}": v for k, v in dataclasses.asdict(cfg).items()}})


def run_distinct(sae_dir: str, reference_dir: str | None, features: dict, seed: int, output: str,
                 max_cos_output: str) -> None:
    sae = load_sae_for_metrics(sae_dir, "cpu")
    reference = load_sae_for_metrics(reference_dir, "cpu").W_dec if reference_dir else None
    metrics, dec = distinct_features(sae.W_dec, sae.W_enc, features["distinct"]["thresholds"],
                                     reference)
    save_tensors(max_cos_output, {"max_cos_decoder": dec})
    write_json(output, {**metrics, **_sae_provenance(sae_dir, None, seed), "dataset": "decoder rows",
                        "reference_sae_path": str(reference_dir) if reference_dir else None})


def run_probe_metric(metric: str, sae_dir: str, datasets: dict[str, tuple[str, str]], features: dict, seed: int,
                     layer: int, output: str, device: str = "auto") -> None:
    """SCR, TPP or sparse probing of one SAE; ``datasets`` maps name → (activation tensors, probe tensors)."""
    sae = load_sae_for_metrics(sae_dir, device)
    w_dec = sae.W_dec
    out: dict[str, Any] = {}
    per_n: dict[str, list[float]] = {}
    l0, n_runs = [], 0
    for name, (act_path, probe_path) in sorted(datasets.items()):
        t = load_tensors(act_path)
        pooled_x = pool(t["acts"], t["offsets"])
        pooled_f, l0_tokens = pooled_latents(sae, t["acts"], t["offsets"])
        l0.append(l0_tokens)
        sets, probes = _load_groups(probe_path)
        for group in sorted(sets):
            kind = group.split("|")[0]
            if metric == "scr" and kind == "scr":
                values = scr_run(sae, pooled_x, pooled_f, sets[group], probes[group], w_dec,
                                 _n_values(features["scr"]["n_values"], w_dec))
                prefix = f"{name}_{group.replace('|', '_')}"
            elif metric == "tpp" and kind == "tpp":
                values = tpp_run(sae, pooled_x, pooled_f, sets[group], probes[group], w_dec,
                                 _n_values(features["tpp"]["n_values"], w_dec))
                prefix = f"{name}_tpp"
            elif metric == "sparse_probing" and kind == "sp":
                k_values = features["sparse_probing"]["k_values"]
                max_iter = features["sparse_probing"]["max_iter"]
                sae_acc = sparse_probe_task(pooled_f, sets[group], k_values, max_iter)
                llm_acc = sparse_probe_task(pooled_x, sets[group], k_values, max_iter)
                values = {**{f"sae_{k}_test_accuracy": v for k, v in sae_acc.items()},
                          **{f"llm_{k}_test_accuracy": v for k, v in llm_acc.items()}}
                prefix = f"{name}_{group.replace('|', '_')}"
            else:
                continue
            n_runs += 1
            for key, value in values.items():
                out[f"{prefix}_{key}"] = value
                headline = _headline(metric, key)
                if headline:
                    per_n.setdefault(headline, []).append(value)
    if not n_runs:
        log.warning("%s: no task ran on %s (see features.scr.pairs / features.tpp.classes / "
                    "features.sparse_probing.tasks and the skipped tasks in the probes JSON)", metric, sorted(datasets))
    headlines = {k: sum(v) / len(v) for k, v in per_n.items()}
    write_json(output, {**headlines, **out, "n_runs": n_runs, "l0_on_probe_texts": sum(l0) / len(l0),
                        **_sae_provenance(sae_dir, layer, seed), "dataset": ",".join(sorted(datasets))})


def _n_values(n_values: list[int], w_dec: torch.Tensor) -> list[int]:
    return sorted({min(n, w_dec.shape[0]) for n in n_values})


def _headline(metric: str, key: str) -> str | None:
    """Keys averaged over runs/datasets into the headline scores (SAEBench: mean over the runs)."""
    if metric == "scr" and key.startswith("metric_n"):
        return f"scr_{key}"
    if metric == "tpp" and key.startswith(("total_n", "intended_n", "unintended_n")):
        return f"tpp_{key}"
    if metric == "sparse_probing" and key.endswith("_test_accuracy"):
        return key
    return None
