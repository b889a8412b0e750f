"""sae.imports: released SAEs (Goodfire .pth, SAELens folders, Gemma Scope npz) become project SAE directories."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from lmscalpel.sae import load_sae
from lmscalpel.sae.imports import import_sae, is_local_source

D_IN, D_SAE = 8, 16


def tensors(seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {"W_enc": torch.randn(D_IN, D_SAE, generator=gen), "W_dec": torch.randn(D_SAE, D_IN, generator=gen),
            "b_enc": 0.1 * torch.randn(D_SAE, generator=gen), "b_dec": torch.randn(D_IN, generator=gen)}


def reconstruct(sae, x):
    with torch.no_grad():
        return sae(x)[0]


@pytest.fixture
def x():
    return torch.randn(32, D_IN, generator=torch.Generator().manual_seed(1))


@pytest.fixture
def goodfire_pth(tmp_path):
    """A Goodfire-style state dict: nn.Linear encoder [d_sae, d_in] and decoder [d_in, d_sae]."""
    t = tensors()
    path = tmp_path / "release" / "Model-SAE-l3.pth"
    path.parent.mkdir()
    torch.save({"encoder_linear.weight": t["W_enc"].t().to(torch.bfloat16),
                "encoder_linear.bias": t["b_enc"].to(torch.bfloat16),
                "decoder_linear.weight": t["W_dec"].t().to(torch.bfloat16),
                "decoder_linear.bias": t["b_dec"].to(torch.bfloat16)}, path)
    return path


@pytest.fixture
def saelens_dir(tmp_path):
    """A pre-6.0 SAELens folder (hook_point, b_dec subtracted from the input)."""
    folder = tmp_path / "repo" / "blocks.3.hook_resid_post"
    folder.mkdir(parents=True)
    save_file(tensors(2), str(folder / "sae_weights.safetensors"))
    (folder / "cfg.json").write_text(json.dumps({
        "d_in": D_IN, "d_sae": D_SAE, "hook_point": "blocks.3.hook_resid_post", "architecture": "standard",
        "apply_b_dec_to_input": True, "normalize_activations": "none", "model_name": "toy"}))
    return folder


def spec(**fields):
    return {"id": "released", "path": "", "revision": None, "activation_scale": None, **fields}


def test_goodfire_import_keeps_the_reconstruction(tmp_path, goodfire_pth, x):
    out = import_sae(spec(source=str(goodfire_pth.parent), path=goodfire_pth.name, format="goodfire", hook_layer=3),
                     tmp_path / "sae" / "released")
    t = {k: v.to(torch.bfloat16).float() for k, v in tensors().items()}
    expected = torch.relu(x @ t["W_enc"] + t["b_enc"]) @ t["W_dec"] + t["b_dec"]
    sae = load_sae(out)
    torch.testing.assert_close(reconstruct(sae, x), expected, rtol=1e-4, atol=1e-4)
    cfg = json.loads((out / "cfg.json").read_text())
    assert cfg["metadata"]["layer"] == 3 and cfg["metadata"]["hook_name"] == "blocks.3.hook_resid_post"
    assert cfg["metadata"]["import_format"] == "goodfire" and cfg["metadata"]["sae_id"] == "released"
    assert torch.allclose(sae.W_dec.norm(dim=1), torch.ones(D_SAE), atol=1e-5)  # project format: unit decoder rows


def test_saelens_import_keeps_the_reconstruction(tmp_path, saelens_dir, x):
    out = import_sae(spec(source=str(saelens_dir.parent), path=saelens_dir.name, format="saelens", hook_layer=3),
                     tmp_path / "out")
    t = tensors(2)
    expected = torch.relu((x - t["b_dec"]) @ t["W_enc"] + t["b_enc"]) @ t["W_dec"] + t["b_dec"]
    torch.testing.assert_close(reconstruct(load_sae(out), x), expected, rtol=1e-4, atol=1e-4)
    assert json.loads((out / "cfg.json").read_text())["metadata"]["model_name"] == "toy"


def test_gemmascope_import(tmp_path, x):
    t = {k: v.numpy() for k, v in tensors(3).items()}
    t["threshold"] = np.full(D_SAE, 0.5, dtype=np.float32)
    np.savez(tmp_path / "params.npz", **t)
    out = import_sae(spec(source=str(tmp_path), path="params.npz", format="gemmascope", hook_layer=5), tmp_path / "o")
    pre = x @ tensors(3)["W_enc"] + tensors(3)["b_enc"]
    expected = (pre * (pre > 0.5)) @ tensors(3)["W_dec"] + tensors(3)["b_dec"]
    torch.testing.assert_close(reconstruct(load_sae(out), x), expected, rtol=1e-4, atol=1e-4)


def test_hub_source_downloads_the_saelens_files(tmp_path, saelens_dir, monkeypatch):
    calls = []

    def fake_download(repo_id, filename, revision=None):
        calls.append((repo_id, filename, revision))
        return str(saelens_dir.parent / filename)

    monkeypatch.setattr("huggingface_hub.hf_hub_download", fake_download)
    assert not is_local_source("org/released-saes")
    import_sae(spec(source="org/released-saes", path="blocks.3.hook_resid_post", revision="abc", format="saelens",
                    hook_layer=3), tmp_path / "out")
    assert calls == [("org/released-saes", "blocks.3.hook_resid_post/cfg.json", "abc"),
                     ("org/released-saes", "blocks.3.hook_resid_post/sae_weights.safetensors", "abc")]


def _with_hook(folder, name: str):
    cfg = json.loads((folder / "cfg.json").read_text())
    (folder / "cfg.json").write_text(json.dumps({**cfg, "hook_point": name}))
    return folder


def test_hook_type_maps_resid_pre_to_the_previous_block_and_refuses_other_hooks(tmp_path, saelens_dir):
    """blocks.L.hook_resid_pre is the output of block L-1; MLP/attention hooks are not the residual stream."""
    local = str(saelens_dir.parent)
    _with_hook(saelens_dir, "blocks.4.hook_resid_pre")
    out = import_sae(spec(source=local, path=saelens_dir.name, format="saelens", hook_layer=3), tmp_path / "pre")
    meta = json.loads((out / "cfg.json").read_text())["metadata"]
    assert meta["layer"] == 3 and meta["hook"] == "resid_post"
    assert meta["hook_name"] == "blocks.3.hook_resid_post" and meta["import_hook_name"] == "blocks.4.hook_resid_pre"
    with pytest.raises(ValueError, match=r"hook_layer: 4, but .*hook_resid_pre.* reads block 3"):
        import_sae(spec(source=local, path=saelens_dir.name, format="saelens", hook_layer=4), tmp_path / "a")
    for name in ("blocks.3.hook_mlp_out", "blocks.3.attn.hook_z", "blocks.3.hook_resid_mid",
                 "blocks.3.ln2.hook_normalized", "blocks.3.ln2.hook_out", "blocks.0.hook_resid_pre"):
        _with_hook(saelens_dir, name)
        with pytest.raises(ValueError, match=r"sae\.imports\[id=released\]\.source: .*residual-stream"):
            import_sae(spec(source=local, path=saelens_dir.name, format="saelens", hook_layer=3), tmp_path / "b")


def test_errors_name_the_config_key(tmp_path, saelens_dir, goodfire_pth):
    local = str(saelens_dir.parent)
    with pytest.raises(ValueError, match=r"sae\.imports\[id=released\]\.hook_layer: 4, but .* reads block 3"):
        import_sae(spec(source=local, path=saelens_dir.name, format="saelens", hook_layer=4), tmp_path / "a")
    with pytest.raises(ValueError, match=r"sae\.imports\[id=released\]\.activation_scale"):
        import_sae(spec(source=str(goodfire_pth), format="goodfire", hook_layer=3, activation_scale=2.0),
                   tmp_path / "b")
    with pytest.raises(FileNotFoundError, match=r"sae\.imports\[id=released\]\.source"):
        import_sae(spec(source=local, path="missing", format="saelens", hook_layer=3), tmp_path / "c")
    cfg = json.loads((saelens_dir / "cfg.json").read_text())
    (saelens_dir / "cfg.json").write_text(json.dumps({**cfg, "normalize_activations": True}))
    with pytest.raises(ValueError, match=r"sae\.imports\[id=released\]\.activation_scale"):
        import_sae(spec(source=local, path=saelens_dir.name, format="saelens", hook_layer=3), tmp_path / "d")
    assert not (tmp_path / "a").exists() or not any((tmp_path / "a").iterdir())
