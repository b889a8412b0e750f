"""Core metrics: reconstruction statistics by hand, max-cosine, and CE/KL with the SAE spliced into a tiny Llama."""

import json

import pytest
import torch

from lmscalpel.io import read_json, read_jsonl
from lmscalpel.sae import build_sae, save_sae
from lmscalpel.sae.metrics import ReconstructionStats, geometry_metrics, max_cosine, model_metrics


def test_reconstruction_stats_match_hand_computation():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(40, 5, generator=gen) + 3.0
    x_hat = x + 0.3 * torch.randn(40, 5, generator=gen)
    f = torch.zeros(40, 6)
    f[:, 0] = 1.0  # always on
    f[:4, 1] = 2.0  # density 0.1 exactly: > 1% but not > 10%
    stats = ReconstructionStats(d_sae=6)
    stats.update(x[:20], x_hat[:20], f[:20])
    stats.update(x[20:], x_hat[20:], f[20:])
    out = stats.result()
    rss = (x - x_hat).pow(2).sum()
    assert out["fvu"] == pytest.approx(float(rss / (x - x.mean(0)).pow(2).sum()), rel=1e-6)
    legacy = torch.cat([1 - (b - bh).pow(2).sum(-1) / (b - b.mean(0)).pow(2).sum(-1)
                        for b, bh in [(x[:20], x_hat[:20]), (x[20:], x_hat[20:])]]).mean()
    assert out["explained_variance_legacy_per_token"] == pytest.approx(float(legacy), rel=1e-6)
    saebench = 1 - float((x - x_hat).pow(2).sum(-1).mean()) / (float(x.pow(2).sum(-1).mean())
                                                              - float(x.pow(2).mean()) ** 2)
    assert out["explained_variance_saebench"] == pytest.approx(saebench, rel=1e-6)
    assert out["explained_variance_saebench"] != pytest.approx(1 - out["fvu"], rel=1e-3)  # not a centred variance
    assert out["l0"] == pytest.approx(1.1) and out["l1"] == pytest.approx(1.2)
    assert out["dead_fraction"] == pytest.approx(4 / 6)
    assert out["dense_fraction_over_1pct"] == pytest.approx(2 / 6)
    assert out["dense_fraction_over_10pct"] == pytest.approx(1 / 6)


def test_max_cosine_matches_brute_force():
    rows = torch.randn(37, 6, generator=torch.Generator().manual_seed(1))
    unit = rows / rows.norm(dim=-1, keepdim=True)
    sims = unit @ unit.t() - 10 * torch.eye(37)
    assert torch.allclose(max_cosine(rows, block=8), sims.max(-1).values, atol=1e-6)
    geo = geometry_metrics(build_sae("topk", {"d_in": 4, "d_sae": 4, "k": 1}), thresholds=(0.5,))
    assert geo["mean_max_cos_decoder"] <= 1 and "distinct_decoder_latents_below_0.5" in geo


def identity_sae(d: int):
    """ReLU SAE with W_enc = [I, −I], W_dec = [I; −I]: relu(x) − relu(−x) = x exactly."""
    sae = build_sae("relu", {"d_in": d, "d_sae": 2 * d})
    eye = torch.eye(d)
    with torch.no_grad():
        sae.W_enc.copy_(torch.cat([eye, -eye], 1))
        sae.W_dec.copy_(torch.cat([eye, -eye], 0))
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    return sae


@pytest.fixture(scope="module")
def tiny_model(tiny_lm_dir):
    from lmscalpel.models import ModelRef, load_model

    return load_model(ModelRef(str(tiny_lm_dir), device="cpu"))


def plain_blocks(tokenizer, n=4, length=16):
    special = set(tokenizer.all_special_ids)
    ids = [i for i in range(len(tokenizer)) if i not in special]
    gen = torch.Generator().manual_seed(0)
    return [[ids[j] for j in torch.randint(len(ids), (length,), generator=gen).tolist()] for _ in range(n)]


def test_perfect_sae_recovers_all_loss_and_zero_sae_none(tiny_model):
    model, tokenizer = tiny_model
    blocks = plain_blocks(tokenizer)
    perfect = model_metrics(model, identity_sae(64), layer=0, hook="resid_post", blocks=blocks,
                            special_ids=tokenizer.all_special_ids, batch_size=3)
    assert perfect["ce_loss_with_sae"] == pytest.approx(perfect["ce_loss_clean"], abs=1e-4)
    assert perfect["ce_loss_recovered"] == pytest.approx(1.0, abs=1e-3)
    assert perfect["kl_div_with_sae"] == pytest.approx(0.0, abs=1e-5) and perfect["kl_div_zero_ablation"] > 0
    assert perfect["fvu"] == pytest.approx(0.0, abs=1e-6) and perfect["n_tokens"] == 64
    zero = identity_sae(64)
    with torch.no_grad():
        zero.W_dec.zero_()
    out = model_metrics(model, zero, layer=1, hook="resid_post", blocks=blocks,
                        special_ids=tokenizer.all_special_ids, batch_size=4)
    assert out["ce_loss_with_sae"] == pytest.approx(out["ce_loss_zero_ablation"], abs=1e-4)
    assert out["ce_loss_recovered"] == pytest.approx(0.0, abs=1e-3)
    assert out["kl_div_score"] == pytest.approx(0.0, abs=1e-3)
    mlp = model_metrics(model, identity_sae(64), layer=1, hook="mlp_in", blocks=blocks,
                        special_ids=tokenizer.all_special_ids)
    assert mlp["ce_loss_recovered"] == pytest.approx(1.0, abs=1e-3)


def test_ce_and_kl_leave_out_special_token_positions(tiny_model):
    """SAEBench drops BOS/EOS/pad positions from CE (by the predicting token) and KL averages."""
    model, tokenizer = tiny_model
    blocks = plain_blocks(tokenizer, n=3, length=12)
    for row in blocks:
        row[0] = tokenizer.bos_token_id
    blocks[1][5], blocks[2][-2:] = tokenizer.eos_token_id, [tokenizer.pad_token_id] * 2
    ids = torch.tensor(blocks)
    keep = ~torch.isin(ids, torch.tensor(tokenizer.all_special_ids))
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    ce = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), ids[:, 1:], reduction="none")
    zero = identity_sae(64)
    with torch.no_grad():
        zero.W_dec.zero_()
    out = model_metrics(model, zero, layer=0, hook="resid_post", blocks=blocks,
                        special_ids=tokenizer.all_special_ids, batch_size=2)
    assert out["n_ce_tokens"] == int(keep[:, :-1].sum()) == 3 * 11 - 3 - 1 - 1  # BOS x3, EOS, first pad
    assert out["ce_loss_clean"] == pytest.approx(float(ce[keep[:, :-1]].mean()), rel=1e-5)
    assert out["ce_loss_clean"] != pytest.approx(float(ce.mean()), rel=1e-3)
    assert out["n_tokens"] == int(keep.sum())


def test_run_core_metrics_writes_flat_json_with_provenance(tiny_lm_dir, toyworld_dir, tmp_path):
    from lmscalpel.models import ModelRef
    from lmscalpel.sae.stage import run_core_metrics

    sae = build_sae("batchtopk", {"d_in": 64, "d_sae": 128, "k": 4}, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        sae.threshold.fill_(0.05)
    save_sae(sae, tmp_path / "layer1-batchtopk-w128-k4", {"layer": 1, "hook_name": "blocks.1.hook_resid_post"})
    texts = [r["text"] for r in read_jsonl(toyworld_dir / "narrative_heldout.jsonl")]
    out = tmp_path / "core_metrics.json"
    run_core_metrics(tmp_path / "layer1-batchtopk-w128-k4", out, ModelRef(str(tiny_lm_dir), device="cpu"),
                     {"context_length": 32, "batch_size": 4, "max_sequences": 6}, "resid_post", texts,
                     "narrative_heldout.jsonl", seed=0)
    result = read_json(out)
    assert result["architecture"] == "batchtopk" and result["layer"] == 1 and result["k"] == 4
    assert result["eval_sequences"] <= 6 and result["n_tokens"] > 0
    assert all(not isinstance(v, (dict, list)) for v in result.values())  # flat
    for key in ("l0", "fvu", "ce_loss_recovered", "kl_div_with_sae", "dead_fraction", "mean_max_cos_decoder",
                "explained_variance_saebench", "model", "sae_path"):
        assert key in result
    assert json.loads(out.read_text())["batchtopk_threshold"] == pytest.approx(0.05)
