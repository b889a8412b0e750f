"""Every text stage's model-side code on Qwen2 blocks (q/k/v biases, GQA, ChatML chat template with a default
system prompt, untied embeddings), on the tiny Qwen2 of tests/tiny_qwen2.py: what the Qwen2.5 presets run."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lmscalpel.models import ModelRef, decoder_layers, load_model
from lmscalpel.models.chat import chat_prompt


@pytest.fixture(scope="module")
def qwen2(tiny_qwen2_dir):
    return load_model(ModelRef(str(tiny_qwen2_dir), device="cpu"))


def test_the_tiny_qwen2_has_what_the_real_one_has(qwen2):
    model, tok = qwen2
    assert type(model).__name__ == "Qwen2ForCausalLM" and not model.config.tie_word_embeddings
    attention = decoder_layers(model)[0].self_attn
    assert all(getattr(attention, p).bias.abs().sum() > 0 for p in ("q_proj", "k_proj", "v_proj"))
    assert attention.o_proj.bias is None and model.config.num_key_value_heads < model.config.num_attention_heads
    assert tok.convert_tokens_to_ids("<|im_start|>") not in tok.all_special_ids
    assert chat_prompt(tok, "hi").startswith("<|im_start|>system\nYou are Qwen")


def test_chatml_markers_and_role_tokens_are_left_unsteered(qwen2):
    from lmscalpel.models.intervention import skip_token_ids, steering
    from lmscalpel.steering.encoding import encode_prompts

    model, tok = qwen2
    im_start, im_end = tok.convert_tokens_to_ids(["<|im_start|>", "<|im_end|>"])
    assert {im_start, im_end, tok.pad_token_id} <= set(skip_token_ids(tok, "special"))
    prompts = ["how to pick a lock", "bake some bread for the farmer"]
    for mode in ("special", "template"):
        enc, keep = encode_prompts(tok, prompts, skip_tokens=mode)
        assert not keep[torch.isin(enc["input_ids"], torch.tensor([im_start, im_end]))].any()
    enc, keep = encode_prompts(tok, prompts, skip_tokens="template")
    assert [tok.decode(ids[k]) for ids, k in zip(enc["input_ids"], keep)] == prompts  # not system/user/assistant
    vec = torch.randn(model.config.hidden_size)
    with torch.no_grad():
        base = model(**enc, output_hidden_states=True).hidden_states[1]
        with steering(model, 0, vec, 2.0, skip_token_ids=skip_token_ids(tok, "template"), prompt_keep=keep):
            steered = model(**enc, output_hidden_states=True).hidden_states[1]
    torch.testing.assert_close(steered[~keep], base[~keep])
    torch.testing.assert_close(steered[keep], base[keep] + 2.0 * vec, rtol=1e-5, atol=1e-5)


def test_steered_generation_with_the_shared_system_prompt_is_row_independent(qwen2):
    from lmscalpel.steering.generation import generate_steered

    model, tok = qwen2
    prompts = ["how to pick a lock", "bake"]
    vecs = torch.randn(2, model.config.hidden_size)
    kw = dict(layer=1, max_new_tokens=4, skip_tokens="template")
    batched = generate_steered(model, tok, prompts, vecs, [3.0, 3.0], **kw)
    assert batched == [generate_steered(model, tok, [p], v[None], [3.0], **kw)[0] for p, v in zip(prompts, vecs)]
    assert batched != generate_steered(model, tok, prompts, vecs, [0.0, 0.0], **kw)


def test_greedy_generation_and_coherence_scores(qwen2):
    from lmscalpel.models.generation import generate_greedy
    from lmscalpel.steering.judges import CoherenceScorer

    model, tok = qwen2
    prompts = ["How do I bake bread?", "Tell me how to fold a shirt, please, with care."]
    replies = generate_greedy(model, tok, prompts, 5, batch_size=2)
    assert replies == [generate_greedy(model, tok, [p], 5, batch_size=1)[0] for p in prompts]
    reply = "the farmer walked to the river"
    [score] = CoherenceScorer(model, tok)([prompts[0]], [reply])
    prefix = tok(chat_prompt(tok, prompts[0]), add_special_tokens=False)["input_ids"]
    ids = tok(reply, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logp = model(input_ids=torch.tensor([prefix + ids])).logits[0, len(prefix) - 1:-1].log_softmax(-1)
    assert score == pytest.approx(logp.gather(-1, torch.tensor(ids)[:, None]).mean().item(), abs=1e-4)


def test_activation_cache_reads_qwen2_blocks(qwen2, toyworld_dir, tmp_path):
    from lmscalpel.cache import ActivationReader, CacheSpec, cache_activations
    from lmscalpel.data.text import iter_texts, iter_token_blocks

    model, tok = qwen2
    spec = CacheSpec(layers=[0], hook="resid_post", context_length=32, n_tokens=320, shard_tokens=320, batch_size=4,
                     out_dirs=[tmp_path / "layer0"], provenance={"model": "tiny-qwen2"})
    texts = lambda: iter_texts({"path": "toyworld"}, toyworld_dir, default_split="train")  # noqa: E731
    cache_activations(model, tok, texts(), spec)
    acts = ActivationReader(tmp_path / "layer0", verify=True).read_all()
    block = torch.tensor([next(iter_token_blocks(texts(), tok, 32))])
    with torch.no_grad():
        hidden = model(input_ids=block, output_hidden_states=True).hidden_states[1][0]
    keep = ~torch.isin(block[0], torch.tensor(tok.all_special_ids))
    torch.testing.assert_close(acts[: int(keep.sum())], hidden[keep], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("hook", ["resid_post", "mlp_in"])
def test_sae_core_metrics_splice_into_qwen2_blocks(qwen2, hook):
    from test_sae_metrics import identity_sae

    from lmscalpel.sae.metrics import model_metrics

    model, tok = qwen2
    special = set(tok.all_special_ids)
    ordinary = [i for i in range(len(tok)) if i not in special]
    gen = torch.Generator().manual_seed(0)
    blocks = [[ordinary[j] for j in torch.randint(len(ordinary), (16,), generator=gen).tolist()] for _ in range(3)]
    out = model_metrics(model, identity_sae(model.config.hidden_size), layer=1, hook=hook, blocks=blocks,
                        special_ids=tok.all_special_ids, batch_size=2)
    assert out["ce_loss_recovered"] == pytest.approx(1.0, abs=1e-3) and out["fvu"] == pytest.approx(0.0, abs=1e-6)


def test_pruning_targets_every_qwen2_projection_and_keeps_the_biases(qwen2):
    from lmscalpel.pruning import activation_pruning
    from lmscalpel.pruning.masks import keep_mask
    from lmscalpel.pruning.pruner import DEFAULT_TARGETS, find_target_modules

    model, tok = qwen2
    assert len(find_target_modules(model)) == len(DEFAULT_TARGETS) * len(decoder_layers(model))
    q_proj = decoder_layers(model)[0].self_attn.q_proj
    seen = {}
    handle = q_proj.register_forward_hook(lambda m, args, out: seen.update(x=args[0], y=out))
    ids = tok(chat_prompt(tok, "how to bake bread"), add_special_tokens=False, return_tensors="pt")["input_ids"]
    try:
        with torch.no_grad(), activation_pruning(model, "2:4", targets=("q_proj", "k_proj", "v_proj")):
            model(input_ids=ids)
    finally:
        handle.remove()
    x = seen["x"]  # already pruned: at most 2 of every 4 inputs kept
    assert (x.reshape(*x.shape[:-1], -1, 4) != 0).sum(-1).max() <= 2
    torch.testing.assert_close(seen["y"], F.linear(x * keep_mask(x.abs(), "2:4"), q_proj.weight, q_proj.bias))


def test_model_card_of_a_qwen2_model(tiny_qwen2_dir, toyworld_dir, tmp_path):
    from lmscalpel.io import read_json
    from lmscalpel.models.card import write_model_card

    cfg = {"max_new_tokens": 3, "n_eval_per_family": 2, "min_refusal_rate": 0.95, "min_benign_compliance": 0.9,
           "perplexity": {"dataset": None, "window": 16, "max_windows": 2}}
    write_model_card(ModelRef(str(tiny_qwen2_dir), device="cpu"), {"chat_eval": str(toyworld_dir / "chat_eval.jsonl"),
                     "narrative_heldout": str(toyworld_dir / "narrative_heldout.jsonl")}, tmp_path / "card.json", cfg,
                     window=16, toy_model=False, markers="arditi")
    card = read_json(tmp_path / "card.json")
    assert card["n_layers"] == 2 and card["d_model"] == 64 and 0 <= card["refusal_rate"] <= 1
    assert card["heldout_perplexity"] > 1 and card["perplexity_windows"] == 2


@pytest.fixture(scope="module")
def qwen2_bf16(tiny_qwen2_dir):
    return load_model(ModelRef(str(tiny_qwen2_dir), device="cpu", dtype="bfloat16"))


def test_bfloat16_weights_through_the_stages_model_side_code(qwen2, qwen2_bf16, toyworld_dir, tmp_path):
    """model.dtype bfloat16 on a CPU: hooks act on bf16 streams, SAEs and statistics stay fp32, scores are fp32
    and within bf16's rounding of the fp32 model's."""
    from test_sae_metrics import identity_sae

    from lmscalpel.cache import ActivationReader, CacheSpec, cache_activations
    from lmscalpel.data.text import iter_texts
    from lmscalpel.models.generation import generate_greedy, windowed_perplexity
    from lmscalpel.models.intervention import skip_token_ids, steering
    from lmscalpel.sae.metrics import model_metrics
    from lmscalpel.steering.directions import mean_activation_norm
    from lmscalpel.steering.encoding import encode_prompts
    from lmscalpel.steering.generation import generate_steered
    from lmscalpel.steering.judges import CoherenceScorer

    (model, tok), (half, _) = qwen2, qwen2_bf16
    assert next(half.parameters()).dtype == torch.bfloat16
    texts = lambda: iter_texts({"path": "toyworld"}, toyworld_dir, default_split="train")  # noqa: E731
    acts = {}
    for name, m in (("fp32", model), ("bf16", half)):
        spec = CacheSpec(layers=[1], hook="resid_post", context_length=32, n_tokens=320, shard_tokens=320,
                         batch_size=4, out_dirs=[tmp_path / name], provenance={"model": name})
        cache_activations(m, tok, texts(), spec)
        acts[name] = ActivationReader(tmp_path / name).read_all()
    assert acts["bf16"].dtype == torch.float32
    torch.testing.assert_close(acts["bf16"], acts["fp32"], rtol=0.05, atol=0.05)
    blocks = [list(range(3, 19)), list(range(20, 36))]
    metrics = model_metrics(half, identity_sae(64), layer=1, hook="resid_post", blocks=blocks,
                            special_ids=tok.all_special_ids)
    assert metrics["ce_loss_recovered"] == pytest.approx(1.0, abs=0.02)
    prompts = ["how to pick a lock", "bake some bread"]
    enc, keep = encode_prompts(tok, prompts, skip_tokens="template")
    vec = torch.randn(64)
    with torch.no_grad():
        base = half(**enc, output_hidden_states=True).hidden_states[1]
        with steering(half, 0, vec, 2.0, skip_token_ids=skip_token_ids(tok, "template"), prompt_keep=keep):
            steered = half(**enc, output_hidden_states=True).hidden_states[1]
    assert steered.dtype == torch.bfloat16 and torch.equal(steered[~keep], base[~keep])
    torch.testing.assert_close(steered[keep].float(), base[keep].float() + 2.0 * vec, rtol=0.02, atol=0.05)
    assert mean_activation_norm(half, tok, prompts, 1, skip_tokens="template") == pytest.approx(
        mean_activation_norm(model, tok, prompts, 1, skip_tokens="template"), rel=0.02)
    kw = dict(layer=1, max_new_tokens=4, skip_tokens="template")
    assert len(generate_steered(half, tok, prompts, torch.randn(2, 64), [2.0, 2.0], **kw)) == 2
    replies = generate_greedy(model, tok, prompts, 4)
    scores = {name: CoherenceScorer(m, tok)(prompts, replies) for name, m in (("fp32", model), ("bf16", half))}
    assert all(isinstance(s, float) for s in scores["bf16"])
    assert scores["bf16"] == pytest.approx(scores["fp32"], abs=0.05)
    narrative = ["The farmer walked to the river and the sun went down."] * 6
    assert windowed_perplexity(half, tok, narrative, 16)["perplexity"] == pytest.approx(
        windowed_perplexity(model, tok, narrative, 16)["perplexity"], rel=0.02)
