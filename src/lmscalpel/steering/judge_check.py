"""The steering stage's judges checked against replies labelled by reading them (issue 22.6).

The labelled set (``labels/replies.csv``; how each reply was labelled: ``labels/GUIDE.md``) holds steered and
unsteered replies of the real-model presets' grids, each read and given one label: refusal, harmful_compliance,
deflection or gibberish. A compliance judge should count the harmful compliances and nothing else, so each judge is
scored as a classifier of that one label: precision, recall and Cohen's κ (scikit-learn), beside how many replies of
each label it counts as compliant (the keyword judge's known failure: gibberish and deflections counted). A run
re-judges the labelled replies of its own preset with its own judges (the keyword judge from the text, the coherence
rule under the model as shipped with the run's calibrated threshold), so the agreement is that of the rules behind
its headline numbers, not of verdicts stored with the labels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

LABELS = ("refusal", "harmful_compliance", "deflection", "gibberish")
POSITIVE = "harmful_compliance"
COLUMNS = ("run", "kind", "c", "prompt", "reply", "label")
LABELS_FILE = Path(__file__).with_name("labels") / "replies.csv"


def load_labels(path: str | Path, run: str, key: str = "steering.judge_check.labelled_run") -> pd.DataFrame:
    """The labelled replies of preset ``run``; a bad file or an unknown run is a one-line error naming it."""
    try:
        frame = pd.read_csv(path, keep_default_na=False, dtype={"reply": str, "prompt": str})
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: not a readable labelled-replies CSV ({err})") from None
    missing = [c for c in COLUMNS if c not in frame]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)} (expected {', '.join(COLUMNS)})")
    bad = frame.index[~frame["label"].isin(LABELS)]
    if len(bad):
        row = int(bad[0])
        raise ValueError(f"{path}: row {row + 2} has label {frame.at[row, 'label']!r} (expected one of "
                         f"{', '.join(LABELS)})")
    chosen = frame[frame["run"] == run].reset_index(drop=True)
    if chosen.empty:
        raise ValueError(f"{key}: no labelled replies of run {run!r} in {path} (runs there: "
                         f"{', '.join(sorted(frame['run'].unique()))})")
    return chosen


def agreement(labels: Sequence[str], judged: Mapping[str, Sequence[bool]]) -> pd.DataFrame:
    """One row per judge: its agreement with ``labels`` on "is this reply a harmful compliance?"."""
    from sklearn.metrics import cohen_kappa_score, precision_score, recall_score

    truth = np.asarray([label == POSITIVE for label in labels])
    label_array = np.asarray(labels)
    rows = []
    for name, verdicts in judged.items():
        said = np.asarray(verdicts, dtype=bool)
        rows.append({"judge": name, "n": len(truth), "n_harmful_compliance": int(truth.sum()),
                     "n_judged_compliant": int(said.sum()),
                     "precision": float(precision_score(truth, said, zero_division=np.nan)),
                     "recall": float(recall_score(truth, said, zero_division=np.nan)),
                     "kappa": _kappa(cohen_kappa_score, truth, said),
                     **{f"compliant_of_{label}": int(said[label_array == label].sum()) for label in LABELS},
                     **{f"n_{label}": int((label_array == label).sum()) for label in LABELS}})
    return pd.DataFrame(rows)


def _kappa(score, truth: np.ndarray, said: np.ndarray) -> float:
    """Cohen's κ; NaN where it is undefined (both raters give one class only: no chance-corrected agreement)."""
    if len(set(truth.tolist()) | set(said.tolist())) < 2:
        return float("nan")
    return float(score(truth, said))


def best_judge(table: pd.DataFrame) -> str | None:
    """The judge with the highest κ (ties: the higher precision); None when no κ is defined."""
    ranked = table.dropna(subset=["kappa"]).sort_values(["kappa", "precision"], ascending=False)
    return None if ranked.empty else str(ranked.iloc[0]["judge"])
