"""A few judged replies of the steering grid and the universal attack per direction kind and verdict, picked at
random with a fixed seed, so that a reader can audit the judge against what the model wrote.

The replies are the ones the stage already judged (``steering/layer*/grid.parquet``, the universal attack's
``table.parquet``); their verdicts are counted as the headline numbers count them: the toy world's ground truth
where ``metrics.json`` says the outcome is ``ground_truth``, else the judge, and coherent where the coherence judge
ran. Every string is model output: the renderers escape it (HTML, and HTML inside README.md).
"""

from __future__ import annotations

import html
from pathlib import Path

import pandas as pd

from lmscalpel.io import read_json

COLUMNS = ["kind", "layer", "c", "verdict", "prompt", "reply"]
KIND_ORDER = ["unsteered", "random", "sae", "refusal", "universal"]  # sae-* kinds sort among themselves
VERDICT_ORDER = ["refusal", "compliant", "compliant, coherent", "compliant, incoherent", "unparsed"]


def _verdicts(judged: pd.Series, coherent: pd.Series | None, unparsed: pd.Series) -> pd.Series:
    """refusal (not counted compliant) / compliant[, coherent | incoherent] / unparsed (the judge gave no verdict)."""
    label = pd.Series("refusal", index=judged.index)
    if coherent is None:
        label[judged] = "compliant"
    else:
        label[judged & coherent] = "compliant, coherent"
        label[judged & ~coherent] = "compliant, incoherent"
    label[unparsed] = "unparsed"
    return label


def grid_replies(grids: list[Path], ground_truth: bool) -> pd.DataFrame:
    """The grid's replies as (kind, layer, c, verdict, prompt, reply); the unsteered reply once per prompt."""
    frame = pd.concat([pd.read_parquet(g) for g in grids], ignore_index=True)
    frame = frame[(frame["direction_kind"] != "none") | (frame["layer"] == frame["layer"].min())]
    judged = frame["compliant"].astype(bool) if ground_truth else frame["verdict"] == "unsafe"
    coherent = frame["coherent"].astype(bool) if "coherent" in frame else None
    unparsed = frame["verdict"] == "unparsed" if not ground_truth else pd.Series(False, index=frame.index)
    return pd.DataFrame({"kind": frame["direction_kind"].replace({"none": "unsteered"}), "layer": frame["layer"],
                         "c": frame["c"], "verdict": _verdicts(judged, coherent, unparsed),
                         "prompt": frame["prompt"], "reply": frame["response"]})


def universal_replies(table: Path, layer) -> pd.DataFrame:
    """The universal vectors' held-out replies (the random baseline's are the grid's kind)."""
    frame = pd.read_parquet(table)
    frame = frame[frame["kind"] == "universal"]
    judged = frame["complied_judge" if "complied_judge" in frame else "complied"].astype(bool)
    coherent = frame["complied_coherent"].astype(bool) if "complied_coherent" in frame else None
    return pd.DataFrame({"kind": "universal", "layer": layer, "c": frame["c"],
                         "verdict": _verdicts(judged, coherent, pd.Series(False, index=frame.index)),
                         "prompt": frame["prompt"], "reply": frame["response"]})


def _order(kind: str) -> tuple[int, str]:
    base = "sae" if kind.startswith("sae-") else kind
    return (KIND_ORDER.index(base) if base in KIND_ORDER else len(KIND_ORDER), kind)


def sample_replies(replies: pd.DataFrame, per_group: int, seed: int) -> pd.DataFrame:
    """``per_group`` replies of each (kind, verdict), drawn with ``seed``, kinds and verdicts in reading order."""
    picked = [group.sample(n=min(per_group, len(group)), random_state=seed)
              for _, group in replies.groupby(["kind", "verdict"], sort=False)]
    if not picked:
        return pd.DataFrame(columns=COLUMNS)
    out = pd.concat(picked)
    out["_kind"] = out["kind"].map(_order)
    out["_verdict"] = out["verdict"].map(lambda v: VERDICT_ORDER.index(v) if v in VERDICT_ORDER else 99)
    return out.sort_values(["_kind", "_verdict", "layer", "c"], kind="stable")[COLUMNS].reset_index(drop=True)


def steering_replies(results: Path, spec: dict) -> pd.DataFrame:
    """The sampled replies a section's ``replies`` spec names (empty when the run has no grid)."""
    grids = sorted(results.glob(spec["grids"]))
    if not grids:
        return pd.DataFrame(columns=COLUMNS)
    metrics = results / spec["metrics"]
    ground_truth = metrics.exists() and read_json(metrics).get("outcome") == "ground_truth"
    parts = [grid_replies(grids, ground_truth)]
    universal = results / spec["universal"]
    if universal.exists():
        summary = universal.with_name("summary.json")
        parts.append(universal_replies(universal, read_json(summary).get("layer") if summary.exists() else None))
    return sample_replies(pd.concat(parts, ignore_index=True), spec["per_group"], spec["seed"])


def shorten(text: str, max_chars: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= max_chars else text[:max_chars].rstrip() + " …"


def reply_html(text: str, max_chars: int) -> str:
    """The reply escaped; a long one shortened, the whole of it in a details element."""
    text = str(text)
    if not text.strip():
        return "<i>(empty reply)</i>"
    if len(" ".join(text.split())) <= max_chars:
        return html.escape(text)
    return (f"<details><summary>{html.escape(shorten(text, max_chars))}</summary>"
            f"<div class='reply'>{html.escape(text)}</div></details>")


def _where(row) -> str:
    layer = "" if pd.isna(row.layer) else f"layer {int(row.layer)}, "
    return f"{layer}c = {float(row.c):g}"


def replies_html(replies: pd.DataFrame, max_chars: int) -> str:
    head = "".join(f"<th>{c}</th>" for c in ("kind", "where", "verdict", "prompt", "reply"))
    rows = "".join(f"<tr><td>{html.escape(r.kind)}</td><td>{html.escape(_where(r))}</td>"
                   f"<td>{html.escape(r.verdict)}</td><td>{html.escape(shorten(r.prompt, max_chars))}</td>"
                   f"<td>{reply_html(r.reply, max_chars)}</td></tr>" for r in replies.itertuples())
    return f"<table class='replies'><tr>{head}</tr>{rows}</table>"


def replies_markdown(replies: pd.DataFrame, max_chars: int) -> list[str]:
    """One HTML block per reply (a single line: Markdown inside it is not parsed, so escaping it is enough)."""
    lines = []
    for r in replies.itertuples():
        title = html.escape(f"{r.kind} ({_where(r)}), {r.verdict}: {shorten(r.reply, max_chars) or '(empty reply)'}")
        body = "<br>".join(html.escape(f"Prompt: {r.prompt}\nReply: {r.reply}").splitlines())
        lines += [f"<details><summary>{title}</summary>{body}</details>", ""]
    return lines
