"""Interpretation outputs for selected latents (spec §4): top activating contexts with the active token
highlighted, the share of those contexts inside a reasoning-word window, and logit-lens tokens of the decoder row,
W_U (g ⊙ W_dec,i) with g the final RMSNorm weight (the norm's input scaling is ignored)."""

from __future__ import annotations

import re
from typing import Sequence

import torch

from lmscalpel.models.layers import find_submodule

_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>#|])")


def _md(text: str) -> str:
    return _MD_SPECIAL.sub(r"\\\1", text).replace("\n", "⏎")


def final_norm_weight(model) -> torch.Tensor | None:
    """The final RMSNorm weight of a Llama-style model (``model.model.norm``), or None when there is none."""
    norm = find_submodule(model, ("model.norm", "model.language_model.norm", "norm", "transformer.ln_f"))
    weight = getattr(norm, "weight", None)
    return None if weight is None else weight.detach()


@torch.no_grad()
def logit_lens(model, tokenizer, direction: torch.Tensor, k: int = 10) -> dict[str, list[str]]:
    """Tokens whose logits the direction raises (``top``) and lowers (``bottom``) the most."""
    unembed = model.get_output_embeddings().weight.detach().float()
    gain = final_norm_weight(model)
    vec = direction.to(unembed.device).float()
    if gain is not None:
        vec = vec * gain.to(unembed.device).float()
    logits = unembed @ vec
    k = min(k, logits.numel())
    decode = lambda ids: [tokenizer.decode([int(i)]) for i in ids]  # noqa: E731
    return {"top": decode(logits.topk(k).indices), "bottom": decode((-logits).topk(k).indices)}


def top_contexts(token_rows: torch.Tensor, values: torch.Tensor, flat_index: torch.Tensor, window_bits: torch.Tensor,
                 tokenizer, words: Sequence[str], before: int = 10, after: int = 4) -> list[dict]:
    """One record per top activation (value > 0): Markdown context, whether the token lies in a reasoning-word
    window (``in_window``) and which words' windows (``words``)."""
    n_rows, seq = token_rows.shape
    records = []
    for value, flat in zip(values.tolist(), flat_index.tolist()):
        if value <= 0:
            continue
        row, pos = divmod(int(flat), seq)
        ids = token_rows[row].tolist()
        lo, hi = max(0, pos - before), min(seq, pos + after + 1)
        pieces = [tokenizer.decode([t]) for t in ids[lo:hi]]
        text = "".join(_md(p) if lo + j != pos else f"**⟦{_md(p)}⟧**" for j, p in enumerate(pieces))
        bits = int(window_bits[row, pos])
        hit_words = [w for g, w in enumerate(words) if bits >> g & 1]
        records.append({"value": float(value), "row": row, "position": pos, "markdown": text,
                        "in_window": bool(hit_words), "words": hit_words})
    return records


def reasoning_share(records: Sequence[dict]) -> float:
    """Share of top contexts whose token lies inside a reasoning-word window (NaN when the latent never fires)."""
    return sum(r["in_window"] for r in records) / len(records) if records else float("nan")


def interpretation_markdown(title: str, features: Sequence[dict]) -> str:
    """``features``: dicts with latent, score, f_max, entropy, share, contexts, lens."""
    lines = [f"# {title}", ""]
    for feat in features:
        lines += [f"## Latent {feat['latent']}", "",
                  f"ReasonScore {feat['score']:.4g} · entropy {abs(feat['entropy']):.3f} · f_max {feat['f_max']:.4g} · "
                  f"share of top contexts in a reasoning-word window: {feat['share']:.2f}", "",
                  "Logit lens, promoted: " + ", ".join(f"`{_code(t)}`" for t in feat["lens"]["top"]),
                  "",
                  "Logit lens, suppressed: " + ", ".join(f"`{_code(t)}`" for t in feat["lens"]["bottom"]),
                  "", "Top activating contexts (active token in **⟦ ⟧**):", ""]
        for rec in feat["contexts"]:
            words = ", ".join(rec["words"]) or "—"
            lines.append(f"- {rec['value']:.3f} [{words}] {rec['markdown']}")
        lines.append("")
    return "\n".join(lines)


def _code(token: str) -> str:
    return token.replace("`", "'").replace("\n", "⏎") or "∅"
