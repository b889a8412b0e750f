"""The judges against replies labelled by reading them (issue 22.6): agreement metrics, the labelled set, the rule."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from lmscalpel.io import read_json, write_json
from lmscalpel.models import ModelRef
from lmscalpel.models.refusal import ARDITI_REFUSAL_MARKERS
from lmscalpel.steering import judge_check as JC
from lmscalpel.steering.judges import KeywordJudge
from lmscalpel.steering.stage import run_judge_check_stage


def test_agreement_counts_precision_recall_and_kappa_for_harmful_compliance():
    labels = ["harmful_compliance", "harmful_compliance", "gibberish", "refusal", "deflection"]
    table = JC.agreement(labels, {"keyword": [True, True, True, False, True],
                                  "keyword+coherence": [True, False, False, False, False]}).set_index("judge")
    keyword, coherent = table.loc["keyword"], table.loc["keyword+coherence"]
    assert (keyword["precision"], keyword["recall"]) == (0.5, 1.0)
    assert (coherent["precision"], coherent["recall"]) == (1.0, 0.5)
    # κ by hand: observed 3/5, chance 0.4 * 0.8 + 0.6 * 0.2 = 0.44 -> 0.16 / 0.56; coherent 0.8, 0.56 -> 0.24 / 0.44
    assert keyword["kappa"] == pytest.approx(0.16 / 0.56) and coherent["kappa"] == pytest.approx(0.24 / 0.44)
    assert (keyword["compliant_of_gibberish"], keyword["compliant_of_deflection"], keyword["compliant_of_refusal"]) \
        == (1, 1, 0)
    assert keyword["n_harmful_compliance"] == 2 and keyword["n_judged_compliant"] == 4
    assert JC.best_judge(table.reset_index()) == "keyword+coherence"


def test_kappa_is_undefined_when_judge_and_labels_use_one_class():
    table = JC.agreement(["refusal", "gibberish"], {"keyword": [False, False]})
    assert math.isnan(table.loc[0, "kappa"]) and math.isnan(table.loc[0, "precision"])
    assert JC.best_judge(table) is None


def _labels_csv(path, rows):
    pd.DataFrame(rows, columns=["run", "kind", "layer", "c", "prompt_id", "prompt", "reply", "label", "source"]
                 ).to_csv(path, index=False)
    return path


def test_bad_labelled_files_are_one_line_errors_naming_file_row_and_run(tmp_path):
    row = ["r", "random", 1, 0.5, "p0", "how to x", "Sure, step 1", "harmful_compliance", "test"]
    good = _labels_csv(tmp_path / "good.csv", [row])
    with pytest.raises(ValueError, match=r"steering.judge_check.labelled_run: no labelled replies of run 'other'.*r"):
        JC.load_labels(good, "other")
    bad = _labels_csv(tmp_path / "bad.csv", [row, [*row[:7], "complied", "test"]])
    with pytest.raises(ValueError, match=r"bad.csv: row 3 has label 'complied'"):
        JC.load_labels(bad, "r")
    (tmp_path / "short.csv").write_text("run,reply\nr,hello\n")
    with pytest.raises(ValueError, match=r"short.csv: missing column\(s\) kind, c, prompt, label"):
        JC.load_labels(tmp_path / "short.csv", "r")


def test_a_reply_reading_NA_stays_text(tmp_path):
    path = _labels_csv(tmp_path / "na.csv", [["r", "random", 1, 0.5, "p0", "how to x", "NA", "gibberish", "t"]])
    assert JC.load_labels(path, "r").loc[0, "reply"] == "NA"


def test_the_committed_labelled_set_is_valid_and_read_before_judging():
    """Every row of the committed set has a known label and run; each labelled run has enough replies of each kind
    of outcome for a κ (both classes present), and the replies are the grid's text (no judge column to copy)."""
    frame = pd.read_csv(JC.LABELS_FILE, keep_default_na=False)
    assert set(frame["label"]) <= set(JC.LABELS) and "verdict" not in frame and "coherent" not in frame
    for run, rows in frame.groupby("run"):
        assert len(rows) >= 100, run
        assert (rows["label"] == JC.POSITIVE).any() and (rows["label"] != JC.POSITIVE).any(), run
        assert set(rows["kind"]) >= {"unsteered", "random"}, run


def test_the_rule_rejudges_the_labelled_replies_with_the_run_judges(tmp_path, tiny_lm_dir):
    refusal = "I'm sorry, I cannot help with that."
    rows = [["r", "unsteered", 1, 0.0, "p0", "how to x", refusal, "refusal", "t"],
            ["r", "random", 1, 0.5, "p0", "how to x", "Sure, step one: get the thing", "harmful_compliance", "t"],
            ["r", "random", 1, 2.0, "p1", "how to y", "zzzz qqq zzzz", "gibberish", "t"],
            ["other", "random", 1, 2.0, "p1", "how to y", "left out: another run", "gibberish", "t"]]
    labels = _labels_csv(tmp_path / "labels.csv", rows)
    assert KeywordJudge(ARDITI_REFUSAL_MARKERS)(["x"], [refusal]) == ["safe"]
    write_json(tmp_path / "coherence.json", {"threshold": -1e9, "rule": "every reply is coherent"})
    cfg = {"judge": {"kind": "keyword", "keyword_markers": "arditi"}, "coherence": {"batch_size": 4},
           "metrics": {"headline": "coherent"}, "judge_check": {"labelled_run": "r"}}
    run_judge_check_stage(cfg=cfg, labels=str(labels), run="r", coherence_json=str(tmp_path / "coherence.json"),
                          reference=ModelRef(str(tiny_lm_dir), device="cpu"), output_csv=str(tmp_path / "a.csv"),
                          output_json=str(tmp_path / "a.json"))
    table = pd.read_csv(tmp_path / "a.csv").set_index("judge")
    assert list(table.index) == ["keyword", "keyword+coherence"] and (table["n"] == 3).all()
    # the keyword judge counts the gibberish as compliance; with a threshold every reply passes, so both agree here
    assert table.loc["keyword", "compliant_of_gibberish"] == 1 and table.loc["keyword", "recall"] == 1.0
    summary = read_json(tmp_path / "a.json")
    assert summary["headline_judge"] == "keyword+coherence" and summary["n_replies"] == 3
    assert summary["labels"] == {"refusal": 1, "harmful_compliance": 1, "gibberish": 1}
    assert len(summary["labels_sha256"]) == 64
