"""Architectures, sparse kernels and the orthogonality penalty on tiny tensors."""

import pytest
import torch

from lmscalpel.sae import build_sae
from lmscalpel.sae.base import StepContext
from lmscalpel.sae.ortsae import chunk_permutation, orthogonality_penalty
from lmscalpel.sae.sparse import select_batch_topk, select_topk, sparse_decode, sparse_encode


def dense_mask(pattern):
    mask = torch.zeros(pattern.n_rows, pattern.n_cols, dtype=torch.bool)
    mask[pattern.rows, pattern.cols] = True
    return mask


def test_topk_mask_keeps_k_largest_positive_per_token():
    pre = torch.tensor([[3.0, -1.0, 2.0, 0.5], [-2.0, -1.0, 0.2, -3.0]])
    mask = dense_mask(select_topk(pre, 2))
    assert mask.tolist() == [[True, False, True, False], [False, False, True, False]]  # negatives dropped


def test_batch_topk_mask_is_global_top_kB():
    torch.manual_seed(0)
    pre = torch.randn(12, 30)
    pre[0] += 5.0  # one token gets far more than k latents: batch top-k lets it
    pattern = select_batch_topk(pre, 3)
    ref = torch.zeros(12 * 30, dtype=torch.bool)
    ref[torch.topk(pre.relu().flatten(), 36).indices] = True
    assert torch.equal(dense_mask(pattern).flatten(), ref)
    assert pattern.nnz == 36 and int(dense_mask(pattern)[0].sum()) > 3


@pytest.mark.parametrize("select", [lambda p: select_topk(p, 4), lambda p: select_batch_topk(p, 4)])
def test_sparse_kernels_match_dense_autograd(select):
    gen = torch.Generator().manual_seed(1)
    x, w, b, wd = (torch.randn(*s, generator=gen, dtype=torch.float64, requires_grad=True)
                   for s in [(9, 6), (6, 20), (20,), (20, 6)])
    pre = (x @ w + b).detach()
    pattern = select(pre)
    out = sparse_decode(sparse_encode(x, w, b, pre, pattern), wd, pattern)
    ref = torch.where(dense_mask(pattern), x @ w + b, 0.0) @ wd
    grad_out = torch.randn(9, 6, generator=gen, dtype=torch.float64)
    got = torch.autograd.grad((out * grad_out).sum(), [x, w, b, wd])
    want = torch.autograd.grad((ref * grad_out).sum(), [x, w, b, wd])
    assert torch.allclose(out, ref)
    for g, r in zip(got, want):
        assert torch.allclose(g, r)


def test_batchtopk_inference_uses_global_threshold():
    sae = build_sae("batchtopk", {"d_in": 4, "d_sae": 6, "k": 2, "apply_b_dec_to_input": False})
    with torch.no_grad():
        sae.W_enc.copy_(torch.eye(4, 6))
        sae.threshold.fill_(0.5)
    f = sae.encode(torch.tensor([[0.4, 0.6, -1.0, 2.0]]))
    assert torch.equal(f, torch.tensor([[0.0, 0.6, 0.0, 2.0, 0.0, 0.0]]))


def test_batchtopk_threshold_tracks_smallest_kept_activation():
    sae = build_sae("batchtopk", {"d_in": 8, "d_sae": 16, "k": 2, "threshold_start_step": 1,
                                  "threshold_rate": 0.5}, generator=torch.Generator().manual_seed(0))
    x = torch.randn(32, 8, generator=torch.Generator().manual_seed(1))
    out = sae.training_step(x, StepContext(step=0, total_steps=10))
    sae.after_optimizer_step(out, StepContext(step=0, total_steps=10))
    assert not sae.threshold_is_set  # before threshold_start_step
    sae.after_optimizer_step(out, StepContext(step=1, total_steps=10))
    assert torch.allclose(sae.threshold, torch.full((16,), out.min_active))
    out.min_active, first = 0.0, out.min_active
    sae.after_optimizer_step(out, StepContext(step=2, total_steps=10))
    assert torch.allclose(sae.threshold, torch.full((16,), first / 2))


def test_batchtopk_whose_threshold_was_never_set_is_refused(tmp_path):
    """threshold_start_step beyond training leaves θ = −1: SAEBench refuses to encode; so do encode and export."""
    from lmscalpel.sae import save_sae
    from lmscalpel.sae.training import GridTrainer, TensorBatches, TrainingConfig

    sae = build_sae("batchtopk", {"d_in": 8, "d_sae": 16, "k": 2, "threshold_start_step": 1000},
                    generator=torch.Generator().manual_seed(0))
    x = torch.randn(64, 8, generator=torch.Generator().manual_seed(1))
    cfg = TrainingConfig(batch_size=16, epochs=1, scale_batches=2, geometric_median_samples=32)
    GridTrainer({"bt": (sae, 1e-3)}, cfg).fit(TensorBatches(x, 16))
    assert not sae.threshold_is_set
    with pytest.raises(RuntimeError, match="threshold_start_step"):
        sae.encode(x)
    with pytest.raises(ValueError, match="threshold_start_step"):
        save_sae(sae, tmp_path / "sae")
    assert not (tmp_path / "sae").exists()
    with pytest.raises(ValueError, match=r"threshold_start_step: 1000 >= the 4 training steps"):
        sae.check_threshold_schedule(4)
    sae.check_threshold_schedule(2000)


@pytest.mark.parametrize("arch", ["topk", "batchtopk", "ortsae"])
def test_decoder_rows_stay_unit_norm_after_a_step(arch):
    from lmscalpel.sae.training import GridTrainer, TensorBatches, TrainingConfig

    sae = build_sae(arch, {"d_in": 8, "d_sae": 32, "k": 3}, generator=torch.Generator().manual_seed(0))
    x = torch.randn(64, 8, generator=torch.Generator().manual_seed(2)) * 3
    GridTrainer({"a": (sae, 1e-2)}, TrainingConfig(batch_size=32, epochs=1, scale_batches=1)).fit(
        TensorBatches(x, 32, 0))
    assert torch.allclose(sae.W_dec.norm(dim=-1), torch.ones(32), atol=1e-5)


def test_parallel_gradient_is_removed():
    sae = build_sae("topk", {"d_in": 5, "d_sae": 7, "k": 2}, generator=torch.Generator().manual_seed(0))
    sae.W_dec.grad = torch.randn(7, 5)
    sae.remove_parallel_decoder_grad()
    assert torch.allclose((sae.W_dec.grad * sae.W_dec).sum(-1), torch.zeros(7), atol=1e-6)


def test_auxk_loss_revives_a_planted_dead_latent():
    torch.manual_seed(0)
    sae = build_sae("topk", {"d_in": 6, "d_sae": 8, "k": 1, "aux_k": 3, "aux_coefficient": 1.0,
                             "apply_b_dec_to_input": False}, generator=torch.Generator().manual_seed(0))
    x = torch.randn(64, 6)
    dead = 5
    with torch.no_grad():
        sae.b_enc.fill_(1.0)  # live latents always beat the planted one in the top-1 ...
        sae.W_enc[:, dead] = 0.0
        sae.b_enc[dead] = 0.01  # ... whose pre-activation is small but positive
    dead_mask = torch.zeros(8, dtype=torch.bool)
    dead_mask[dead] = True
    out = sae.training_step(x, StepContext(step=0, total_steps=1, dead_mask=dead_mask))
    assert not bool(out.fired[dead]) and out.stats["aux"] > 0
    out.loss.backward()
    assert sae.W_dec.grad[dead].abs().sum() > 0 and sae.b_enc.grad[dead] != 0
    sae.zero_grad()
    out = sae.training_step(x, StepContext(step=0, total_steps=1, dead_mask=torch.zeros(8, dtype=torch.bool)))
    out.loss.backward()
    assert sae.W_dec.grad[dead].abs().sum() == 0  # without AuxK the dead latent gets no gradient


def _train_with_planted_dead_latent(aux_coefficient: float):
    from lmscalpel.sae.training import GridTrainer, TensorBatches, TrainingConfig

    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2048, 8, generator=gen)
    sae = build_sae("topk", {"d_in": 8, "d_sae": 16, "k": 2, "aux_coefficient": aux_coefficient}, generator=gen)
    with torch.no_grad():
        sae.W_enc[:, 0] = 0.0  # latent 0 silent: its pre-activation is a tiny constant, never in the top-2
        sae.b_enc[0] = 0.01
        assert 0 not in torch.topk(sae.pre_activation(x), 2, dim=-1).indices
    trainer = GridTrainer({"a": (sae, 5e-3)}, TrainingConfig(batch_size=64, epochs=2, dead_window_tokens=64,
                                                            warmup_steps=0, scale_batches=1))
    trainer.fit(TensorBatches(x, 64, 0))
    with torch.no_grad():
        pre = sae.pre_activation(x * sae.activation_scale)
    return int((torch.topk(pre, 2, dim=-1).indices == 0).sum()), float(sae.W_enc[:, 0].detach().norm())


def test_auxk_training_revives_a_dead_latent():
    fires_without, enc_norm_without = _train_with_planted_dead_latent(0.0)
    fires_with, enc_norm_with = _train_with_planted_dead_latent(1.0)
    assert enc_norm_with > enc_norm_without  # AuxK trains the dead latent's encoder
    assert fires_with > 2 * fires_without


def test_orthogonality_penalty_zero_for_orthogonal_rows_and_grows_with_overlap():
    chunks = chunk_permutation(torch.arange(4), 4)
    orthogonal = torch.eye(4, 6)
    assert float(orthogonality_penalty(orthogonal, chunks)) == 0.0
    values = []
    for overlap in (0.2, 0.5, 0.9):
        rows = torch.eye(4, 6)
        rows[1] = overlap * rows[0] + (1 - overlap**2) ** 0.5 * rows[1]
        values.append(float(orthogonality_penalty(rows, chunks)))
    assert 0 < values[0] < values[1] < values[2]
    assert values[2] == pytest.approx(2 * 0.9**2 / 4, rel=1e-5)  # latents 0 and 1 each see cos 0.9
    for variant in ("max", "mean_sq", "hinge_sq"):
        assert float(orthogonality_penalty(orthogonal, chunks, variant)) == 0.0
        assert float(orthogonality_penalty(rows, chunks, variant)) > 0


def test_orthogonality_gradient_matches_full_autograd():
    rows = torch.randn(10, 5, dtype=torch.float64, requires_grad=True)
    chunks = chunk_permutation(torch.randperm(10, generator=torch.Generator().manual_seed(0)), 4)
    grad = torch.autograd.grad(orthogonality_penalty(rows, chunks), rows)[0]
    unit = rows / rows.norm(dim=-1, keepdim=True)
    total = 0
    for chunk in chunks:
        idx = chunk[chunk < 10]
        gram = unit[idx] @ unit[idx].t() - 10 * torch.eye(len(idx), dtype=torch.float64)
        total = total + torch.relu(gram.max(-1).values).pow(2).sum()
    assert torch.allclose(grad, torch.autograd.grad(total / 10, rows)[0])


def test_chunking_covers_every_latent_once():
    perm = torch.randperm(1000, generator=torch.Generator().manual_seed(0))
    chunks = chunk_permutation(perm, 256)
    assert chunks.shape == (4, 256)
    real = chunks[chunks < 1000]
    assert sorted(real.tolist()) == list(range(1000))


def test_ortsae_with_zero_gamma_is_batchtopk():
    kw = {"d_in": 8, "d_sae": 24, "k": 3}
    a = build_sae("batchtopk", kw, generator=torch.Generator().manual_seed(5))
    b = build_sae("ortsae", {**kw, "gamma": 0.0}, generator=torch.Generator().manual_seed(5))
    x = torch.randn(16, 8)
    ctx = StepContext(step=0, total_steps=1)
    assert torch.equal(a.training_step(x, ctx).loss, b.training_step(x, ctx).loss)


def test_build_sae_rejects_unknown_keys_and_architectures():
    with pytest.raises(ValueError, match="unknown config keys"):
        build_sae("topk", {"d_in": 4, "d_sae": 8, "kk": 2})
    with pytest.raises(ValueError, match="unknown SAE architecture"):
        build_sae("gated", {"d_in": 4, "d_sae": 8})


def test_unit_rows_shortcut_gives_the_same_tangent_gradient():
    rows = torch.randn(12, 5, dtype=torch.float64)
    rows = (rows / rows.norm(dim=-1, keepdim=True)).requires_grad_()
    chunks = chunk_permutation(torch.randperm(12, generator=torch.Generator().manual_seed(1)), 5)
    full = torch.autograd.grad(orthogonality_penalty(rows, chunks), rows)[0]
    short = torch.autograd.grad(orthogonality_penalty(rows, chunks, unit_rows=True), rows)[0]
    tangent = lambda g: g - (g * rows).sum(-1, keepdim=True) * rows  # noqa: E731
    assert torch.allclose(tangent(full), tangent(short))
    assert float(orthogonality_penalty(rows, chunks).detach()) == pytest.approx(
        float(orthogonality_penalty(rows, chunks, unit_rows=True).detach()))


def test_a_grid_entry_reads_its_swept_values_and_its_settings_from_their_sections():
    """Each setting comes from the section its config class names (OrtSAE inherits BatchTopK's sae.batchtopk and
    TopK's sae.train.aux_*), each swept value from the grid; the learning rate from the key the class names."""
    import yaml

    from conftest import REPO_ROOT, validated
    from lmscalpel.sae import plan
    from lmscalpel.sae.stage import build_grid
    from lmscalpel.sae.training import auto_lr

    cfg = validated({**yaml.safe_load((REPO_ROOT / "config.yaml").read_text()), "cache": {"layers": [1]}})
    cfg["sae"].update(widths=[64], relu_l1_coefficients=[2])
    cfg["sae"]["batchtopk"]["threshold_rate"] = 0.05
    cfg["sae"]["ortsae"]["chunk_size"] = 32
    cfg["sae"]["train"].update(aux_k=7, relu_lr=0.004)
    grid = build_grid(plan.layer_specs(cfg, 1), plan.train_config(cfg), d_in=8, seed=0)
    relu, relu_lr = grid["layer1-relu-w64-l1c2"]
    ortsae, ortsae_lr = grid["layer1-ortsae-w64-k16-g1"]
    assert relu.cfg.l1_coefficient == 2.0 and isinstance(relu.cfg.l1_coefficient, float)
    assert relu.cfg.init_decoder_norm == cfg["sae"]["relu"]["init_decoder_norm"] and relu_lr == 0.004
    assert (ortsae.cfg.threshold_rate, ortsae.cfg.chunk_size, ortsae.cfg.aux_k, ortsae.cfg.k) == (0.05, 32, 7, 16)
    assert ortsae.cfg.gamma == 1.0 and ortsae_lr == auto_lr(64)


def test_the_schema_takes_the_sae_settings_from_the_config_classes():
    from conftest import SCHEMA_PATH
    from lmscalpel.config import effective_schema
    from lmscalpel.sae.batchtopk import BatchTopKConfig

    sae = effective_schema(SCHEMA_PATH)["properties"]["sae"]["properties"]
    assert sae["batchtopk"]["properties"]["threshold_rate"]["default"] == BatchTopKConfig.threshold_rate
    assert sae["ks"]["default"] == [16] and sae["ks"]["items"] == {"type": "integer", "minimum": 1}
    assert set(sae["train"]["properties"]) >= {"aux_k", "aux_coefficient", "epochs"}
    assert sae["ortsae"]["properties"]["variant"]["enum"] == ["max_sq", "max", "mean_sq", "hinge_sq"]
