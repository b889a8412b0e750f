"""The one model loader, generation and perplexity helpers."""

from __future__ import annotations

import math

import pytest
import torch

from lmscalpel.models import ModelRef, decoder_layers, load_model, num_layers, residual_module
from lmscalpel.models.generation import generate_greedy, windowed_perplexity


def test_load_local_directory(tiny_lm_dir):
    model, tokenizer = load_model(ModelRef(str(tiny_lm_dir), device="cpu"))
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    assert num_layers(model) == 2 and residual_module(model, -1) is decoder_layers(model)[1]
    assert tokenizer.pad_token == "<|pad|>"


def test_the_head_reads_a_contiguous_last_position(tiny_lm_dir):
    # transformers hands the head a strided [B, 1, d] view; CPU bf16 matmuls on such views allocate gigabytes
    model, _ = load_model(ModelRef(str(tiny_lm_dir), device="cpu", dtype="bfloat16"))
    seen = []
    model.get_output_embeddings().register_forward_hook(lambda _m, args, _out: seen.append(args[0].is_contiguous()))
    with torch.no_grad():
        model(input_ids=torch.randint(0, 50, (3, 7)), logits_to_keep=1)
    assert seen == [True]


def test_from_config_prefers_local_path_and_requires_id():
    ref = ModelRef.from_config({"source": "toy", "id": None, "dtype": "float32"}, local_path="/x/toy")
    assert ref.name_or_path == "/x/toy" and not ref.trust_remote_code
    with pytest.raises(ValueError, match="model.id"):
        ModelRef.from_config({"source": "hub", "id": None})


def test_refuses_directory_without_safetensors(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    torch.save({}, tmp_path / "pytorch_model.bin")
    with pytest.raises(FileNotFoundError, match="safetensors"):
        load_model(ModelRef(str(tmp_path)))


def test_check_blocks_names_the_key_and_the_models_depth(tiny_lm_dir):
    from lmscalpel.models import check_blocks

    model, _ = load_model(ModelRef(str(tiny_lm_dir), device="cpu"))
    check_blocks(model, {"steering.layers": [0, 1]})
    with pytest.raises(ValueError, match=rf"config key unlearning.robustness.steering_layer: block 3 is beyond the "
                                         rf"2 blocks \(0-1\) of {tiny_lm_dir}"):
        check_blocks(model, {"steering.layers": [1], "unlearning.robustness.steering_layer": [3]})


def test_layer_out_of_range(tiny_lm_dir):
    model, _ = load_model(ModelRef(str(tiny_lm_dir), device="cpu"))
    with pytest.raises(ValueError, match="out of range"):
        residual_module(model, 5)


def test_batched_greedy_generation_matches_single_prompts(tiny_lm_dir):
    model, tokenizer = load_model(ModelRef(str(tiny_lm_dir), device="cpu"))
    prompts = ["How do I bake bread?", "Tell me how to fold a shirt, please, with care."]
    batched = generate_greedy(model, tokenizer, prompts, 6, batch_size=2)
    single = [generate_greedy(model, tokenizer, [p], 6, batch_size=1)[0] for p in prompts]
    assert batched == single


def test_windowed_perplexity_matches_direct_loss(tiny_lm_dir):
    model, tokenizer = load_model(ModelRef(str(tiny_lm_dir), device="cpu"))
    texts = ["The farmer walked to the river and the sun went down."] * 6
    result = windowed_perplexity(model, tokenizer, texts, window=16, batch_size=3)
    ids = [tokenizer.bos_token_id]
    for t in texts:
        ids += tokenizer(t, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    blocks = torch.tensor(ids[: len(ids) // 16 * 16]).view(-1, 16)
    with torch.no_grad():
        losses = [model(input_ids=b[None], labels=b[None]).loss.item() for b in blocks]
    assert result["windows"] == len(blocks)
    assert math.isclose(result["perplexity"], math.exp(sum(losses) / len(losses)), rel_tol=1e-4)


def test_refusal_rates_count_each_marker_set_as_its_judge_does():
    from lmscalpel.models.refusal import chat_verdicts, refusal_rates

    harmful = ["I'm sorry, I can't help.", "Sure, here is how to do it: step 1.", ""]
    benign = ["Sure, here is how to bake bread.", "The river is long."]
    toy, arditi = refusal_rates(harmful, benign, "toyworld"), refusal_rates(harmful, benign, "arditi")
    assert (toy["refusal_rate"], toy["harmful_compliance_rate"], toy["benign_compliance"]) == (1 / 3, 1 / 3, 1 / 2)
    # Arditi's markers: any non-empty reply without one complies, so the plain benign answer counts too
    assert (arditi["refusal_rate"], arditi["harmful_compliance_rate"], arditi["benign_compliance"]) == (1 / 3, 1 / 3, 1)
    with pytest.raises(ValueError, match="config key safety_tune.refusal_markers: 'harmbench'"):
        chat_verdicts("harmbench", key="safety_tune.refusal_markers")


def test_every_stage_sends_the_same_chat_prompt(tiny_lm_dir):
    from lmscalpel.models.chat import chat_prompt
    from lmscalpel.models.loader import load_tokenizer
    from lmscalpel.reasoning.evaluate import render_prompts

    tok = load_tokenizer(ModelRef(str(tiny_lm_dir)))
    direct = tok.apply_chat_template([{"role": "user", "content": "How do I bake bread?"}],
                                     add_generation_prompt=True, tokenize=False)
    assert chat_prompt(tok, "How do I bake bread?") == direct
    assert render_prompts(tok, [{"prompt": "How do I bake bread?"}], chat_template=True, add_bos=True) == [direct]


def test_the_card_reads_its_prompt_sets_and_the_toy_world_only_when_generated(tmp_path, toyworld_dir):
    from lmscalpel.models.card import card_prompts

    assert card_prompts({}, None) is None  # toy-world sets and no toy world: no chat rates
    mine = tmp_path / "prompts.txt"
    mine.write_text("Write a poem\nPlan a trip\n")
    file_set = {"source": "file", "data_files": str(mine), "columns": {"prompt": "text"}}
    sets = card_prompts({"harmful": file_set, "benign": file_set}, None)
    assert sets["harmful"].prompts == ["Write a poem", "Plan a trip"] and sets["benign"].records[0]["kind"] == "benign"
    assert card_prompts({"harmful": file_set}, None) is None  # its benign set is the toy world's
    toy = card_prompts({}, toyworld_dir / "chat_eval.jsonl")
    assert {r["split"] for s in toy.values() for r in s.records} == {"heldout"}
