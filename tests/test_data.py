"""Local text sources (pydoc topics, a user's .txt / .jsonl files) behind the one shared text loader."""

from __future__ import annotations

import json
import re

import pytest

from lmscalpel.data.text import iter_texts, load_texts, local_documents, split_documents


def test_pydoc_splits_are_disjoint_deterministic_and_cover_every_topic():
    from pydoc_data.topics import topics

    splits = {s: local_documents({"path": "pydoc", "split": s}) for s in ("train", "calibration", "test")}
    assert splits == {s: local_documents({"path": "pydoc", "split": s}) for s in splits}
    texts = [t for part in splits.values() for t in part]
    assert sorted(texts) == sorted(t for t in topics.values() if t.strip())
    assert len(splits["train"]) > 5 * len(splits["test"]) > 0
    custom = local_documents({"path": "pydoc", "split": "test",
                              "fractions": {"train": 0.5, "calibration": 0.0, "test": 0.5}})
    assert len(custom) > len(splits["test"])


def test_split_does_not_depend_on_document_order():
    docs = [(f"d{i}", f"text {i}") for i in range(50)]
    fractions = {"train": 0.6, "calibration": 0.2, "test": 0.2}
    assert split_documents(docs, fractions) == split_documents(docs[::-1], fractions)
    assert [len(v) for v in split_documents(docs, fractions).values()] == [30, 10, 10]


def test_text_and_jsonl_files(tmp_path):
    txt = tmp_path / "notes.txt"
    txt.write_text("\n\n".join(f"paragraph {i}\nline two" for i in range(20)) + "\n", encoding="utf-8")
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({"body": f"row {i}"}) + "\n" for i in range(20)), encoding="utf-8")
    cfg = {"path": "text", "data_files": [str(txt), str(rows)], "text_column": "body"}
    parts = [local_documents({**cfg, "split": s}) for s in ("train", "calibration", "test")]
    assert sorted(t for part in parts for t in part) == sorted(
        [f"paragraph {i}\nline two" for i in range(20)] + [f"row {i}" for i in range(20)])
    with pytest.raises(KeyError, match="config key cache.dataset.text_column"):
        list(iter_texts({**cfg, "text_column": "text"}, default_split="train"))


def test_every_loader_reads_local_text():
    cfg = {"path": "pydoc", "split": "test"}
    assert list(iter_texts(cfg, default_split="train")) == load_texts(cfg, default_split="test") == local_documents(cfg)


@pytest.mark.parametrize("cfg, match", [
    ({"path": "pydoc", "split": "heldout"}, r"config key pruning.perplexity.dataset.split: 'heldout'"),
    ({"path": "pydoc", "fractions": {"train": 0.5, "calibration": 0.1, "test": 0.1}},
     "config key pruning.perplexity.dataset.fractions"),
    ({"path": "text"}, "config key pruning.perplexity.dataset.data_files"),
    ({"path": "text", "data_files": "missing.txt"}, "missing.txt is not a file"),
])
def test_errors_name_the_config_key(cfg, match):
    with pytest.raises((ValueError, FileNotFoundError), match=match):
        load_texts(cfg, key="pruning.perplexity.dataset", default_split="test")


def test_a_config_without_split_reads_the_callers_default_split(toyworld_dir):
    heldout = load_texts({"path": "toyworld", "split": "heldout"}, toyworld_dir, default_split="train")
    assert load_texts({"path": "toyworld"}, toyworld_dir, default_split="heldout") == heldout
    # local text defaults to its train split whatever the caller passes (local_documents)
    assert load_texts({"path": "pydoc"}, default_split="test") == local_documents({"path": "pydoc", "split": "train"})


# --- bad local files: one line naming the config key, the file and what is wrong (issue 23, item 6) -------------
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01"


@pytest.mark.parametrize("name, content, problem", [
    ("empty.txt", b"", "is empty"),
    ("blank.txt", b"\n  \n\t\n", "holds only whitespace"),
    ("image.txt", PNG, "has a NUL byte on line 3"),
    ("nul.txt", b"first document\n\nsecond\x00document\n", "has a NUL byte on line 3"),
    ("latin1.txt", "caf\u00e9 cr\u00e8me\n".encode("latin-1"), r"is not UTF-8 text \(byte 0xe9 on line 1\)"),
    ("utf16.txt", "one document\n".encode("utf-16"), "has a NUL byte on line 1"),
    ("rows.jsonl", b'{"text": "a"}\n{"text": "b"\n', r"line 2 is not JSON \(Expecting ',' delimiter"),
    ("list.jsonl", b'{"text": "a"}\n["b"]\n', "line 2 is a JSON list, not an object"),
])
def test_a_bad_text_file_is_one_line_naming_key_file_and_problem(tmp_path, name, content, problem):
    path = tmp_path / name
    path.write_bytes(content)
    key = "config key cache.dataset.data_files"
    with pytest.raises(ValueError, match=rf"^{key}: {re.escape(str(path))} {problem}") as err:
        local_documents({"path": "text", "data_files": [str(path)]}, key="cache.dataset")
    assert "\n" not in str(err.value)


def test_a_jsonl_record_without_the_text_column_names_it(tmp_path):
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"text": "a"}\n{"body": "b"}\n')
    with pytest.raises(KeyError, match=r"config key reasoning.corpus.text_column: column 'text' not in .*record 2"):
        local_documents({"path": "text", "data_files": str(rows)}, key="reasoning.corpus")


def test_a_local_file_read_through_datasets_is_checked_first(tmp_path):
    bad = tmp_path / "texts.jsonl"
    bad.write_bytes(b'{"text": "a"}\nnot json\n')
    with pytest.raises(ValueError, match=rf"config key pruning.perplexity.dataset.path: {re.escape(str(bad))} line 2 "
                                         "is not JSON"):
        load_texts({"path": str(bad)}, key="pruning.perplexity.dataset", default_split="test")
    with pytest.raises(ValueError, match=r"config key cache.dataset.data_files: .*texts.jsonl line 2 is not JSON"):
        list(iter_texts({"path": "json", "data_files": str(bad)}, default_split="train"))


def test_a_labelled_dataset_file_is_checked_before_datasets_reads_it(tmp_path):
    from lmscalpel.features.data import load_labelled_texts

    bad = tmp_path / "rows.jsonl"
    bad.write_bytes(b'{"text": "a", "label": 1}\n\x00\n')
    spec = {"path": "json", "data_files": str(bad), "split": "train", "text_column": "text", "label_columns": ["label"]}
    with pytest.raises(ValueError, match=r"config key features.datasets.bios.data_files: .*rows.jsonl has a NUL byte"):
        load_labelled_texts(spec, None, seed=0, key="features.datasets.bios")
