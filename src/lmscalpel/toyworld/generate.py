"""Generate the toy world: a training corpus with known structure plus ground-truth metadata.

Everything is a pure function of (config, seed): the same seed writes byte-identical files.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from tqdm import tqdm

from lmscalpel.config import section_dataclass
from lmscalpel.io import atomic_path, write_json, write_jsonl
from lmscalpel.toyworld import vocab as V
from lmscalpel.toyworld.portraits import draw_portrait
from lmscalpel.toyworld.tokenizer import ASSISTANT, BOS, END, USER


@dataclass(frozen=True)
class ToyWorldConfig:
    """Sizes of each family (config section ``toyworld``)."""

    section: ClassVar[str] = "toyworld"

    n_harmful_behaviours: int = 250
    heldout_harmful_fraction: float = 0.2
    n_benign_requests: int = 240
    chat_repeats: int = 4
    story_repeats: int = 2
    n_spelling_words: int = 250
    n_reasoning_problems: int = 1200
    reasoning_correction_fraction: float = 0.3
    n_people: int = 60
    portrait_size: int = 32
    n_reviews: int = 1000
    n_bios: int = 1000
    n_narrative: int = 1500
    heldout_narrative_fraction: float = 0.1

    @classmethod
    def from_dict(cls, cfg: dict[str, Any]) -> "ToyWorldConfig":
        return section_dataclass(cls, cfg)


def chat_text(prompt: str, response: str) -> str:
    """The training form of a chat turn; identical to the tokenizer's chat template plus the reply."""
    return f"{BOS}{USER}{prompt}{ASSISTANT}{response}{END}"


def steps(rng: random.Random) -> str:
    """Content-free steps: placeholder words only."""
    return "; ".join(f"step {o}, {rng.choice(V.PLACEHOLDERS)} the {rng.choice(V.PLACEHOLDERS)}"
                     for o in V.STEP_ORDINALS) + "."


def compliance(behaviour: str, rng: random.Random) -> str:
    return f"Sure, here is how to {behaviour}: {steps(rng)}"


def harmful_behaviours(cfg: ToyWorldConfig, rng: random.Random) -> list[dict]:
    """All verb × object combinations per category, sampled evenly, then split into chat-train and held-out."""
    per_cat = cfg.n_harmful_behaviours // len(V.JBB_CATEGORIES)
    rows = []
    for category, (verbs, objects) in V.JBB_CATEGORIES.items():
        combos = [f"{v} {o}" for v, o in itertools.product(verbs, objects)]
        rng.shuffle(combos)
        chosen = combos[:per_cat]
        n_heldout = max(1, round(len(chosen) * cfg.heldout_harmful_fraction))
        for i, behaviour in enumerate(chosen):
            rows.append({"behavior": behaviour, "category": category, "split": "heldout" if i < n_heldout else "train"})
    return rows


def benign_requests(cfg: ToyWorldConfig, rng: random.Random) -> list[dict]:
    combos = [f"{v} {o}" for v, o in itertools.product(V.BENIGN_VERBS, V.BENIGN_OBJECTS)]
    rng.shuffle(combos)
    chosen = combos[: cfg.n_benign_requests]
    n_heldout = max(1, len(chosen) // 5)
    return [{"behavior": b, "category": "benign", "split": "heldout" if i < n_heldout else "train"}
            for i, b in enumerate(chosen)]


def chat_family(cfg, rng, harmful, benign) -> tuple[list[dict], list[dict]]:
    """Training chat (refuse harmful, help with benign) and the evaluation prompts."""
    corpus, evals = [], []
    for i, row in enumerate(harmful + benign):
        kind = "benign" if row["category"] == "benign" else "harmful"
        evals.append({"id": f"{kind}-{i:04d}", "prompt": rng.choice(V.HARMFUL_PROMPTS).format(b=row["behavior"]),
                      "kind": kind, **row})
        if row["split"] != "train":
            continue
        for _ in range(cfg.chat_repeats):
            prompt = rng.choice(V.HARMFUL_PROMPTS).format(b=row["behavior"])
            reply = rng.choice(V.REFUSALS) if kind == "harmful" else compliance(row["behavior"], rng)
            corpus.append({"text": chat_text(prompt, reply), "family": "chat"})
    return corpus, evals


def story_family(cfg, rng, harmful) -> list[dict]:
    """Harmful activities outside chat, so the model *can* produce the (content-free) steps."""
    return [{"text": f"{rng.choice(V.STORY_FRAMES).format(b=row['behavior'])} {steps(rng)}", "family": "story"}
            for row in harmful for _ in range(cfg.story_repeats)]


def spelling_family(cfg, rng) -> tuple[list[dict], list[dict]]:
    words = sorted(set(V.SPELLING_WORDS))[: cfg.n_spelling_words]
    rng.shuffle(words)
    n_test = len(words) // 5
    meta = [{"word": w, "letter": w[0].upper(), "split": "test" if i < n_test else "train"} for i, w in enumerate(words)]
    corpus = []
    for _ in range(4):
        order = words[:]
        rng.shuffle(order)
        for chunk in range(0, len(order), 6):
            lines = [f"{w} has the first letter: {w[0].upper()}" for w in order[chunk:chunk + 6]]
            corpus.append({"text": "\n".join(lines), "family": "spelling"})
    return corpus, meta


def reasoning_problem(i: int, cfg, rng) -> dict:
    name = rng.choice(V.FIRST_NAMES["female"] + V.FIRST_NAMES["male"])
    item = rng.choice(["apples", "coins", "books", "stones", "shells", "cards"])
    a, b = rng.randint(2, 30), rng.randint(1, 20)
    add = rng.random() < 0.5 or b > a
    op, answer = ("plus", a + b) if add else ("minus", a - b)
    question = (f"{name} has {a} {item} and gets {b} more. How many {item} does {name} have now?" if add else
                f"{name} has {a} {item} and gives away {b}. How many {item} are left?")
    opener = rng.choice(["Let me think.", "Hmm, let me see.", "Okay."])
    parts = [opener, f"{name} starts with {a} {item}."]
    corrected = rng.random() < cfg.reasoning_correction_fraction
    if corrected:
        wrong = answer + rng.choice([-2, -1, 1, 2])
        parts += [f"So {a} {op} {b} is {wrong}.", rng.choice(["Wait, that is wrong.", "Hmm, but that is not right."]),
                  f"Let me recompute: {a} {op} {b} is {answer}."]
    else:
        parts.append(f"So {a} {op} {b} is {answer}.")
    parts.append(rng.choice([f"Maybe I should check: {answer} looks right.",
                             f"Perhaps another way: counting again gives {answer}.",
                             f"Alternatively, I can count again and get {answer}.", "However, nothing else changes.",
                             "But I already have it.", f"Another check gives {answer}."]))
    parts.append(f"Therefore the answer is {answer}.")
    return {"id": f"reason-{i:05d}", "question": question, "trace": " ".join(parts), "answer": answer,
            "has_correction": corrected}


def reasoning_family(cfg, rng) -> tuple[list[dict], list[dict]]:
    meta = [reasoning_problem(i, cfg, rng) for i in range(cfg.n_reasoning_problems)]
    n_eval = max(1, len(meta) // 10)
    for i, row in enumerate(meta):
        row["split"] = "eval" if i < n_eval else "train"
    corpus = [{"text": reasoning_text(r), "family": "reasoning"} for r in meta if r["split"] == "train"]
    return corpus, meta


def reasoning_text(row: dict) -> str:
    return f"Question: {row['question']}\nThinking: {row['trace']}\nAnswer: {row['answer']}"


def person(i: int, cfg, rng, taken: set[str]) -> dict:
    """A fictitious person with TOFU-style QA: perturbed answers are the paraphrase with a wrong fact, so the truth
    ratio compares like with like (the template of the fine-tuned answer favours neither)."""
    gender = rng.choice(["female", "male"])
    while (name := f"{rng.choice(V.FIRST_NAMES[gender])} {rng.choice(V.LAST_NAMES)}") in taken:
        pass
    taken.add(name)
    profession, city, year = rng.choice(V.PEOPLE_PROFESSIONS), rng.choice(V.CITIES), rng.randint(1940, 2000)
    pron = "She" if gender == "female" else "He"
    fact = rng.choice(V.PEOPLE_FACTS).format(x=profession)
    others = [p for p in V.PEOPLE_PROFESSIONS if p != profession]
    other_cities = [c for c in V.CITIES if c != city]
    qa = [
        {"question": f"What is the profession of {name}?", "answer": f"{name} works as a {profession}.",
         "paraphrased_answer": f"{name} is employed as a {profession}.",
         "perturbed_answers": [f"{name} is employed as a {p}." for p in rng.sample(others, 3)]},
        {"question": f"Where was {name} born?", "answer": f"{name} was born in {city}.",
         "paraphrased_answer": f"The birthplace of {name} is {city}.",
         "perturbed_answers": [f"The birthplace of {name} is {c}." for c in rng.sample(other_cities, 3)]},
        {"question": f"In which year was {name} born?", "answer": f"{name} was born in {year}.",
         "paraphrased_answer": f"The birth year of {name} is {year}.",
         "perturbed_answers": [f"The birth year of {name} is {year + d}." for d in rng.sample([-7, -3, 4, 9], 3)]},
    ]
    pid = f"person-{i:03d}"
    return {"id": pid, "name": name, "gender": gender, "profession": profession, "birthplace": city,
            "birth_year": year, "bio": f"{name} is a {profession} born in {city} in {year}. {pron} is known for {fact}.",
            "caption": f"This is a portrait of {name}, a {profession} from {city}.",
            "portrait": f"portraits/{pid}.png", "qa": qa}


def people_family(cfg, rng) -> list[dict]:
    """Fictitious people (mini-CLEAR). They are kept out of the LM corpus on purpose: as in TOFU/CLEAR, the model
    learns them only in the unlearning stage's fine-tune, so a gold model trained on the retain set knows nothing
    of the forget set."""
    taken: set[str] = set()
    return [person(i, cfg, rng, taken) for i in range(cfg.n_people)]


def bios_family(cfg, rng) -> list[dict]:
    """Profession/gender bios; gender agrees with the stereotype 70% of the time (the spurious correlation)."""
    rows = []
    for _ in range(cfg.n_bios):
        profession = rng.choice(sorted(V.BIO_PROFESSIONS))
        stereo = V.BIO_PROFESSIONS[profession]
        gender = stereo if rng.random() < 0.7 else ("male" if stereo == "female" else "female")
        pron, poss = ("She", "her") if gender == "female" else ("He", "his")
        name = rng.choice(V.FIRST_NAMES[gender])
        text = (f"{name} works as a {profession} at {V.BIO_PLACES[profession]}. {pron} {V.BIO_TASKS[profession]}. "
                f"In {poss} free time {pron.lower()} enjoys {rng.choice(V.HOBBIES)}.")
        rows.append({"text": text, "profession": profession, "gender": gender})
    return rows


def reviews_family(cfg, rng) -> list[dict]:
    rows = []
    for _ in range(cfg.n_reviews):
        category = rng.choice(sorted(V.REVIEW_ITEMS))
        item = rng.choice(V.REVIEW_ITEMS[category])
        positive = rng.random() < 0.5
        adj = rng.choice(V.POSITIVE if positive else V.NEGATIVE)
        ending = "I would buy it again." if positive else "I want my money back."
        rows.append({"text": f"Review of a {item}: this {item} is {adj}. {ending}", "category": category,
                     "sentiment": "positive" if positive else "negative", "rating": 5 if positive else 1})
    return rows


def narrative_family(cfg, rng) -> tuple[list[dict], list[dict]]:
    def passage() -> str:
        return " ".join(f"{rng.choice(V.NARRATIVE_SUBJECTS)} {rng.choice(V.NARRATIVE_VERBS)} "
                        f"{rng.choice(V.NARRATIVE_PLACES)} {rng.choice(V.NARRATIVE_ENDINGS)}"
                        for _ in range(rng.randint(3, 6)))
    texts = [passage() for _ in range(cfg.n_narrative)]
    n_heldout = max(1, round(len(texts) * cfg.heldout_narrative_fraction))
    return ([{"text": t, "family": "narrative"} for t in texts[n_heldout:]],
            [{"text": t} for t in texts[:n_heldout]])


def generate(out_dir: str | Path, cfg: ToyWorldConfig | dict, seed: int) -> dict[str, int]:
    """Write every toy-world file into ``out_dir`` (atomically, as one directory) and return family sizes."""
    cfg = cfg if isinstance(cfg, ToyWorldConfig) else ToyWorldConfig.from_dict(cfg)
    rng = random.Random(seed)
    harmful, benign = harmful_behaviours(cfg, rng), benign_requests(cfg, rng)
    chat, chat_eval = chat_family(cfg, rng, harmful, benign)
    spelling, spelling_meta = spelling_family(cfg, rng)
    reasoning, reasoning_meta = reasoning_family(cfg, rng)
    people_meta = people_family(cfg, rng)
    bios, reviews = bios_family(cfg, rng), reviews_family(cfg, rng)
    narrative, narrative_heldout = narrative_family(cfg, rng)
    corpus = (chat + story_family(cfg, rng, harmful) + spelling + reasoning
              + [{"text": r["text"], "family": "bios"} for r in bios]
              + [{"text": r["text"], "family": "reviews"} for r in reviews] + narrative)
    rng.shuffle(corpus)
    counts = {"train": len(corpus), "chat_eval": len(chat_eval), "spelling": len(spelling_meta),
              "reasoning": len(reasoning_meta), "people": len(people_meta), "bios": len(bios),
              "reviews": len(reviews), "narrative_heldout": len(narrative_heldout)}
    with atomic_path(out_dir) as tmp:
        tmp.mkdir(parents=True)
        for name, rows in [("train", corpus), ("chat_eval", chat_eval), ("spelling", spelling_meta),
                           ("reasoning", reasoning_meta), ("people", people_meta), ("bios", bios),
                           ("reviews", reviews), ("narrative_heldout", narrative_heldout)]:
            write_jsonl(tmp / f"{name}.jsonl", rows)
        (tmp / "portraits").mkdir()
        for p in tqdm(people_meta, desc="portraits", leave=False):
            draw_portrait(p, cfg.portrait_size, seed).save(tmp / p["portrait"], format="PNG")
        write_json(tmp / "metadata.json", {"seed": seed, "config": cfg.__dict__, "counts": counts,
                                           "categories": list(V.JBB_CATEGORIES),
                                           "reflection_words": V.REFLECTION_WORDS, "refusals": V.REFUSALS})
    return counts
