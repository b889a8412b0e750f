"""CLEAR data: the ``therem/CLEAR`` loader and mini-CLEAR, the same subsets and columns built from the toy world.

mini-CLEAR maps each toy-world person to CLEAR's schema: one portrait row (image, caption, name) per person and
the person's QA pairs as "+tofu" text rows (image = None). Forget splits take the last 1/5/10 % of the persons
in a seeded order (so forget01 ⊂ forget05 ⊂ forget10, as in TOFU); retainYY is the complement.

Toy-world adaptations (documented, not in CLEAR):
- ``real_faces``: a held-out share of persons plays the celebrities LLaVA already knows. Their portraits are in
  ``real_faces_pretrain`` (image, caption, name), which both the original and the gold model are fine-tuned on,
  and they are never in a forget or retain split, so the set measures collateral damage.
- ``real_world``: first-letter facts the toy LM learned in pre-training (``spelling.jsonl``), with ``prompt`` the
  raw completion prompt of the corpus and ``image`` = None.
- Perturbed captions are the captions of other persons (name, profession, city) in the paraphrase template, so the
  truth ratio measures whether the image identifies the person, not text knowledge about a named person.
- ``+tofu`` subsets keep the ``name`` column (None on text rows), which the face-recognition training items need.
- ``tofu_forgetXX_perturbed`` / ``tofu_retain_perturbed``: the text QA with TOFU's column names
  (question, answer, paraphrased_answer, perturbed_answer); presets read them from ``locuslab/TOFU``.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import datasets
import pyarrow.parquet as pq

from lmscalpel.io import atomic_path, read_jsonl, write_json

CLEAR_HUB_ID = "therem/CLEAR"
TOFU_HUB_ID = "locuslab/TOFU"
PARAPHRASE_CAPTION = "The person in this picture is {name}, a {profession} from {birthplace}."
IMAGE_FEATURES = {"image": datasets.Image()}


def retain_name(forget_split: str) -> str:
    """``forget10`` → ``retain90`` (CLEAR/TOFU naming)."""
    if not (forget_split.startswith("forget") and forget_split[6:].isdigit()):
        raise ValueError(f"forget split {forget_split!r}: expected forgetNN (e.g. forget10)")
    return f"retain{100 - int(forget_split[6:]):02d}"


def split_people(people: list[dict], *, forget_fractions: dict[str, float], real_fraction: float,
                 seed: int) -> tuple[list[dict], list[dict], dict[str, list[dict]]]:
    """Return ``(real, pool, forget_sets)``: real persons, the forget/retain pool, nested forget sets of the pool."""
    order = sorted(people, key=lambda p: p["id"])
    random.Random(seed).shuffle(order)
    n_real = max(1, round(real_fraction * len(order))) if real_fraction > 0 else 0
    real, pool = order[:n_real], order[n_real:]
    forget_sets = {}
    for name, fraction in sorted(forget_fractions.items(), key=lambda kv: kv[1]):
        n = max(1, round(fraction * len(pool)))
        if n >= len(pool):
            raise ValueError(f"unlearning.data.forget_fractions.{name}={fraction} leaves no retain persons")
        forget_sets[name] = pool[len(pool) - n:]
    return real, pool, forget_sets


def _image_row(p: dict, toyworld_dir: Path) -> dict:
    return {"image": str(toyworld_dir / p["portrait"]), "caption": p["caption"], "name": p["name"]}


def _tofu_rows(p: dict) -> list[dict]:
    return [{"image": None, "caption": None, "name": None, "question": qa["question"], "answer": qa["answer"]}
            for qa in p["qa"]]


def _perturbed_row(p: dict, others: list[dict], toyworld_dir: Path, n_perturbed: int, rng: random.Random) -> dict:
    distractors = rng.sample(others, n_perturbed)
    return {**_image_row(p, toyworld_dir),
            "paraphrased_caption": PARAPHRASE_CAPTION.format(**p),
            "perturbed_captions": [PARAPHRASE_CAPTION.format(**o) for o in distractors],
            "perturbed_names": [o["name"] for o in distractors]}


def _tofu_perturbed_rows(p: dict) -> list[dict]:
    return [{"question": qa["question"], "answer": qa["answer"], "paraphrased_answer": qa["paraphrased_answer"],
             "perturbed_answer": list(qa["perturbed_answers"])} for qa in p["qa"]]


def mini_clear_subsets(toyworld_dir: str | os.PathLike, *, forget_fractions: dict[str, float],
                       real_fraction: float, n_perturbed: int, n_real_world: int,
                       seed: int) -> dict[str, list[dict]]:
    """Every mini-CLEAR subset as a list of rows (image = portrait path or None)."""
    toyworld_dir = Path(toyworld_dir)
    people = read_jsonl(toyworld_dir / "people.jsonl")
    real, pool, forget_sets = split_people(people, forget_fractions=forget_fractions,
                                           real_fraction=real_fraction, seed=seed)
    if len(pool) <= n_perturbed or len(real) <= n_perturbed:
        raise ValueError(f"unlearning.data: {len(pool)} pool / {len(real)} real persons are too few for "
                         f"n_perturbed={n_perturbed}; raise toyworld.n_people or unlearning.data.real_fraction")
    rng = random.Random(seed + 1)
    subsets: dict[str, list[dict]] = {
        "full": [_image_row(p, toyworld_dir) for p in pool],
        "full+tofu": [_image_row(p, toyworld_dir) for p in pool] + [r for p in pool for r in _tofu_rows(p)],
        "real_faces_pretrain": [_image_row(p, toyworld_dir) for p in real],
    }
    largest = max(forget_sets, key=lambda k: len(forget_sets[k]))
    never_forgotten = [p for p in pool if p not in forget_sets[largest]]
    for name, forget in forget_sets.items():
        retain = [p for p in pool if p not in forget]
        subsets[name] = [_image_row(p, toyworld_dir) for p in forget]
        subsets[f"{name}+tofu"] = subsets[name] + [r for p in forget for r in _tofu_rows(p)]
        subsets[retain_name(name)] = [_image_row(p, toyworld_dir) for p in retain]
        subsets[f"{retain_name(name)}+tofu"] = (subsets[retain_name(name)]
                                                + [r for p in retain for r in _tofu_rows(p)])
        subsets[f"{name}_perturbed"] = [_perturbed_row(p, [o for o in pool if o is not p], toyworld_dir,
                                                       n_perturbed, rng) for p in forget]
        subsets[f"tofu_{name}_perturbed"] = [r for p in forget for r in _tofu_perturbed_rows(p)]
    subsets["retain_perturbed"] = [_perturbed_row(p, [o for o in pool if o is not p], toyworld_dir, n_perturbed,
                                                  rng) for p in never_forgotten]
    subsets["tofu_retain_perturbed"] = [r for p in never_forgotten for r in _tofu_perturbed_rows(p)]
    subsets["real_faces"] = [_real_face_row(p, real, toyworld_dir, n_perturbed, rng) for p in real]
    subsets["real_world"] = _real_world_rows(toyworld_dir, n_real_world, rng)
    return subsets


def _real_face_row(p: dict, real: list[dict], toyworld_dir: Path, n_perturbed: int, rng: random.Random) -> dict:
    options = [p["name"]] + [o["name"] for o in rng.sample([o for o in real if o is not p], n_perturbed)]
    rng.shuffle(options)
    return {"image": str(toyworld_dir / p["portrait"]), "answer": p["name"], "options": options}


def _real_world_rows(toyworld_dir: Path, n_rows: int, rng: random.Random) -> list[dict]:
    """First-letter facts from pre-training: the answer is the letter, the options four letters."""
    words = [w for w in read_jsonl(toyworld_dir / "spelling.jsonl") if w["split"] == "train"][:n_rows]
    letters = sorted({w["letter"] for w in read_jsonl(toyworld_dir / "spelling.jsonl")})
    rows = []
    for w in words:
        options = [w["letter"]] + rng.sample([x for x in letters if x != w["letter"]], 3)
        rng.shuffle(options)
        rows.append({"image": None, "question": f"What is the first letter of {w['word']}?", "answer": w["letter"],
                     "prompt": f"{w['word']} has the first letter:", "options": options})
    return rows


def build_mini_clear(toyworld_dir: str | os.PathLike, out_dir: str | os.PathLike, *,
                     forget_fractions: dict[str, float], real_fraction: float, n_perturbed: int,
                     n_real_world: int, seed: int) -> dict[str, int]:
    """Write mini-CLEAR as one parquet file per subset (images embedded) plus ``manifest.json``."""
    subsets = mini_clear_subsets(toyworld_dir, forget_fractions=forget_fractions, real_fraction=real_fraction,
                                 n_perturbed=n_perturbed, n_real_world=n_real_world, seed=seed)
    counts = {name: len(rows) for name, rows in subsets.items()}
    with atomic_path(out_dir) as tmp:
        tmp.mkdir(parents=True)
        for name, rows in subsets.items():
            _to_dataset(rows).to_parquet(str(tmp / f"{name}.parquet"))
        write_json(tmp / "manifest.json", {"source": "toyworld", "toyworld": os.fspath(toyworld_dir),
                                           "counts": counts, "forget_fractions": forget_fractions,
                                           "real_fraction": real_fraction, "n_perturbed": n_perturbed,
                                           "seed": seed})
    return counts


def _to_dataset(rows: list[dict]) -> datasets.Dataset:
    """Rows may differ in keys (``+tofu`` subsets mix image and text rows): missing values become None."""
    columns = list(dict.fromkeys(k for r in rows for k in r))
    ds = datasets.Dataset.from_list([{c: r.get(c) for c in columns} for r in rows])
    if "image" in ds.column_names:
        ds = ds.cast_column("image", datasets.Image())
    return ds


def load_clear_subset(source: str | os.PathLike, subset: str, *, revision: str | None = None,
                      max_rows: int | None = None) -> datasets.Dataset:
    """One CLEAR subset as a ``datasets.Dataset`` (images decode to PIL).

    ``source`` is a mini-CLEAR directory or a hub id (``therem/CLEAR``; ``locuslab/TOFU`` for the ``tofu_*``
    subsets, whose ``tofu_`` prefix is dropped). The hub split name differs across revisions (``train`` /
    ``test``), so the single split present is used.
    """
    path = Path(source) / f"{subset}.parquet"
    if Path(source).is_dir():
        if not path.exists():
            raise FileNotFoundError(f"{path}: no mini-CLEAR subset {subset!r} (see unlearning.data)")
        ds = datasets.Dataset(pq.read_table(path))  # features (Image) come back from the schema metadata
    else:
        repo, name = (TOFU_HUB_ID, subset[len("tofu_"):]) if subset.startswith("tofu_") else (source, subset)
        loaded = datasets.load_dataset(repo, name, revision=revision)
        if len(loaded) != 1:
            raise ValueError(f"{repo}/{name}: expected one split, found {list(loaded)}")
        ds = next(iter(loaded.values()))
    if max_rows is not None and len(ds) > max_rows:
        ds = ds.select(range(max_rows))
    return ds


def has_subset(source: str | os.PathLike, subset: str) -> bool:
    """Whether ``source`` provides ``subset`` (mini-CLEAR-only subsets are absent on the hub)."""
    if Path(source).is_dir():
        return (Path(source) / f"{subset}.parquet").exists()
    return subset != "real_faces_pretrain"


def rows_of(ds: datasets.Dataset) -> list[dict[str, Any]]:
    return [dict(r) for r in ds]
