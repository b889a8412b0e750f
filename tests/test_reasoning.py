"""Reasoning stage: vocabulary matching, ReasonScore (planted feature, entropy term), selection, the clamp and
additive interventions, the vocabulary ban, answer checking and thinking length."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from lmscalpel.reasoning.activations import FoldedSAE, corpus_rows, pack_texts, residual_stream
from lmscalpel.reasoning.evaluate import (answers_match, extract_answer, load_problems, run_condition, summarise,
                                          thinking_length)
from lmscalpel.reasoning.intervene import SuppressUntilMarker, add_latent, banned_sequences, clamp_latent
from lmscalpel.reasoning.score import ReasonScoreAccumulator, reason_scores, select_features
from lmscalpel.reasoning.vocabulary import (RELEASED_VOCABULARY, expand_windows, form_token_ids, match_positions,
                                            parse_vocabulary)


# --- vocabulary -----------------------------------------------------------------------------------------------

def test_default_vocabulary_is_the_released_34_strings():
    vocab = parse_vocabulary(None)
    forms = [f for v in vocab for f in v.forms]
    assert len(vocab) == 10 and len(forms) == 34 and len(set(forms)) == 34
    assert {"But", "Another", " Let me", "let me", " wait"} <= set(forms)
    assert not {"but", " But", "another"} & set(forms)


def test_multi_token_matches_and_clipped_windows():
    ids = torch.tensor([[9, 1, 2, 9, 9, 9, 9, 3], [1, 9, 9, 9, 9, 9, 9, 9]])
    hits = match_positions(ids, [[(1, 2)], [(3,)]])  # group 0: two-token form, group 1: one token
    assert hits[0, 0].tolist() == [False, True, True, False, False, False, False, False]
    assert not hits[0, 1].any()  # a lone first token is not a match
    assert hits[1, 0, 7] and hits[1].sum() == 1
    windows = expand_windows(hits, before=1, after=2)
    assert windows[0, 0].tolist() == [True, True, True, True, True, False, False, False]
    assert windows[1, 0].tolist() == [False] * 6 + [True, True]


# --- ReasonScore ----------------------------------------------------------------------------------------------

def _planted_corpus(seed=0, n=12, t=48, n_groups=5, m=48):
    """Token rows with single-token vocabulary words 1..n_groups and activations where latent 7 fires only near
    them, latent 3 fires everywhere and the rest is sparse noise."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(10, 100, (n, t), generator=g)
    for row in range(n):
        for pos in torch.randperm(t, generator=g)[:4].tolist():
            ids[row, pos] = 1 + (row + pos) % n_groups
    groups = [[(k,)] for k in range(1, n_groups + 1)]
    windows = expand_windows(match_positions(ids, groups), 2, 3)
    in_r = windows.any(0).reshape(-1)
    acts = torch.relu(torch.randn(n * t, m, generator=g) - 1.8)
    acts[:, 7] = 2.0 * in_r
    acts[:, 3] = 1.0 + acts[:, 3]
    return ids, windows, acts


def _accumulate(windows, acts, batches=3):
    g, n, t = windows.shape
    acc = ReasonScoreAccumulator(acts.shape[1], g, top_k=4)
    flat = windows.reshape(g, -1)
    valid = torch.ones(n * t, dtype=torch.bool)
    for chunk in torch.arange(n * t).chunk(batches):
        acc.update(acts[chunk], flat[:, chunk], valid[chunk], offset=int(chunk[0]))
    return acc


def test_planted_feature_near_vocabulary_ranks_first():
    ids, windows, acts = _planted_corpus()
    acc = _accumulate(windows, acts)
    scores = reason_scores(*acc.means(), alpha=0.7)
    assert int(scores.score.argmax()) == 7
    assert scores.score[3] < scores.score[7]
    selected, threshold, forced = select_features(scores.score, 0.97)
    assert selected[0] == 7 and not forced and all(scores.score[i] > threshold for i in selected)
    assert acc.f_max[7] == pytest.approx(2.0)
    assert acc.top_values[:, 7].tolist() == [2.0] * 4 and bool(windows.any(0).reshape(-1)[acc.top_index[:, 7]].all())


def test_entropy_term_penalises_a_one_word_feature():
    ids, windows, acts = _planted_corpus(seed=1)
    only_word0 = windows[0].reshape(-1) & ~windows[1:].any(0).reshape(-1)
    in_r = windows.any(0).reshape(-1)
    acts[:, 11] = only_word0 * 2.0 * in_r.sum() / only_word0.sum()  # same mean over D_R as latent 7
    acc = _accumulate(windows, acts)
    with_entropy, without = reason_scores(*acc.means(), alpha=0.7), reason_scores(*acc.means(), alpha=0.0)
    assert with_entropy.entropy[11] < 0.05 < 0.9 < with_entropy.entropy[7]
    assert without.score[11] == pytest.approx(float(without.score[7]), rel=1e-6)
    assert with_entropy.score[11] < with_entropy.score[7]
    assert with_entropy.score[11] < without.score[11]


def test_selection_keeps_at_least_one_feature():
    selected, _, forced = select_features(torch.zeros(100), 0.997)
    assert len(selected) == 1 and forced
    selected, _, forced = select_features(torch.arange(1000.0), 0.997)
    assert selected == [999, 998, 997] and not forced
    with pytest.raises(ValueError, match="reasoning.quantile"):
        select_features(torch.zeros(3), 1.0)


# --- interventions --------------------------------------------------------------------------------------------

class OrthoSAE:
    """ReLU SAE with orthogonal decoder rows of norm 2 and W_enc = W_decᵀ / 4: re-encoding is exact per latent."""

    def __init__(self, d=32, m=8, seed=0):
        q, _ = torch.linalg.qr(torch.randn(d, m, generator=torch.Generator().manual_seed(seed)))
        self.W_dec = 2.0 * q.T
        self.W_enc = q / 2.0
        self.b_dec = torch.zeros(d)

    def pre(self, x):
        return x @ self.W_enc

    def encode(self, x):
        return torch.relu(self.pre(x))

    def decode(self, f):
        return f @ self.W_dec + self.b_dec


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=64,
                      pad_token_id=0, bos_token_id=1, eos_token_id=2)
    return LlamaForCausalLM(cfg).eval()


def test_folded_sae_has_unit_rows_and_same_reconstruction():
    sae = FoldedSAE(OrthoSAE())
    x = torch.randn(5, 32)
    assert torch.allclose(sae.W_dec.norm(dim=1), torch.ones(8))
    f = sae.encode(x)
    torch.testing.assert_close(f @ sae.W_dec, sae.sae.decode(sae.sae.encode(x)))
    torch.testing.assert_close(sae.decode(f), sae.sae.decode(sae.sae.encode(x)))


def _set(f, latent, value):
    f = f.clone()
    f[..., latent] = value
    return f


def error_of(sae, x):
    return x - sae.decode(sae.encode(x))


@pytest.mark.parametrize("mode", ["add", "clamp"])
def test_interventions_change_only_the_intended_latent(tiny_model, mode):
    sae, layer, latent = FoldedSAE(OrthoSAE()), 0, 5
    ids = torch.randint(3, 64, (2, 7), generator=torch.Generator().manual_seed(1))
    x = residual_stream(tiny_model, layer, ids)
    ctx = add_latent(tiny_model, layer, sae.direction(latent), 3.0) if mode == "add" else \
        clamp_latent(tiny_model, layer, sae, latent, 3.0)
    with ctx:
        x_new = residual_stream(tiny_model, layer, ids)
    pre, pre_new = sae.sae.pre(x) * 2.0, sae.sae.pre(x_new) * 2.0  # folded scale (decoder norm 2)
    changed = (pre_new - pre).abs().amax((0, 1)) > 1e-4
    assert changed.tolist() == [j == latent for j in range(8)]
    if mode == "add":
        torch.testing.assert_close(pre_new[..., latent] - pre[..., latent], torch.full((2, 7), 3.0))
    else:
        # f' = f with f_i := 3 and the error kept: the pre-activation moves by 3 − f_i(x)
        torch.testing.assert_close(pre_new[..., latent] - pre[..., latent], 3.0 - sae.encode(x)[..., latent])
        torch.testing.assert_close(x_new, sae.decode(_set(sae.encode(x), latent, 3.0)) + error_of(sae, x))
    error = x - sae.decode(sae.encode(x))  # the reconstruction error (orthogonal part) is kept
    error_new = x_new - sae.decode(sae.encode(x_new))
    orth = torch.eye(32) - sae.W_dec.T @ sae.W_dec
    torch.testing.assert_close(error_new @ orth, error @ orth, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("mode", ["add", "clamp"])
def test_generated_positions_skip_the_prefill(tiny_model, mode):
    sae = FoldedSAE(OrthoSAE())
    ids = torch.randint(3, 64, (1, 6), generator=torch.Generator().manual_seed(2))
    base = residual_stream(tiny_model, 0, ids)
    ctx = add_latent(tiny_model, 0, sae.direction(2), 4.0, "generated") if mode == "add" else \
        clamp_latent(tiny_model, 0, sae, 2, 4.0, "generated")
    with ctx:
        first, second = residual_stream(tiny_model, 0, ids), residual_stream(tiny_model, 0, ids)
    torch.testing.assert_close(first, base)
    assert (second - base).abs().max() > 0.1


def test_clamp_fires_every_decode_step_and_cache_matches_no_cache(tiny_model):
    sae = FoldedSAE(OrthoSAE())
    ids = torch.randint(3, 64, (2, 5), generator=torch.Generator().manual_seed(3))
    outs = []
    for use_cache in (True, False):
        with clamp_latent(tiny_model, 1, sae, 1, 6.0) as state:
            outs.append(tiny_model.generate(ids, max_new_tokens=6, do_sample=False, use_cache=use_cache,
                                            pad_token_id=0, eos_token_id=None))
        if use_cache:
            assert state.calls == 6
    assert torch.equal(outs[0], outs[1])
    assert not torch.equal(outs[0], tiny_model.generate(ids, max_new_tokens=6, do_sample=False, pad_token_id=0,
                                                        eos_token_id=None))


# --- tokenizer-level: matching, length, ban, generation -------------------------------------------------------

@pytest.fixture(scope="module")
def tokenizer(tiny_lm_dir):
    return AutoTokenizer.from_pretrained(tiny_lm_dir)


def test_vocabulary_matches_in_tokenised_text(tokenizer):
    vocab = parse_vocabulary(RELEASED_VOCABULARY)
    groups = form_token_ids(tokenizer, vocab)
    text = "Hmm, let me see. Wait, that is wrong. Let me recompute. But ok. but no."
    ids = torch.tensor([tokenizer.encode(text, add_special_tokens=False)])
    hits = match_positions(ids, groups)
    words = [v.word for v in vocab]
    counts = dict(zip(words, (hits.sum((1, 2)) > 0).tolist()))
    assert counts["hmm"] and counts["wait"] and counts["let me"] and not counts["maybe"]
    matched = tokenizer.decode(ids[0][hits[words.index("let me"), 0]].tolist())
    assert matched.lower().count("let me") == 2


def test_thinking_length_counts_tokens_before_the_marker(tokenizer):
    prefix = "Hmm, let me see. So 3 plus 4 is 7.\n"
    ids = tokenizer.encode(prefix + "Answer: 7", add_special_tokens=False)
    length, found = thinking_length(tokenizer, ids, "Answer:")
    assert found and length == len(tokenizer.encode(prefix, add_special_tokens=False))
    assert thinking_length(tokenizer, ids[:length], "Answer:") == (length, False)


def test_suppress_until_marker_bans_only_inside_thinking(tokenizer):
    marker_ids = tokenizer.encode(" Answer:", add_special_tokens=False)
    prompt = torch.tensor([[5, 6, 7], [5, 6, 9]])
    proc = SuppressUntilMarker([(10,), (7, 11)], tokenizer, "Answer:", prompt_length=2)
    scores = proc(prompt, torch.zeros(2, len(tokenizer)))
    assert torch.isinf(scores[:, 10]).all() and not torch.isinf(scores[:, 12]).any()
    assert torch.isinf(scores[0, 11]) and not torch.isinf(scores[1, 11])  # 11 only right after 7
    grown = torch.cat([prompt, torch.tensor([[8] + marker_ids, [8] + [9] * len(marker_ids)])], dim=1)
    scores = proc(grown, torch.zeros(2, len(tokenizer)))
    assert not torch.isinf(scores[0]).any() and torch.isinf(scores[1, 10])


def test_banned_sequences_modes():
    forms = [[(4, 5), (6,)], [(4, 7, 8)]]
    assert banned_sequences(forms, "first_token") == [(4,), (6,)]
    assert banned_sequences(forms, "sequence") == [(4, 5), (4, 7, 8), (6,)]
    with pytest.raises(ValueError, match="reasoning.ban.mode"):
        banned_sequences(forms, "all")


def test_random_ban_pool_ranks_words_by_p_think():
    from lmscalpel.reasoning.stage import ban_word_pool, random_ban_words

    think = ["so the sum is odd, okay, the check is fine"] * 3 + ["the the the okay"]
    solution = ["the sum is odd and the proof is fine"] * 4
    # p_think - p_solution: okay .118, check = so .088, the .043; 'is', 'sum' are commoner in solutions
    assert ban_word_pool(think, solution, ["let me"], 4, "p_think") == ["okay", "check", "so", "the"]
    assert ban_word_pool(think, solution, ["okay", "let me"], 2, "p_think") == ["check", "so"]
    assert ban_word_pool(think, solution, ["let me"], 3, "frequency") == ["the", "is", "okay"]  # the old pool
    pool = ban_word_pool(think, solution, [], 5, "p_think")
    words = random_ban_words(pool, 3, seed=1)
    assert words == random_ban_words(pool, 3, seed=1) and len(set(words)) == 3 and set(words) <= set(pool)


def test_random_ban_pool_reads_the_corpus_columns(tmp_path):
    from lmscalpel.reasoning.stage import ban_pool_texts

    corpus_file = tmp_path / "corpus.jsonl"
    corpus_file.write_text(json.dumps({"text": "t", "deepseek_reasoning": "hmm okay", "ground_truth_solution": None})
                           + "\n")
    cfg = {"corpus": {"path": "json", "data_files": str(corpus_file), "split": "train"},
           "ban": {"random_pool_rank": "p_think", "think_column": "deepseek_reasoning",
                   "solution_column": "ground_truth_solution"}}
    assert ban_pool_texts(cfg, None, []) == (["hmm okay"], [""])
    frequency = {**cfg, "ban": {**cfg["ban"], "random_pool_rank": "frequency"}}
    assert ban_pool_texts(frequency, None, [{"text": "generated"}]) == (["generated"], [])
    with pytest.raises(KeyError, match="reasoning.ban.think_column"):
        ban_pool_texts({**cfg, "ban": {**cfg["ban"], "think_column": "nope"}}, None, [])


def test_pack_texts_layout(tokenizer):
    rows = pack_texts(tokenizer, ["a b", "c"], context_length=4, max_tokens=100)
    flat = rows.flatten().tolist()
    assert flat[0] == tokenizer.bos_token_id and tokenizer.eos_token_id in flat and rows.shape[1] == 4


def test_corpus_rows_shuffle_packed_rows_across_domains(tokenizer):
    domains = ["hmm " * 30, "wait " * 30, "maybe " * 30]
    texts = [d for d in domains for _ in range(8)]  # stored domain by domain
    cfg = {"context_length": 16, "max_tokens": 64, "add_bos": True, "n_rows": None, "shuffle_seed": None}
    first = {tokenizer.decode(r).split()[1] for r in corpus_rows(tokenizer, iter(texts), cfg)}
    assert first == {"hmm"}  # file order: a prefix of the first domain
    shuffled = {**cfg, "shuffle_seed": 42, "n_rows": 9}
    rows = corpus_rows(tokenizer, iter(texts), shuffled)
    full = pack_texts(tokenizer, texts, 16, None, drop_last=True)
    keep = np.random.default_rng(42).permutation(len(full))[:9]  # datasets' Dataset.shuffle(seed=42)
    assert rows.shape == (9, 16) and torch.equal(rows, full[torch.from_numpy(keep)])
    assert {tokenizer.decode(r).split()[1] for r in rows} == {"hmm", "wait", "maybe"}
    assert torch.equal(rows, corpus_rows(tokenizer, iter(texts), shuffled))
    assert len(corpus_rows(tokenizer, iter(texts), {**shuffled, "n_rows": None})) == 4  # max_tokens 64 / 16


def test_preset_reads_the_released_reasonscore_corpus():
    import yaml

    corpus = yaml.safe_load((Path(__file__).parents[1] / "presets/sae_reasoning_r1_llama8b.yaml").read_text()
                            )["reasoning"]["corpus"]
    assert (corpus["text_column"], corpus["shuffle_seed"], corpus["n_rows"]) == ("text", 42, 4096)


def test_run_condition_resumes_from_checkpoints(tiny_lm_dir, tokenizer, tmp_path):
    model = LlamaForCausalLM.from_pretrained(tiny_lm_dir).eval()
    problems = [{"id": f"p{i}", "prompt": f"Question: {i} plus 1?\nThinking:", "answer": str(i + 1),
                 "kind": "integer"} for i in range(3)]
    cfg = {"chat_template": False, "add_bos": True, "batch_size": 2, "n_samples": 1, "max_new_tokens": 5,
           "temperature": 0.0, "top_p": 1.0, "thinking_end": "Answer:", "seed": 0}
    first = run_condition(model, tokenizer, problems, cfg, checkpoint_dir=tmp_path)
    assert len(list(tmp_path.glob("*.jsonl"))) == 2 and len(first) == 3
    assert all(r["length"] == r["n_generated"] for r in first if not r["marker_found"])
    again = run_condition(model, tokenizer, problems, cfg, checkpoint_dir=tmp_path,
                          intervention=lambda: pytest.fail("finished batches must not be regenerated"))
    assert again == first
    summary = summarise(first)
    assert summary["n_problems"] == 3 and 0 <= summary["maj_accuracy"] <= 1


@pytest.fixture
def generate_calls(monkeypatch):
    """Counts generate calls of run_condition (one per batch that is not resumed from a checkpoint)."""
    from lmscalpel.reasoning import evaluate

    calls, real = [], evaluate.generate_ids
    monkeypatch.setattr(evaluate, "generate_ids", lambda *a, **k: calls.append(1) or real(*a, **k))
    return calls


def _count(calls, run):
    calls.clear()
    run()
    return len(calls)


def test_run_condition_regenerates_when_its_config_or_key_changes(tiny_lm_dir, tokenizer, tmp_path,
                                                                  generate_calls):
    model = LlamaForCausalLM.from_pretrained(tiny_lm_dir).eval()
    problems = [{"id": f"p{i}", "prompt": f"Question: {i} plus 1?\nThinking:", "answer": str(i + 1),
                 "kind": "integer"} for i in range(3)]
    cfg = {"chat_template": False, "add_bos": True, "batch_size": 2, "n_samples": 1, "max_new_tokens": 4,
           "temperature": 0.0, "top_p": 1.0, "thinking_end": "Answer:", "seed": 0}

    def run(eval_cfg=cfg, key=None, items=problems):
        return lambda: run_condition(model, tokenizer, items, eval_cfg, checkpoint_dir=tmp_path,
                                     key=key or {"strength": 2.0})

    assert _count(generate_calls, run()) == 2
    assert _count(generate_calls, run()) == 0  # nothing changed: both batches resume
    for change in ({"max_new_tokens": 3}, {"temperature": 0.5}, {"seed": 1}, {"thinking_end": "Thinking:"}):
        assert _count(generate_calls, run({**cfg, **change})) == 2, change
    assert _count(generate_calls, run(key={"strength": 3.0})) == 2
    assert _count(generate_calls, run(key={"strength": 3.0})) == 0
    swapped = [{**p, "prompt": p["prompt"].replace("plus", "minus")} for p in problems]
    assert _count(generate_calls, run(key={"strength": 3.0}, items=swapped)) == 2
    assert _count(generate_calls, run({**cfg, "n_samples": 2}, {"strength": 3.0}, swapped)) == 2  # new samples only


def test_stage_checkpoints_are_keyed_by_what_changes_their_numbers(tiny_lm_dir, toyworld_dir, tmp_path,
                                                                   generate_calls):
    """Baseline, steered latent and vocabulary ban: change one key and the piece is regenerated; change nothing and
    it resumes."""
    import pandas as pd

    from lmscalpel.models.loader import ModelRef
    from lmscalpel.reasoning.stage import run_baseline, run_steering, run_vocab_ban
    from lmscalpel.sae import build_sae, save_sae

    ref = ModelRef(str(tiny_lm_dir), device="cpu")
    save_sae(build_sae("relu", {"d_in": 64, "d_sae": 8, "l1_coefficient": 0.1},
                       generator=torch.Generator().manual_seed(0)), tmp_path / "sae",
             {"hook_name": "blocks.0.hook_resid_post", "layer": 0})
    scores = tmp_path / "scores.parquet"
    (tmp_path / "selected.json").write_text(json.dumps({"selected": [3]}))
    cfg = {"steering": {"modes": ["add"], "gamma": 2.0, "positions": "all", "max_features": 1,
                        "n_random_latents": 0},
           "eval": {"data_files": {}, "max_problems": 2, "max_new_tokens": 4, "n_samples": 1, "temperature": 0.0,
                    "top_p": 1.0, "batch_size": 2, "chat_template": False, "add_bos": True,
                    "thinking_end": "Answer:", "stop_strings": []},
           "vocabulary": None, "corpus": {"path": "toyworld"},
           "ban": {"mode": "sequence", "random_repeats": 0, "random_words": 2, "random_pool": 5,
                   "random_pool_rank": "p_think"}}
    common = {"model_ref": ref, "benchmark": "toyworld", "toyworld_dir": str(toyworld_dir), "seed": 0}
    baseline = str(tmp_path / "baseline.jsonl")

    def base(c):
        return lambda: run_baseline(**common, cfg=c, checkpoint_dir=str(tmp_path / "ckpt/baseline"),
                                    out_generations=baseline, out_metrics=str(tmp_path / "baseline.json"))

    def steer(c, f_max=1.5):
        pd.DataFrame({"latent": range(8), "f_max": [f_max] * 8}).to_parquet(scores)
        return lambda: run_steering(**common, cfg=c, sae_dir=str(tmp_path / "sae"), sae_id="s",
                                    scores_path=str(scores), selected_path=str(tmp_path / "selected.json"),
                                    baseline_path=baseline, checkpoint_dir=str(tmp_path / "ckpt/steer"),
                                    out_metrics=str(tmp_path / "steering.json"))

    def ban(c):
        return lambda: run_vocab_ban(**common, cfg=c, baseline_path=baseline,
                                     checkpoint_dir=str(tmp_path / "ckpt/ban"), out_metrics=str(tmp_path / "ban.json"))

    def changed(section, **values):
        return {**cfg, section: {**cfg[section], **values}}

    assert _count(generate_calls, base(cfg)) == 1 and _count(generate_calls, base(cfg)) == 0
    assert _count(generate_calls, base(changed("eval", temperature=0.7))) == 1
    assert _count(generate_calls, base(cfg)) == 1
    assert _count(generate_calls, steer(cfg)) == 1 and _count(generate_calls, steer(cfg)) == 0
    assert _count(generate_calls, steer(changed("steering", gamma=3.0))) == 1
    assert _count(generate_calls, steer(changed("steering", gamma=3.0), f_max=2.5)) == 1
    assert _count(generate_calls, steer(changed("steering", gamma=3.0, positions="generated"), f_max=2.5)) == 1
    assert _count(generate_calls, steer(changed("eval", max_new_tokens=3))) == 1
    assert _count(generate_calls, steer(changed("eval", max_new_tokens=3))) == 0
    assert _count(generate_calls, ban(cfg)) == 1 and _count(generate_calls, ban(cfg)) == 0
    assert _count(generate_calls, ban(changed("ban", mode="first_token"))) == 1
    assert _count(generate_calls, ban(changed("eval", max_new_tokens=3))) == 1


def test_generations_are_keyed_by_the_content_of_the_model_files(tiny_lm_dir, toyworld_dir, tmp_path, generate_calls):
    """A model saved again unchanged (a new mtime) resumes; a model retrained in place regenerates."""
    import os
    import shutil

    from lmscalpel.models.loader import ModelRef
    from lmscalpel.reasoning.stage import run_baseline

    shutil.copytree(tiny_lm_dir, tmp_path / "model")
    weights = tmp_path / "model" / "model.safetensors"
    cfg = {"eval": {"data_files": {}, "max_problems": 2, "max_new_tokens": 3, "n_samples": 1, "temperature": 0.0,
                    "top_p": 1.0, "batch_size": 2, "chat_template": False, "add_bos": True, "thinking_end": "Answer:",
                    "stop_strings": []}, "vocabulary": None}

    def base():
        return lambda: run_baseline(model_ref=ModelRef(str(tmp_path / "model"), device="cpu"), benchmark="toyworld",
                                    toyworld_dir=str(toyworld_dir), cfg=cfg, seed=0,
                                    checkpoint_dir=str(tmp_path / "ckpt"), out_generations=str(tmp_path / "g.jsonl"),
                                    out_metrics=str(tmp_path / "m.json"))

    assert _count(generate_calls, base()) == 1
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))
    assert _count(generate_calls, base()) == 0
    model = LlamaForCausalLM.from_pretrained(tmp_path / "model")
    with torch.no_grad():
        model.model.layers[0].mlp.down_proj.weight.mul_(2.0)
    model.save_pretrained(tmp_path / "model", safe_serialization=True)
    assert _count(generate_calls, base()) == 1


# --- answers and benchmark loaders ----------------------------------------------------------------------------

def test_answer_extraction_and_normalised_match():
    assert extract_answer("so \\boxed{\\frac{1}{2}} then \\boxed{\\dfrac{3}{4}}.", "math") == "\\dfrac{3}{4}"
    assert answers_match("\\dfrac{3}{4}", "\\frac{3}{4}") and answers_match("7.0", "7") and answers_match("\\left(1,2\\right)", "(1, 2)")
    assert not answers_match("8", "7") and not answers_match(None, "7")
    assert extract_answer("no box. Answer: 12", "math") == "12" and extract_answer("nothing", "math") == "0"
    assert extract_answer("blah\nAnswer: C", "choice") == "C" and extract_answer("x\nAnswer: 41 apples", "integer") == "41"


def test_hub_benchmark_loaders_read_local_files(tmp_path):
    math_file = tmp_path / "math.jsonl"
    math_file.write_text(json.dumps({"problem": "1+1?", "answer": "2", "unique_id": "a"}) + "\n")
    problems = load_problems("math500", data_file=str(math_file))
    assert problems[0]["answer"] == "2" and "\\boxed{}" in problems[0]["prompt"] and "Problem: 1+1?" in problems[0]["prompt"]
    gpqa_file = tmp_path / "gpqa.jsonl"
    rows = [{"Question": f"Q{i}", "Correct Answer": "right", "Incorrect Answer 1": "w1", "Incorrect Answer 2": "w2",
             "Incorrect Answer 3": "w3", "Record ID": f"r{i}"} for i in range(6)]
    gpqa_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    first, second = (load_problems("gpqa_diamond", data_file=str(gpqa_file), seed=3) for _ in range(2))
    assert first == second
    for p in first:
        assert f"{p['answer']}) right" in p["prompt"]
    assert len({p["answer"] for p in first}) > 1
    with pytest.raises(ValueError, match="reasoning.eval.benchmarks"):
        load_problems("nope")


def test_gpqa_answers_are_read_as_the_released_code_reads_them():
    assert extract_answer("thinking... answer: b", "choice") == "B"  # case-insensitive 'Answer', lone lower letter
    # the text after the FIRST 'Answer:' runs to the end (one DOTALL match), not the last match
    assert extract_answer("so Answer: B, since x.\nAnswer: C", "choice") == "B"
    assert extract_answer("Answer:\n**D**) because", "choice") == "D"
    assert extract_answer("so \\boxed{\\text{A}}. Answer: C", "choice") == "A"  # \boxed comes first
    assert extract_answer("Answer: None of the above", "choice") is None
    assert extract_answer("no verdict at all", "choice") is None


def test_gpqa_choices_are_preprocessed(tmp_path):
    row = {"Question": "Q?\n", "Correct Answer": " right [1] answer ", "Incorrect Answer 1": "w1 [title] more",
           "Incorrect Answer 2": "w2", "Incorrect Answer 3": "w3", "Record ID": "r0"}
    gpqa_file = tmp_path / "gpqa.jsonl"
    gpqa_file.write_text(json.dumps(row) + "\n")
    (problem,) = load_problems("gpqa_diamond", data_file=str(gpqa_file))
    assert f"{problem['answer']}) right answer\n" in problem["prompt"] + "\n"
    assert ") w1. more" in problem["prompt"] and "[" not in problem["prompt"]
    assert "\n\nQ?\n\n\nA)" in problem["prompt"]  # the question as stored (the released template)


def test_scores_and_interpretation_on_the_toy_corpus(tiny_lm_dir, toyworld_dir, tokenizer):
    from lmscalpel.io import read_jsonl
    from lmscalpel.reasoning.interpret import interpretation_markdown, logit_lens, reasoning_share, top_contexts
    from lmscalpel.reasoning.stage import compute_reason_scores, corpus_texts

    model = LlamaForCausalLM.from_pretrained(tiny_lm_dir).eval()
    rows = pack_texts(tokenizer, corpus_texts({"path": "toyworld"}, toyworld_dir), 64, 2000)
    vocab = parse_vocabulary(None)
    sae = FoldedSAE(OrthoSAE(d=64, m=16))
    res = compute_reason_scores(model, tokenizer, sae, 0, rows, vocab, {"before": 2, "after": 3}, 0.7, 8, 5)
    assert res["acc"].n_tokens == int((~torch.isin(rows, torch.tensor(tokenizer.all_special_ids))).sum())
    assert res["group_tokens"][[v.word for v in vocab].index("let me")] > 0
    assert res["scores"].score.shape == (16,)
    latent = int(res["scores"].score.argmax())
    contexts = top_contexts(rows, res["acc"].top_values[:, latent], res["acc"].top_index[:, latent],
                            res["window_bits"], tokenizer, [v.word for v in vocab])
    assert contexts and all("**⟦" in c["markdown"] for c in contexts)
    share = reasoning_share(contexts)
    md = interpretation_markdown("t", [{"latent": latent, "score": 0.1, "entropy": 0.5, "f_max": 1.0,
                                        "share": share, "contexts": contexts,
                                        "lens": logit_lens(model, tokenizer, sae.direction(latent), 3)}])
    assert f"## Latent {latent}" in md and md.count("\n- ") == len(contexts)
    assert len(read_jsonl(toyworld_dir / "reasoning.jsonl")) == 60
