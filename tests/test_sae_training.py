"""Grid training: resumption, scale/median init, and reconstruction on planted sparse structure."""

import pytest
import torch

from lmscalpel.checkpoint import open_checkpoint
from lmscalpel.sae import build_sae
from lmscalpel.sae.metrics import max_cosine
from lmscalpel.sae.saelens_format import export_copy
from lmscalpel.sae.training import (GridTrainer, TensorBatches, TrainingConfig, activation_scale,
                                    geometric_median, grid_key, lr_multiplier)


def planted_activations(n: int, d: int, n_features: int, active: int, seed: int) -> torch.Tensor:
    """Tokens = sparse non-negative mixtures of ``n_features`` fixed directions + an offset + small noise."""
    gen = torch.Generator().manual_seed(seed)
    directions = torch.randn(n_features, d, generator=gen)
    directions /= directions.norm(dim=-1, keepdim=True)
    offset = 0.3 * torch.randn(d, generator=gen)
    idx = torch.stack([torch.randperm(n_features, generator=gen)[:active] for _ in range(n)])
    coeff = torch.zeros(n, n_features).scatter_(1, idx, 0.5 + torch.rand(n, active, generator=gen))
    return 4.0 * (coeff @ directions + offset) + 0.01 * torch.randn(n, d, generator=gen)


def grid(seed: int = 0, archs=("relu", "topk", "batchtopk", "ortsae"), d: int = 16, m: int = 64):
    out = {}
    for arch in archs:
        cfg = {"d_in": d, "d_sae": m, "l1_coefficient": 0.05} if arch == "relu" else {"d_in": d, "d_sae": m, "k": 3}
        if arch in ("batchtopk", "ortsae"):
            cfg["threshold_rate"] = 0.05
        if arch == "ortsae":
            cfg["chunk_size"] = 16
        out[arch] = (build_sae(arch, cfg, generator=torch.Generator().manual_seed(seed)), 3e-3)
    return out


def fit(saes, cfg, directory, x, **kwargs) -> GridTrainer:
    with open_checkpoint(directory, grid_key(saes, cfg), what="sae.train") as checkpoint:
        trainer = GridTrainer(saes, cfg, checkpoint)
        trainer.fit(TensorBatches(x, 64, 0), **kwargs)
    return trainer


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path):
    x = planted_activations(512, 16, 24, 3, seed=1)
    cfg = TrainingConfig(batch_size=64, epochs=2, checkpoint_every=3, scale_batches=2)
    full = grid()
    fit(full, cfg, tmp_path / "a", x)

    fit(grid(), cfg, tmp_path / "b", x, stop_after_steps=11)  # "killed" mid-epoch 2
    resumed = grid(seed=123)  # fresh objects, different init: everything must come from the checkpoint
    assert fit(resumed, cfg, tmp_path / "b", x).step == 16
    for arch in full:
        for name, value in full[arch][0].state_dict().items():
            assert torch.equal(value, resumed[arch][0].state_dict()[name]), (arch, name)


def test_checkpoint_of_another_grid_is_ignored(tmp_path):
    x = planted_activations(256, 16, 24, 3, seed=1)
    cfg = TrainingConfig(batch_size=64, epochs=1, scale_batches=2)
    fit(grid(archs=("topk",)), cfg, tmp_path, x, stop_after_steps=2)
    other = grid(archs=("batchtopk",))
    with open_checkpoint(tmp_path, grid_key(other, cfg), what="sae.train") as checkpoint:
        assert not GridTrainer(other, cfg, checkpoint).try_resume()


def planted_cache(directory, x: torch.Tensor) -> str:
    """An activation cache of ``x`` (one shard) as cache_activations writes it; returns its manifest."""
    from lmscalpel.cache.writer import CacheSpec, save_shard, write_manifest

    spec = CacheSpec(layers=[0], hook="resid_post", context_length=16, n_tokens=len(x), shard_tokens=len(x),
                     batch_size=4, out_dirs=[directory], provenance={"model": "planted"})
    save_shard(directory, 0, {"activations": x, "tokens": torch.zeros(len(x), dtype=torch.int32)}, spec.fingerprint)
    write_manifest(directory, 0, spec, 1)
    return str(directory / "manifest.json")


def test_train_layer_resumes_its_own_run_and_recomputes_a_changed_one(tmp_path, monkeypatch):
    """Killed after 5 steps (state saved at step 4): the same run resumes there, a changed lr starts over."""
    from lmscalpel.sae import stage

    manifest = planted_cache(tmp_path / "cache", planted_activations(512, 16, 24, 3, seed=1))
    specs = [{"sae_id": "layer0-topk", "architecture": "topk", "width": 32, "k": 3}]
    sae_cfg = {"train": {"batch_size": 64, "epochs": 1, "checkpoint_every": 2, "scale_batches": 2, "lr": 1e-3}}
    steps, real_step = [], GridTrainer._train_step

    def counted(trainer, *args, kill_at=None):
        if trainer.step == kill_at:
            raise KeyboardInterrupt
        steps.append(trainer.step)
        real_step(trainer, *args)

    def train(cfg, kill_at=None):
        steps.clear()
        monkeypatch.setattr(GridTrainer, "_train_step", lambda t, *a: counted(t, *a, kill_at=kill_at))
        try:
            stage.train_layer(manifest, {"layer0-topk": tmp_path / "sae"}, specs, cfg, seed=0,
                              checkpoint_dir=tmp_path / "ck", device="cpu")
        except KeyboardInterrupt:
            pass
        return list(steps)

    assert train(sae_cfg, kill_at=5) == [0, 1, 2, 3, 4]
    assert train({"train": {**sae_cfg["train"], "checkpoint_every": 3}}) == [4, 5, 6, 7]
    assert train(sae_cfg, kill_at=5) == [0, 1, 2, 3, 4]
    assert train({"train": {**sae_cfg["train"], "lr": 2e-3}}) == list(range(8))


def test_activation_scale_and_geometric_median():
    x = torch.randn(400, 8) * 3 + 2
    s = activation_scale(iter([x[:200], x[200:]]), n_batches=2)
    assert float((s * x).pow(2).sum(-1).mean()) == pytest.approx(1.0, rel=1e-5)
    points = torch.cat([torch.zeros(50, 2), torch.tensor([[100.0, 100.0]])])  # one outlier barely moves it
    assert float(geometric_median(points).norm()) < 1.0 < float(points.mean(0).norm())


def test_lr_schedule_warms_up_and_decays_to_zero():
    values = [lr_multiplier(s, 100, 10, 0.2) for s in range(100)]
    assert values[0] == pytest.approx(0.1) and values[9] == 1.0 and values[79] == 1.0
    assert values[80] == 1.0 and values[99] == pytest.approx(0.05)
    assert all(a >= b for a, b in zip(values[10:], values[11:]))


def test_batchtopk_reconstructs_planted_structure_and_ortsae_is_more_orthogonal():
    """Stand-in for the toy-model check (FVU ≤ 0.2 at L0 ≈ k; OrtSAE mean max-cos < BatchTopK)."""
    torch.manual_seed(0)
    data = planted_activations(9216, 16, 32, 3, seed=2)
    x, held_out = data[:8192], data[8192:]
    saes = {arch: (sae, 1e-2) for arch, (sae, _) in grid(archs=("batchtopk", "ortsae")).items()}
    GridTrainer(saes, TrainingConfig(batch_size=128, epochs=6, scale_batches=4)).fit(TensorBatches(x, 128, 0))
    results = {}
    for arch, (sae, _) in saes.items():
        raw = export_copy(sae)  # folds the scale: works on raw activations, inference (threshold) mode
        with torch.no_grad():
            x_hat, f = raw(held_out)
        fvu = float((held_out - x_hat).pow(2).sum() / (held_out - held_out.mean(0)).pow(2).sum())
        results[arch] = (fvu, float((f != 0).sum(-1).float().mean()), float(max_cosine(raw.W_dec).mean()))
    fvu, l0, _ = results["batchtopk"]
    assert fvu <= 0.2 and 1.5 <= l0 <= 6, results
    assert results["ortsae"][2] < results["batchtopk"][2], results
