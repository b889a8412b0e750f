"""The steering grid: (c × direction × prompt) rows at one layer, generated in resumable chunks, judged, as Parquet.

Rows are enumerated in a fixed order (coefficient, then direction, then prompt), cut into chunks of ``chunk_rows``;
each finished chunk is written atomically to the checkpoint directory (``lmscalpel.checkpoint``), so a killed job
resumes at the first missing chunk. The directory is keyed by everything that defines the rows (model files, layer,
μ, prompts, directions, judge, decoding...), so chunks of different configs never mix.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd
import torch
from tqdm import tqdm

from lmscalpel.checkpoint import model_identity, open_checkpoint, tensor_identity
from lmscalpel.steering.generation import generate_steered
from lmscalpel.steering.judges import CoherenceRule, Judge

log = logging.getLogger(__name__)


@dataclass
class DirectionSet:
    """Unit directions of one kind (``random``, ``sae``, ``refusal``...) with their labels.

    ``source`` names where they come from (SAE id, seed); ``latents`` holds SAE latent ids (−1 otherwise).
    """

    kind: str
    vectors: torch.Tensor
    source: str = ""
    latents: list[int] = field(default_factory=list)

    def __post_init__(self):
        if not self.latents:
            self.latents = [-1] * len(self.vectors)


def grid_rows(prompts: Sequence[dict], directions: Sequence[DirectionSet], coefficients: Sequence[float],
              *, include_unsteered: bool = True) -> list[dict]:
    """Enumerate the cells prompt by prompt: its unsteered row (c = 0, kind ``none``), then c × direction.

    Prompt-major, so a generation batch holds few distinct prompts (little left padding) and the coherence scorer
    shares each prompt's cache across its replies within a checkpoint chunk."""
    cells = [(float(c), s, j) for c in coefficients for s, dset in enumerate(directions)
             for j in range(len(dset.vectors))]
    if include_unsteered:
        cells = [(0.0, -1, 0)] + cells
    return [{"c": c, "set": s, "index": j, "prompt": i} for i in range(len(prompts)) for c, s, j in cells]


def fingerprint(spec) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:16]


def judge_key(judge) -> dict | str:
    """A judge's model, revision, template and decoding (``judge.config``); its name for judges without one."""
    return getattr(judge, "config", judge.name)


def run_grid(model, tokenizer, *, layer: int, mu: float, prompts: Sequence[dict],
             directions: Sequence[DirectionSet], coefficients: Sequence[float], judge: Judge,
             ground_truth: Callable[[str], bool] | None, max_new_tokens: int, batch_size: int, chunk_rows: int,
             checkpoint_dir: str | Path, refusal: torch.Tensor | None = None,
             skip_tokens: str = "special", coherence: CoherenceRule | None = None) -> pd.DataFrame:
    """Generate, judge and collect every grid row; returns one DataFrame row per (c, direction, prompt).

    With ``coherence`` every row also gets ``coherence_logprob``, ``coherent`` and ``coherence_rule``."""
    rows = grid_rows(prompts, directions, coefficients)
    spec = {"model": model_identity(model), "layer": layer, "mu": round(mu, 6),
            "prompts": [(p["id"], p["prompt"], p["category"]) for p in prompts],
            "coefficients": list(coefficients), "row_order": "prompt-major", "max_new_tokens": max_new_tokens,
            "judge": judge_key(judge),
            "ground_truth": ground_truth is not None, "skip_tokens": skip_tokens, "chunk_rows": chunk_rows,
            "refusal": tensor_identity(refusal) if refusal is not None else None,
            "directions": [(d.kind, d.source, d.latents, tensor_identity(d.vectors)) for d in directions]}
    if coherence is not None:
        spec["coherence"] = coherence.description
    d_model = directions[0].vectors.shape[1] if directions else int(model.config.hidden_size)
    frames = []
    n_chunks = (len(rows) + chunk_rows - 1) // chunk_rows
    with open_checkpoint(checkpoint_dir, spec, what="steering") as ckpt:
        for k in tqdm(range(n_chunks), desc=f"steering grid layer {layer}", mininterval=10):
            name = f"chunk-{k:05d}.parquet"
            if not ckpt.exists(name):
                chunk = _run_chunk(model, tokenizer, rows[k * chunk_rows:(k + 1) * chunk_rows], layer=layer, mu=mu,
                                   prompts=prompts, directions=directions, d_model=d_model, judge=judge,
                                   ground_truth=ground_truth, max_new_tokens=max_new_tokens, batch_size=batch_size,
                                   refusal=refusal, skip_tokens=skip_tokens, coherence=coherence)
                with ckpt.writing(name) as tmp:
                    chunk.to_parquet(tmp, index=False)
                log.info("chunk %d/%d done", k + 1, n_chunks)
            frames.append(pd.read_parquet(ckpt.path(name)))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _run_chunk(model, tokenizer, rows, *, layer, mu, prompts, directions, d_model, judge, ground_truth,
               max_new_tokens, batch_size, refusal, skip_tokens, coherence) -> pd.DataFrame:
    vectors = torch.stack([directions[r["set"]].vectors[r["index"]] if r["set"] >= 0 else torch.zeros(d_model)
                           for r in rows])
    alphas = [r["c"] * mu for r in rows]
    texts = [prompts[r["prompt"]]["prompt"] for r in rows]
    responses = generate_steered(model, tokenizer, texts, vectors, alphas, layer=layer,
                                 max_new_tokens=max_new_tokens, batch_size=batch_size, skip_tokens=skip_tokens)
    verdicts = judge(texts, responses)
    cos = (vectors @ refusal.float()).tolist() if refusal is not None else [float("nan")] * len(rows)
    out = []
    for r, text, response, verdict, cos_r, alpha in zip(rows, texts, responses, verdicts, cos, alphas):
        dset = directions[r["set"]] if r["set"] >= 0 else DirectionSet("none", torch.zeros(1, d_model))
        prompt = prompts[r["prompt"]]
        out.append({"layer": layer, "c": r["c"], "alpha": alpha, "direction_kind": dset.kind,
                    "direction_source": dset.source, "direction_index": r["index"],
                    "latent": dset.latents[r["index"]], "cos_refusal": cos_r if r["set"] >= 0 else float("nan"),
                    "prompt_id": prompt["id"], "category": prompt["category"], "prompt": text,
                    "response": response, "verdict": verdict, "judge": judge.name,
                    "compliant": bool(ground_truth(response)) if ground_truth else None})
    frame = pd.DataFrame(out)
    if coherence is not None:
        frame["coherence_logprob"], frame["coherent"] = coherence(texts, responses)
        frame["coherence_rule"] = coherence.description
    return frame
