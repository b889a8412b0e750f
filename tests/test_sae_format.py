"""SAELens on-disk format: export folds, round trips, pre-6 configs, Gemma Scope / Goodfire files, sae_lens."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from lmscalpel.sae import build_sae, load_sae, save_sae
from lmscalpel.sae.saelens_format import normalise_saelens_config

ARCH_CFG = {
    "relu": {"d_in": 8, "d_sae": 24, "l1_coefficient": 0.1},
    "topk": {"d_in": 8, "d_sae": 24, "k": 3},
    "batchtopk": {"d_in": 8, "d_sae": 24, "k": 3},
    "ortsae": {"d_in": 8, "d_sae": 24, "k": 3, "chunk_size": 8},
}


def trained_like(arch: str, scale: float = 0.25):
    """An SAE in scaled-activation space with non-trivial biases, decoder norms and threshold."""
    gen = torch.Generator().manual_seed(0)
    sae = build_sae(arch, ARCH_CFG[arch], generator=gen)
    with torch.no_grad():
        sae.b_enc.copy_(0.1 * torch.randn(24, generator=gen))
        sae.b_dec.copy_(torch.randn(8, generator=gen))
        if arch == "relu":
            sae.W_dec.mul_(torch.rand(24, 1, generator=gen) + 0.5)  # unconstrained norms
        if hasattr(sae, "threshold"):
            sae.threshold.fill_(0.2)
        sae.activation_scale.fill_(scale)
    return sae


def raw_reconstruction(sae, x_raw):
    """What the SAE in scaled space implies for raw activations: decode(encode(s·x)) / s."""
    s = float(sae.activation_scale)
    with torch.no_grad():
        x_hat, f = sae(x_raw * s)
    return x_hat / s, f


@pytest.mark.parametrize("arch", sorted(ARCH_CFG))
def test_round_trip_takes_raw_activations_and_keeps_reconstructions(arch, tmp_path):
    sae = trained_like(arch)
    x_raw = torch.randn(50, 8) * 4
    want, f_want = raw_reconstruction(sae, x_raw)
    save_sae(sae, tmp_path / "sae", {"model_name": "toy", "hook_name": "blocks.2.hook_resid_post", "layer": 2})
    loaded = load_sae(tmp_path / "sae")
    assert loaded.architecture == arch and float(loaded.activation_scale) == 1.0
    with torch.no_grad():
        got, f_got = loaded(x_raw)
    assert torch.allclose(got, want, atol=1e-4)
    assert torch.equal(f_got != 0, f_want != 0)  # same active latents
    assert torch.allclose(loaded.W_dec.norm(dim=-1), torch.ones(24), atol=1e-5)
    cfg = json.loads((tmp_path / "sae" / "cfg.json").read_text())
    assert cfg["normalize_activations"] == "none" and cfg["metadata"]["sae_lens_version"] >= "6"
    assert cfg["metadata"]["lmscalpel_activation_scale"] == pytest.approx(0.25)
    assert cfg["architecture"] == {"relu": "standard", "topk": "topk"}.get(arch, "jumprelu")
    assert loaded.metadata["layer"] == 2


def test_save_is_atomic_and_keeps_other_files(tmp_path):
    (tmp_path / "core_metrics.json").write_text("{}")
    save_sae(trained_like("topk"), tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cfg.json", "core_metrics.json", "sae_weights.safetensors"]


def _write(directory, cfg, tensors):
    directory.mkdir()
    (directory / "cfg.json").write_text(json.dumps(cfg))
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(directory / "sae_weights.safetensors"))


def test_pre6_topk_config_with_scale_is_read(tmp_path):
    gen = torch.Generator().manual_seed(1)
    tensors = {"W_enc": torch.randn(8, 16, generator=gen), "W_dec": torch.randn(16, 8, generator=gen),
               "b_enc": torch.zeros(16), "b_dec": torch.randn(8, generator=gen)}
    cfg = {"d_in": 8, "d_sae": 16, "hook_point": "blocks.3.hook_resid_post", "activation_fn_str": "topk",
           "activation_fn_kwargs": {"k": 4}, "normalize_activations": True, "apply_b_dec_to_input": True,
           "model_name": "m", "metadata": {"dropped": True}}
    norm = normalise_saelens_config(cfg)
    assert norm["architecture"] == "topk" and norm["k"] == 4
    assert norm["normalize_activations"] == "expected_average_only_in"
    assert norm["metadata"]["hook_name"] == "blocks.3.hook_resid_post" and "dropped" not in norm["metadata"]
    _write(tmp_path / "old", cfg, tensors)
    with pytest.raises(ValueError, match="activation_scale"):
        load_sae(tmp_path / "old")
    sae = load_sae(tmp_path / "old", activation_scale=0.5)
    x = torch.randn(5, 8)
    pre = (0.5 * x - tensors["b_dec"]) @ tensors["W_enc"]  # the file's SAE on scaled inputs
    vals, idx = torch.topk(pre, 4, dim=-1)
    want = (torch.zeros(5, 16).scatter_(1, idx, vals.relu()) @ tensors["W_dec"] + tensors["b_dec"]) / 0.5
    with torch.no_grad():
        assert torch.allclose(sae(x)[0], want, atol=1e-4)


def test_gemma_scope_npz_and_goodfire_pth(tmp_path):
    gen = torch.Generator().manual_seed(2)
    params = {"W_enc": torch.randn(8, 16, generator=gen), "W_dec": torch.randn(16, 8, generator=gen),
              "b_enc": torch.randn(16, generator=gen), "b_dec": torch.randn(8, generator=gen),
              "threshold": torch.rand(16, generator=gen)}
    (tmp_path / "gs").mkdir()
    np.savez(tmp_path / "gs" / "params.npz", **{k: v.numpy() for k, v in params.items()})
    sae = load_sae(tmp_path / "gs")
    x = torch.randn(4, 8)
    pre = x @ params["W_enc"] + params["b_enc"]
    want = torch.relu(pre) * (pre > params["threshold"]) @ params["W_dec"] + params["b_dec"]
    with torch.no_grad():
        assert torch.allclose(sae(x)[0], want, atol=1e-5)
    state = {"encoder_linear.weight": params["W_enc"].t(), "encoder_linear.bias": params["b_enc"],
             "decoder_linear.weight": params["W_dec"].t(), "decoder_linear.bias": params["b_dec"]}
    torch.save(state, tmp_path / "goodfire.pth")
    relu = load_sae(tmp_path / "goodfire.pth")
    with torch.no_grad():
        assert torch.allclose(relu(x)[0], torch.relu(pre) @ params["W_dec"] + params["b_dec"], atol=1e-5)


def test_missing_files_and_unsupported_architecture_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="cfg.json"):
        load_sae(tmp_path)
    _write(tmp_path / "gated", {"architecture": "gated", "d_in": 2, "d_sae": 2,
                                "metadata": {"sae_lens_version": "6.1.0"}}, {"W_enc": torch.zeros(2, 2)})
    with pytest.raises(ValueError, match="not supported"):
        load_sae(tmp_path / "gated")


@pytest.mark.parametrize("arch", sorted(ARCH_CFG))
def test_sae_lens_loads_our_export_with_the_same_reconstruction(arch, tmp_path):
    sae_lens = pytest.importorskip("sae_lens")
    sae = trained_like(arch)
    save_sae(sae, tmp_path / "sae", {"model_name": "toy", "hook_name": "blocks.2.hook_resid_post"})
    theirs = sae_lens.SAE.load_from_disk(str(tmp_path / "sae"), device="cpu")
    x_raw = torch.randn(30, 8) * 4
    want, _ = raw_reconstruction(sae, x_raw)
    with torch.no_grad():
        got = theirs.decode(theirs.encode(x_raw))
    assert torch.allclose(got, want, atol=1e-4)


def test_saelens_roundtrip_records_the_difference_and_a_broken_export(tmp_path):
    pytest.importorskip("sae_lens")
    from lmscalpel.sae.saelens_format import saelens_roundtrip

    sae = trained_like("batchtopk")
    save_sae(sae, tmp_path / "sae", {"model_name": "toy", "hook_name": "blocks.2.hook_resid_post"})
    ours = load_sae(tmp_path / "sae")
    x = torch.randn(40, 8) * 4
    check = saelens_roundtrip(tmp_path / "sae", ours, x)
    assert check["saelens_status"].startswith("loaded") and check["saelens_max_abs_diff"] < 1e-4
    assert check["saelens_tokens"] == 40
    with torch.no_grad():
        ours.b_dec.add_(1.0)  # the project's SAE no longer matches the files SAELens reads
    assert saelens_roundtrip(tmp_path / "sae", ours, x)["saelens_max_abs_diff"] > 0.5
    (tmp_path / "sae" / "sae_weights.safetensors").write_bytes(b"not safetensors")
    assert saelens_roundtrip(tmp_path / "sae", ours, x)["saelens_status"].startswith("failed:")


def test_hook_names_say_what_was_cached():
    """mlp_in is after the norm weight: not TransformerLens' ln2.hook_normalized (before the RMSNorm weight) nor
    hook_mlp_in (before the norm). Every exported name parses back to the cached (layer, hook)."""
    from lmscalpel.sae.saelens_format import hook_name, parse_hook_name

    assert hook_name(2) == "blocks.2.hook_resid_post"
    assert hook_name(2, "mlp_in") not in ("blocks.2.ln2.hook_normalized", "blocks.2.hook_mlp_in")
    for hook in ("resid_post", "mlp_in"):
        assert parse_hook_name(hook_name(5, hook)) == (5, hook)
    assert parse_hook_name("blocks.5.hook_resid_pre") == (4, "resid_post")
    with pytest.raises(ValueError, match="hook_normalized"):
        parse_hook_name("blocks.5.ln2.hook_normalized")
