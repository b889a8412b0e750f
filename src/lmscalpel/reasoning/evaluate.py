"""Reasoning evaluation: problems, generation with optional interventions, answer checking, thinking length and
reflection words.

Thinking length = generated tokens before the thinking-end marker (toy world and packaged numeric benchmarks:
``"Answer:"``; R1 presets: ``"</think>"``); when the marker never appears the whole generation counts (and the toy
world's answer is wrong). Answer checking is normalised exact match (spec §7): last ``\\boxed{}``, else the last
``Answer:`` match, else ``"0"``; a packaged numeric benchmark's answer is the first number after the marker, else the
reply's last number; integers and other numbers compare numerically; GPQA letters follow the released
``process_results`` (``extract_choice``). Reflection words are the words of the reasoning vocabulary R in the
thinking span. Several samples per problem give pass@1 (mean) and maj@n (majority vote, ties to the first answer
seen), the latter with its Wilson 95 % interval over problems.

Packaged benchmarks (``lmscalpel.data.plan.PACKAGED_REASONING_BENCHMARKS``) are read offline as seeded windows
(:mod:`lmscalpel.data.benchmarks`); GPQA's questions may not be republished, so its replies are scored and their
text is never kept.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import random
import re
from collections import Counter
from pathlib import Path
from typing import Callable, Sequence

import torch
from tqdm import tqdm

from lmscalpel.checkpoint import open_checkpoint
from lmscalpel.data.benchmarks import load_benchmark
from lmscalpel.data.files import read_json_records
from lmscalpel.io import read_jsonl
from lmscalpel.models.chat import chat_prompt
from lmscalpel.models.refusal import wilson_interval
from lmscalpel.reasoning.vocabulary import VocabEntry, count_words

log = logging.getLogger(__name__)

MATH_PROMPT = ("Please reason step by step, and put your final answer within \\boxed{{}}.\n"
               "Problem: {problem}\nAnswer:")
GPQA_PROMPT = ("Answer the following multiple choice question. The last line of your response should be of the "
               "following format: 'Answer: $LETTER' (without quotes) where LETTER is one of ABCD. Think step by step "
               "before answering.\n\n{question}\n\nA) {A}\nB) {B}\nC) {C}\nD) {D}")
NUMBER_PROMPT = ("Solve the following problem. Think it through step by step, then give the final answer as a "
                 "number on the last line, written as 'Answer: <number>'.\n\n{question}")
NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
HUB_BENCHMARKS = {
    "math500": ("HuggingFaceH4/MATH-500", None, "test"),
    "aime24": ("simplescaling/aime24_nofigures", None, "train"),
    "gpqa_diamond": ("Idavidrein/gpqa", "gpqa_diamond", "train"),
}


# --- problems -------------------------------------------------------------------------------------------------

def load_problems(benchmark: str, *, toyworld_dir: str | Path | None = None, data_file: str | None = None,
                  limit: int | None = None, seed: int = 0) -> list[dict]:
    """Problems of the toy world or a hub benchmark as ``{"id", "prompt", "answer", "kind"}`` (GPQA's also
    ``public_text`` False); ``kind`` ∈ integer | math | choice (packaged benchmarks: :func:`packaged_problems`).

    ``data_file`` (JSON/JSONL with the hub columns) replaces the hub download, for tests and offline runs.
    """
    if benchmark == "toyworld":
        if toyworld_dir is None:
            raise ValueError("benchmark 'toyworld' needs the toy world directory")
        rows = [r for r in read_jsonl(Path(toyworld_dir) / "reasoning.jsonl") if r["split"] == "eval"]
        problems = [{"id": r["id"], "prompt": f"Question: {r['question']}\nThinking:", "answer": str(r["answer"]),
                     "kind": "integer"} for r in rows]
    elif benchmark in HUB_BENCHMARKS:
        rows = _hub_rows(benchmark, data_file)
        problems = [_gpqa_problem(r, i, seed) if benchmark == "gpqa_diamond" else
                    {"id": str(r.get("unique_id", r.get("id", i))), "prompt": MATH_PROMPT.format(problem=r["problem"]),
                     "answer": str(r["answer"]), "kind": "math"} for i, r in enumerate(rows)]
    else:
        raise ValueError(f"config key reasoning.eval.benchmarks: unknown benchmark {benchmark!r}; "
                         f"expected toyworld or one of {sorted(HUB_BENCHMARKS)}")
    return problems[:limit] if limit else problems


def packaged_problems(subset: dict, key: str) -> tuple[list[dict], dict]:
    """The problems of a packaged benchmark subset (``load_benchmark`` config; ``key`` named in errors) and its
    provenance: numeric ones (kind ``number``) with :data:`NUMBER_PROMPT`, multiple choice with the GPQA template
    over the stored choice order; ``public_text`` False where the questions may not be written (GPQA)."""
    chosen = load_benchmark(subset, key=key)
    public = chosen.benchmark.public_text
    if chosen.benchmark.format == "multiple_choice":
        problems = [{"id": i.id, "prompt": GPQA_PROMPT.format(question=i.question, **dict(zip("ABCD", i.choices))),
                     "answer": "ABCD"[i.gold], "kind": "choice", "public_text": public} for i in chosen.items]
    else:
        problems = [{"id": i.id, "prompt": NUMBER_PROMPT.format(question=i.question), "answer": i.answer,
                     "kind": "number", "public_text": public} for i in chosen.items]
    return problems, chosen.provenance


def _hub_rows(benchmark: str, data_file: str | None) -> list[dict]:
    import datasets

    if data_file:
        return read_json_records(data_file, f"reasoning.eval.data_files.{benchmark}")
    path, name, split = HUB_BENCHMARKS[benchmark]
    return list(datasets.load_dataset(path, name, split=split))


def gpqa_preprocess(text: str | None) -> str:
    """Clean a GPQA choice as the released ``process_docs`` does: strip, ``" [title]"`` → ``". "``, drop bracketed
    spans (``[...]``, non-greedy), collapse double spaces once; a missing choice becomes ``" "``."""
    if text is None:
        return " "
    text = text.strip().replace(" [title]", ". ")
    return re.sub(r"\[.*?\]", "", text).replace("  ", " ")


def _gpqa_problem(row: dict, index: int, seed: int) -> dict:
    """simple-evals template over the preprocessed choices, the question as stored (as the released code); choices
    shuffled with a per-question seed (the released code's shuffle is unseeded). Scored only: its authors ask that
    the questions are not republished, so the replies' text is not kept."""
    choices = [row["Correct Answer"], row["Incorrect Answer 1"], row["Incorrect Answer 2"], row["Incorrect Answer 3"]]
    order = list(range(4))
    random.Random(seed * 1_000_003 + index).shuffle(order)
    letters = dict(zip("ABCD", (gpqa_preprocess(choices[k]) for k in order)))
    return {"id": str(row.get("Record ID", index)), "prompt": GPQA_PROMPT.format(question=row["Question"], **letters),
            "answer": "ABCD"[order.index(0)], "kind": "choice", "public_text": False}


# --- answers --------------------------------------------------------------------------------------------------

def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (braces balanced), or None."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, i = 0, start + len("\\boxed")
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i + 1:j]
    return None


def extract_answer(text: str, kind: str) -> str | None:
    if kind == "integer":
        match = re.search(r"Answer:\s*(-?\d+)", text)
        return match.group(1) if match else None
    if kind == "choice":
        return extract_choice(text)
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed
    matches = re.findall(r"Answer:\s*(.+)", text)
    return matches[-1].strip() if matches else "0"


def extract_number(text: str, marker: str) -> str | None:
    """The first number after the last ``marker``; a reply that never writes the marker: its last number (it may
    still state its answer in words around it)."""
    start = text.rfind(marker)
    numbers = NUMBER.findall(text[start + len(marker):] if start >= 0 else text)
    if not numbers:
        return None
    return numbers[0] if start >= 0 else numbers[-1]


def extract_choice(text: str) -> str | None:
    """GPQA letter as the released ``process_results`` reads it: the last ``\\boxed{}`` content, else everything
    after the first ``Answer:`` (case-insensitive; its DOTALL ``(.*)`` has a single match running to the end); a lone
    lower-case letter is upper-cased. The reference sends any other candidate to an LLM extractor; here the letter
    that opens it (after ``*``, ``$``, ``(`` or ``\\text{``) stands in for that, else None."""
    candidate = last_boxed(text)
    if candidate is None:
        match = re.search(r"Answer\s*:\s*(.*)", text, re.IGNORECASE | re.DOTALL)
        if match is None:
            return None
        candidate = match.group(1)
    if candidate.strip() in ("a", "b", "c", "d"):
        return candidate.strip().upper()
    match = re.match(r"[\s*$(]*(?:\\text(?:bf)?\{)?([A-D])(?![A-Za-z0-9])", candidate)
    return match.group(1) if match else None


def normalize_answer(text: str) -> str:
    """Strip spaces, ``\\left``/``\\right``, ``\\!``, a trailing period, ``$``; unify ``\\dfrac``/``\\tfrac``."""
    text = text.strip().replace("\\left", "").replace("\\right", "").replace("\\!", "").replace("$", "")
    text = text.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    text = re.sub(r"\s+", "", text).rstrip(".")
    return text


def answers_match(prediction: str | None, reference: str) -> bool:
    if prediction is None:
        return False
    pred, ref = normalize_answer(prediction), normalize_answer(reference)
    if pred == ref:
        return True
    try:
        return float(pred.replace(",", "")) == float(ref.replace(",", ""))
    except ValueError:
        return False


def thinking_length(tokenizer, generated: Sequence[int], marker: str) -> tuple[int, bool]:
    """(tokens before ``marker``, marker found). A token counts if the text up to and including it ends before the
    marker starts (binary search over decoded prefixes; decoded length grows with the prefix)."""
    text = tokenizer.decode(list(generated), skip_special_tokens=False)
    start = text.find(marker)
    if start < 0:
        return len(generated), False
    lo, hi = 0, len(generated)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if len(tokenizer.decode(list(generated[:mid]), skip_special_tokens=False)) <= start:
            lo = mid
        else:
            hi = mid - 1
    return lo, True


# --- generation -----------------------------------------------------------------------------------------------

def render_prompts(tokenizer, problems: Sequence[dict], chat_template: bool, add_bos: bool) -> list[str]:
    if chat_template:
        return [chat_prompt(tokenizer, p["prompt"]) for p in problems]
    bos = tokenizer.bos_token if add_bos and tokenizer.bos_token else ""
    return [bos + p["prompt"] for p in problems]


@torch.no_grad()
def generate_ids(model, tokenizer, prompts: Sequence[str], *, max_new_tokens: int, temperature: float, top_p: float,
                 seed: int, logits_processor=None, stop_strings: Sequence[str] = ()) -> list[list[int]]:
    """One batch, left-padded; returns generated ids per prompt, cut at the first EOS/pad."""
    tokenizer.padding_side = "left"
    device = next(model.parameters()).device
    batch = tokenizer(list(prompts), return_tensors="pt", padding=True, add_special_tokens=False).to(device)
    sampling = {"do_sample": True, "temperature": temperature, "top_p": top_p} if temperature > 0 else \
        {"do_sample": False}
    extra = {"stop_strings": list(stop_strings), "tokenizer": tokenizer} if stop_strings else {}
    torch.manual_seed(seed)
    out = model.generate(**batch, max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                         eos_token_id=tokenizer.eos_token_id, logits_processor=logits_processor, **sampling, **extra)
    stops = {tokenizer.eos_token_id, tokenizer.pad_token_id} - {None}
    result = []
    for row in out[:, batch["input_ids"].shape[1]:].tolist():
        cut = next((k for k, t in enumerate(row) if t in stops), len(row))
        result.append(row[:cut])
    return result


# eval settings that change a generated batch or its scores (n_samples only adds batches of its own)
GENERATION_KEYS = ("max_new_tokens", "temperature", "top_p", "batch_size", "chat_template", "add_bos",
                   "thinking_end", "stop_strings", "seed")


def condition_spec(model, problems: Sequence[dict], eval_cfg: dict, key: dict | None,
                   vocabulary: Sequence[VocabEntry] = ()) -> dict:
    """Everything a finished batch of a condition depends on: generation settings, device and dtype, the problems,
    the words counted as reflection words, and the caller's ``key`` (model identity, intervention and its strength,
    banned sequences...)."""
    weight = next(model.parameters())
    problems_json = json.dumps([[p["id"], p["prompt"], p["answer"], p["kind"]] for p in problems])
    return {"generation": {k: eval_cfg.get(k) for k in GENERATION_KEYS}, "device": str(weight.device),
            "dtype": str(weight.dtype), "problems": hashlib.sha256(problems_json.encode()).hexdigest(),
            "reflection_forms": [entry.forms for entry in vocabulary], "key": key or {}}


def run_condition(model, tokenizer, problems: Sequence[dict], eval_cfg: dict, *, checkpoint_dir: str | Path,
                  key: dict | None = None, intervention: Callable[[], contextlib.AbstractContextManager] | None = None,
                  logits_processor: Callable[[int], object] | None = None, vocabulary: Sequence[VocabEntry] = (),
                  desc: str = "condition") -> list[dict]:
    """Generate ``eval_cfg['n_samples']`` samples per problem under ``intervention`` (a factory entered once per
    batch) and score them, counting the words of ``vocabulary`` in each thinking span. Finished batches are kept
    under ``checkpoint_dir`` (``lmscalpel.checkpoint``, keyed by ``condition_spec`` with the caller's ``key``) and
    reused after a kill; a changed spec regenerates them.

    ``logits_processor(prompt_length)`` builds the processors for one batch (the vocabulary ban).
    """
    spec = condition_spec(model, problems, eval_cfg, key, vocabulary)
    with open_checkpoint(checkpoint_dir, spec, what="reasoning") as ckpt:
        prompts = render_prompts(tokenizer, problems, eval_cfg["chat_template"], eval_cfg["add_bos"])
        size = eval_cfg["batch_size"]
        records = []
        jobs = [(s, b) for s in range(eval_cfg["n_samples"]) for b in range(0, len(problems), size)]
        for sample, start in tqdm(jobs, desc=desc, leave=False, mininterval=5):
            part = f"sample{sample}-batch{start // size:05d}.jsonl"
            if ckpt.exists(part):
                records += read_jsonl(ckpt.path(part))
                continue
            chunk = problems[start:start + size]
            enc_len = tokenizer(prompts[start:start + size], return_tensors="pt", padding=True,
                                add_special_tokens=False)["input_ids"].shape[1]
            processors = logits_processor(enc_len) if logits_processor else None
            with intervention() if intervention else contextlib.nullcontext():
                generated = generate_ids(model, tokenizer, prompts[start:start + size],
                                         max_new_tokens=eval_cfg["max_new_tokens"],
                                         temperature=eval_cfg["temperature"], top_p=eval_cfg["top_p"],
                                         seed=eval_cfg.get("seed", 0) + sample, logits_processor=processors,
                                         stop_strings=eval_cfg.get("stop_strings", ()))
            rows = [score_generation(tokenizer, p, ids, eval_cfg["thinking_end"], sample, vocabulary)
                    for p, ids in zip(chunk, generated)]
            ckpt.write_jsonl(part, rows)
            records += rows
        return records


def score_generation(tokenizer, problem: dict, ids: Sequence[int], marker: str, sample: int = 0,
                     vocabulary: Sequence[VocabEntry] = ()) -> dict:
    """One reply's verdict, thinking length and reflection words; the reply's text only where the benchmark's
    questions may be written (a reply quotes its question and choices)."""
    text = tokenizer.decode(list(ids), skip_special_tokens=False)
    length, found = thinking_length(tokenizer, ids, marker)
    if problem["kind"] == "integer":  # toy world: the integer right after the marker
        prediction = extract_answer(text[text.find(marker):], "integer") if found else None
    elif problem["kind"] == "number":
        prediction = extract_number(text, marker)
    else:
        prediction = extract_answer(text, problem["kind"])
    thinking = text[:text.find(marker)] if found else text
    return {"id": problem["id"], "sample": sample, "length": length, "marker_found": found,
            "n_generated": len(ids), "prediction": prediction,
            "correct": answers_match(prediction, problem["answer"]),
            "reflection_words": count_words(thinking, vocabulary),
            "text": text if problem.get("public_text", True) else ""}


def summarise(records: Sequence[dict]) -> dict:
    """pass@1, maj@n with its Wilson 95 % interval over problems, mean thinking length (and its SE over samples),
    mean reflection words, share with the marker, number of problems and samples."""
    by_problem: dict[str, list[dict]] = {}
    for r in records:
        by_problem.setdefault(r["id"], []).append(r)
    majority = []
    for rows in by_problem.values():
        rows = sorted(rows, key=lambda r: r["sample"])
        votes = Counter(_vote_key(r) for r in rows)
        best = max(votes.values())
        winner = next(_vote_key(r) for r in rows if votes[_vote_key(r)] == best)
        majority.append(next(r["correct"] for r in rows if _vote_key(r) == winner))
    n = max(len(records), 1)
    low, high = wilson_interval(sum(majority), len(majority))
    lengths = [r["length"] for r in records]
    return {"pass_at_1": sum(r["correct"] for r in records) / n,
            "maj_accuracy": sum(majority) / max(len(majority), 1), "maj_accuracy_ci_low": low,
            "maj_accuracy_ci_high": high,
            "mean_length": sum(lengths) / n, "length_se": standard_error(lengths),
            "mean_reflection_words": sum(r["reflection_words"] for r in records) / n,
            "marker_rate": sum(r["marker_found"] for r in records) / n,
            "n_problems": len(by_problem), "n_samples": len(records)}


def standard_error(values: Sequence[float]) -> float:
    """Standard error of the mean (sample SD / sqrt n); NaN below two values."""
    if len(values) < 2:
        return float("nan")
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1) / len(values))


def _vote_key(record: dict) -> str:
    return normalize_answer(record["prediction"]) if record["prediction"] is not None else "\0none"
