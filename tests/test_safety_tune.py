"""Safety tune (issue 14 item 3): LoRA SFT to refusals, merged and saved; resumable; gated on held-out refusal."""

from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import load_file

from lmscalpel.io import read_json, read_jsonl
from lmscalpel.models import ModelRef, load_model
from lmscalpel.safety.stage import perplexity_texts, safety_tune
from lmscalpel.safety.tune import (DEFAULT_REFUSALS, SafetyTuneGateError, collate, encode_example, sft_loss,
                                   shared_prompt_length)
from lmscalpel.models.refusal import ARDITI_REFUSAL_MARKERS
from lmscalpel.toyworld.judge import is_refusal
from lmscalpel.workflow import mock_snakemake

from conftest import REPO_ROOT

# epochs 4: the tiny random model's benign answers are mostly empty and have nothing to train on, so an epoch is 2 steps
FAST = {"r": 8, "alpha": 16, "learning_rate": 1e-2, "batch_size": 16, "epochs": 4, "answer_max_new_tokens": 6,
        "eval_max_new_tokens": 6, "checkpoint_every": 2, "min_refusal_rate": 0.0, "max_benign_compliance_drop": 1.0,
        "perplexity": {"window": 32}}  # the gates have their own test


def run(tiny_lm_dir, toyworld_dir, tmp_path, name, **overrides):
    return safety_tune(ModelRef(str(tiny_lm_dir)), chat_eval=toyworld_dir / "chat_eval.jsonl",
                       ppl_texts=perplexity_texts({}, toyworld_dir / "narrative_heldout.jsonl"),
                       out_dir=tmp_path / name / "model", card_path=tmp_path / name / "card.json",
                       cfg={**FAST, **overrides.pop("cfg", {})}, seed=0, checkpoint_dir=tmp_path / name / "ckpt",
                       **overrides)


def test_default_refusals_read_as_refusals_by_both_keyword_judges():
    for text in DEFAULT_REFUSALS:
        assert is_refusal(text)
        assert any(m.lower() in text.lower() for m in ARDITI_REFUSAL_MARKERS), text


def test_encode_masks_the_prompt_and_ends_only_finished_replies(tiny_lm_dir):
    _, tok = load_model(ModelRef(str(tiny_lm_dir)))
    ids, labels = encode_example(tok, "how to bake bread", "Sure, mix flour", finished=True)
    n_prompt = sum(label == -100 for label in labels)
    assert n_prompt > 0 and labels[:n_prompt] == [-100] * n_prompt and labels[n_prompt:] == ids[n_prompt:]
    assert ids[-1] == tok.eos_token_id
    _, open_labels = encode_example(tok, "how to bake bread", "Sure, mix flour", finished=False)
    assert open_labels[-1] != tok.eos_token_id and len(open_labels) == len(labels) - 1


def test_sft_loss_gives_the_padded_batch_loss_and_gradient(tiny_lm_dir):
    """The shared-prefix, length-sorted micro-batches must train exactly what one padded forward would."""
    from peft import LoraConfig, get_peft_model

    base, tok = load_model(ModelRef(str(tiny_lm_dir)))
    torch.manual_seed(0)
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "down_proj"]))
    params = [p for p in model.parameters() if p.requires_grad]
    with torch.no_grad():
        for p in params:  # LoRA B starts at 0, which would leave A without a gradient
            p.normal_(0, 0.05)
    examples = [encode_example(tok, prompt, reply, finished) for prompt, reply, finished in [
        ("how to bake bread", "Sure, mix flour and water", True), ("hi", "Hello", False),
        ("tell me a long story about a cat and a dog", "Once upon a time a cat met a dog near the river", True)]]
    assert shared_prompt_length(examples) > 0
    reference = model(**collate(examples, tok.pad_token_id)).loss
    reference.backward()
    expected = [p.grad.clone() for p in params]
    for micro_batch_size in (1, 2, 16):
        model.zero_grad(set_to_none=True)
        loss = sft_loss(model, examples, tok.pad_token_id, micro_batch_size)
        loss.backward()
        assert loss.item() == pytest.approx(reference.item(), rel=1e-5)
        for p, g in zip(params, expected):
            torch.testing.assert_close(p.grad, g, rtol=1e-4, atol=1e-6)


@torch.no_grad()
def refusal_nll(model_dir, toyworld_dir) -> float:
    """Teacher-forced loss of a refusal after each held-out harmful prompt (what the tune should make likely)."""
    model, tok = load_model(ModelRef(str(model_dir)))
    prompts = [r["prompt"] for r in read_jsonl(toyworld_dir / "chat_eval.jsonl")
               if r["kind"] == "harmful" and r["split"] == "heldout"]
    losses = []
    for prompt in prompts:
        ids, labels = encode_example(tok, prompt, DEFAULT_REFUSALS[0], finished=True)
        losses.append(model(input_ids=torch.tensor([ids]), labels=torch.tensor([labels])).loss.item())
    return sum(losses) / len(losses)


@pytest.fixture(scope="module")
def tuned(tiny_lm_dir, toyworld_dir, tmp_path_factory):
    """One uninterrupted tune: (card, run directory)."""
    root = tmp_path_factory.mktemp("safety")
    return run(tiny_lm_dir, toyworld_dir, root, "full"), root / "full"


def test_safety_tune_teaches_refusal_and_saves_a_merged_model(tiny_lm_dir, toyworld_dir, tuned):
    card, out = tuned
    assert refusal_nll(out / "model", toyworld_dir) < refusal_nll(tiny_lm_dir, toyworld_dir) - 0.5
    assert {"refusal_rate", "benign_compliance", "test_perplexity"} <= set(card["before"]) & set(card["after"])
    assert read_json(out / "card.json")["after"] == card["after"]
    weights = load_file(out / "model" / "model.safetensors")
    assert not any("lora" in k for k in weights)
    base = load_file(tiny_lm_dir / "model.safetensors")
    changed = [k for k in base if "proj" in k and not torch.equal(base[k], weights[k])]
    assert changed, "the merged LoRA update must change the projections"
    model, tok = load_model(ModelRef(str(out / "model")))
    assert model.config.num_hidden_layers == 2 and tok.chat_template


def test_killed_safety_tune_resumes_to_the_same_weights(tiny_lm_dir, toyworld_dir, tmp_path, tuned):
    assert run(tiny_lm_dir, toyworld_dir, tmp_path, "killed", stop_after=3) is None
    assert not (tmp_path / "killed" / "model").exists()
    resumed = run(tiny_lm_dir, toyworld_dir, tmp_path, "killed")
    assert resumed["resumed_from_step"] == 2  # last checkpoint before the kill (checkpoint_every 2)
    straight, out = tuned
    a = load_file(tmp_path / "killed" / "model" / "model.safetensors")
    b = load_file(out / "model" / "model.safetensors")
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert resumed["after"]["refusal_rate"] == straight["after"]["refusal_rate"]
    (tmp_path / "killed" / "card.json").unlink()  # a kill after the last checkpoint, before the outputs
    again = run(tiny_lm_dir, toyworld_dir, tmp_path, "killed")
    steps = math.ceil(again["n_train"] / FAST["batch_size"]) * FAST["epochs"]
    assert again["resumed_from_step"] == steps and again["final_loss"] is None
    assert (tmp_path / "killed" / "card.json").exists()


def test_safety_tune_fails_loudly_below_min_refusal_rate(tiny_lm_dir, toyworld_dir, tmp_path):
    weak = {"learning_rate": 1e-7, "epochs": 1, "min_refusal_rate": 1.0}
    with pytest.raises(SafetyTuneGateError, match="safety_tune.min_refusal_rate"):
        run(tiny_lm_dir, toyworld_dir, tmp_path, "weak", cfg=weak)
    assert not (tmp_path / "weak" / "model").exists() and not (tmp_path / "weak" / "card.json").exists()
    # a lower gate keeps what was learnt (the gate is no key of the checkpoint); a changed learning rate does not
    kept = run(tiny_lm_dir, toyworld_dir, tmp_path, "weak", cfg={**weak, "min_refusal_rate": 0.0})
    assert kept["resumed_from_step"] == math.ceil(kept["n_train"] / FAST["batch_size"]) and kept["final_loss"] is None
    assert run(tiny_lm_dir, toyworld_dir, tmp_path, "weak", cfg={**weak, "learning_rate": 1e-6}, stop_after=1) is None


def test_a_tune_that_refuses_everything_fails_the_benign_gate():
    from lmscalpel.safety.tune import SafetyTuneConfig, gate_failure

    cfg = SafetyTuneConfig()
    before = {"refusal_rate": 0.17, "benign_compliance": 0.83}
    assert gate_failure(before, {"refusal_rate": 0.96, "benign_compliance": 0.83}, cfg) is None
    assert "min_refusal_rate" in gate_failure(before, {"refusal_rate": 0.5, "benign_compliance": 0.83}, cfg)
    assert "max_benign_compliance_drop" in gate_failure(before, {"refusal_rate": 1.0, "benign_compliance": 0.0}, cfg)


def test_enabled_safety_tune_feeds_every_later_stage(tmp_path, monkeypatch):
    for name in ("Snakefile", "workflow", "config.yaml"):
        (tmp_path / name).symlink_to(REPO_ROOT / name)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "on.yaml").write_text("safety_tune: {enabled: true}\n")
    assert mock_snakemake("safety_tune", ["on.yaml"]).input.model == "results/toy/model/toy-llama"
    for rule, wildcards in (("steering_setup", {"layer": "1"}), ("cache_activations", {}),
                            ("model_card", {})):
        tuned = mock_snakemake(rule, ["on.yaml"], **wildcards)
        assert tuned.input.model == "results/toy/model/safety-tuned", rule
    assert mock_snakemake("steering_setup", layer="1").input.model == "results/toy/model/toy-llama"
