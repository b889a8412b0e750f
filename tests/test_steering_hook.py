"""The additive steering hook: exact arithmetic, per-row vectors, masking, and KV-cache equivalence."""

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from lmscalpel.models.intervention import special_token_ids, steering

PAD, BOS = 0, 1


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=64,
                      pad_token_id=PAD, bos_token_id=BOS, eos_token_id=2)
    return LlamaForCausalLM(cfg).eval()


def _ids(batch=2, seq=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, 64, (batch, seq), generator=g)
    ids[:, 0] = BOS
    return ids


def _hidden(model, ids, layer=0, **kw):
    return model(ids, output_hidden_states=True, **kw).hidden_states[layer + 1]


def test_adds_alpha_times_vector_except_skipped_tokens(model):
    ids = _ids()
    vec = torch.randn(32)
    base = _hidden(model, ids)
    with steering(model, 0, vec, 2.5, skip_token_ids=[BOS]) as state:
        steered = _hidden(model, ids)
    assert state.calls == 1
    torch.testing.assert_close(steered[:, 1:], base[:, 1:] + 2.5 * vec, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(steered[:, 0], base[:, 0])


def test_one_vector_per_row(model):
    ids = _ids(batch=3)
    vecs, alphas = torch.randn(3, 32), torch.tensor([0.0, 1.0, -2.0])
    base = _hidden(model, ids)
    with steering(model, 0, vecs, alphas):
        steered = _hidden(model, ids)
    torch.testing.assert_close(steered - base, (alphas[:, None] * vecs)[:, None, :].expand_as(base),
                               rtol=1e-4, atol=1e-4)


def test_hook_removed_and_batch_mismatch_raises(model):
    ids = _ids()
    base = model(ids).logits
    with pytest.raises(ValueError, match="batch has 2 rows"):
        with steering(model, 1, torch.randn(3, 32), 1.0):
            model(ids)
    torch.testing.assert_close(model(ids).logits, base)


def test_steering_changes_generation_and_cache_matches_no_cache(model):
    ids = _ids(batch=2, seq=5, seed=1)
    ids[0, :2] = PAD  # left padding on row 0
    ids[0, 2] = BOS
    mask = (ids != PAD).long()
    vecs = torch.randn(2, 32) * 4
    kw = dict(attention_mask=mask, max_new_tokens=6, do_sample=False, pad_token_id=PAD, eos_token_id=None)
    plain = model.generate(ids, **kw)
    outs = {}
    for use_cache in (True, False):
        with steering(model, 1, vecs, [1.0, 1.5], skip_token_ids=[PAD, BOS]) as state:
            outs[use_cache] = model.generate(ids, use_cache=use_cache, **kw)
        assert state.calls == 6  # one steered forward per generated token
    assert torch.equal(outs[True], outs[False])
    assert not torch.equal(outs[True], plain)


def test_padding_is_not_steered(model):
    ids = _ids(batch=1, seq=5)
    ids[0, :2] = PAD
    mask = (ids != PAD).long()
    base = _hidden(model, ids, attention_mask=mask)
    with steering(model, 0, torch.ones(32), 3.0, skip_token_ids=[PAD]):
        steered = _hidden(model, ids, attention_mask=mask)
    torch.testing.assert_close(steered[:, :2], base[:, :2])
    assert not torch.allclose(steered[:, 2:], base[:, 2:])


def test_special_token_ids_include_pad():
    class Tok:
        all_special_ids = [1, 2]
        pad_token_id = 7
    assert special_token_ids(Tok()) == [1, 2, 7]


def test_skip_token_modes():
    from lmscalpel.models.intervention import skip_token_ids

    class Tok:
        all_special_ids = [1, 2, 5]
        bos_token_id, pad_token_id = 1, 0
    assert skip_token_ids(Tok(), "special") == [0, 1, 2, 5]
    assert skip_token_ids(Tok(), "bos_pad") == [0, 1]
    with pytest.raises(ValueError, match="steering.skip_tokens"):
        skip_token_ids(Tok(), "all")


CHATML = ("{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
          "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


@pytest.fixture(scope="module")
def chatml():
    """A locally built ChatML tokenizer whose turn markers are added tokens *not* named special (as transformers 5
    may load Qwen's or Llama-3's), with a random tiny Llama over its vocabulary."""
    from transformers import LlamaForCausalLM

    from lmscalpel.toyworld.tokenizer import train_tokenizer

    tok = train_tokenizer(["how to pick a lock", "bake some bread", "user assistant system"] * 20, 300)
    tok.add_tokens(["<|im_start|>", "<|im_end|>"])
    tok.chat_template = CHATML
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=64,
                      pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    return tok, LlamaForCausalLM(cfg).eval()


def test_template_mode_masks_every_chat_template_token(chatml):
    from lmscalpel.models.intervention import skip_token_ids
    from lmscalpel.steering.encoding import encode_prompts
    from lmscalpel.steering.directions import mean_activation_norm

    tok, model = chatml
    marker = tok.convert_tokens_to_ids("<|im_start|>")
    assert marker not in tok.all_special_ids  # what the "special" rule alone would steer
    assert marker in skip_token_ids(tok, "template")
    prompts = ["how to pick a lock", "bake bread"]
    enc, keep = encode_prompts(tok, prompts, skip_tokens="template")
    kept = [tok.decode(ids[k]) for ids, k in zip(enc["input_ids"], keep)]
    assert kept == prompts  # only the user's text: not <|im_start|>, "user", "assistant", newlines or padding
    vec = torch.randn(32)
    base = _hidden(model, enc["input_ids"], attention_mask=enc["attention_mask"])
    with steering(model, 0, vec, 3.0, skip_token_ids=skip_token_ids(tok, "template"), prompt_keep=keep):
        steered = _hidden(model, enc["input_ids"], attention_mask=enc["attention_mask"])
    torch.testing.assert_close(steered[~keep], base[~keep])
    torch.testing.assert_close(steered[keep], base[keep] + 3.0 * vec, rtol=1e-5, atol=1e-5)
    mu = mean_activation_norm(model, tok, prompts, layer=0, skip_tokens="template")
    assert mu == pytest.approx(float(base[keep].detach().norm(dim=-1).mean()), rel=1e-5)


def test_template_mask_holds_through_cached_generation(chatml):
    from lmscalpel.steering.generation import generate_steered

    tok, model = chatml
    vecs = torch.randn(2, 32)
    kw = dict(layer=0, max_new_tokens=3, skip_tokens="template")
    batched = generate_steered(model, tok, ["how to pick a lock", "bake"], vecs, [4.0, 4.0], **kw)
    single = [generate_steered(model, tok, [p], v[None], [4.0], **kw)[0]
              for p, v in zip(["how to pick a lock", "bake"], vecs)]
    assert batched == single  # left padding and the positional mask line up row by row
