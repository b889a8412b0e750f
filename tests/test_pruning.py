"""Unit tests of the pruning library on tiny tensors and a tiny random Llama built in-process."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lmscalpel.pruning import (CRITERIA, MITIGATIONS, ActivationPruning, activation_pruning, compute_spts,
                               keep_mask, load_params, parse_pattern, save_params, train_learnable,
                               weight_pruning, window_nlls)
from lmscalpel.pruning.criteria import amber_channel_factor, get_criterion
from lmscalpel.pruning.masks import Pattern


@pytest.fixture(scope="module")
def tiny_model():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64)
    model = LlamaForCausalLM(config).eval()
    model.requires_grad_(False)
    return model


@pytest.fixture(scope="module")
def windows():
    return torch.randint(0, 64, (4, 16), generator=torch.Generator().manual_seed(1))


# --- masks -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("spec", ["2:4", "4:8", "8:16", "16:32", "1:4", "3:8"])
def test_nm_mask_keeps_exactly_n_per_group(spec):
    pattern = parse_pattern(spec)
    scores = torch.randn(5, 7, 64, generator=torch.Generator().manual_seed(0))
    mask = keep_mask(scores, pattern)
    groups = mask.reshape(5, 7, -1, pattern.m)
    assert (groups.sum(-1) == pattern.n).all()
    kept_min = torch.where(groups, scores.reshape(groups.shape), torch.inf).min(-1).values
    dropped_max = torch.where(groups, -torch.inf, scores.reshape(groups.shape)).max(-1).values
    assert (kept_min >= dropped_max).all()


def test_nm_mask_pads_ragged_tail_without_keeping_padding():
    scores = torch.randn(3, 10, generator=torch.Generator().manual_seed(0))
    mask = keep_mask(scores, "2:4")
    assert mask.shape == scores.shape
    assert (mask[:, :8].reshape(3, 2, 4).sum(-1) == 2).all() and (mask[:, 8:].sum(-1) == 2).all()
    assert (mask.sum(-1) == parse_pattern("2:4").keep_count(10)).all()


def test_ties_break_toward_lower_channel():
    scores = torch.tensor([[1.0, 1.0, 1.0, 1.0, 0.0, 2.0, 2.0, 2.0]])
    assert keep_mask(scores, "2:4").tolist() == [[True, True, False, False, False, True, True, False]]
    assert keep_mask(scores, "u50").tolist() == [[True, False, False, False, False, True, True, True]]
    repeated = torch.ones(2, 32)
    assert torch.equal(keep_mask(repeated, "8:16"), keep_mask(repeated.clone(), "8:16"))


def test_unstructured_keeps_same_count_as_nm():
    scores = torch.randn(6, 96, generator=torch.Generator().manual_seed(2))
    counts = {spec: keep_mask(scores, spec).sum(-1) for spec in ["2:4", "8:16", "16:32", "u50"]}
    assert all(torch.equal(c, torch.full((6,), 48)) for c in counts.values())
    top = scores.topk(48, dim=-1).values.min(-1, keepdim=True).values
    assert torch.equal(keep_mask(scores, "u50"), scores >= top)


def test_pattern_parsing_and_slugs():
    assert parse_pattern("8:16") == Pattern(n=8, m=16) == parse_pattern("8-16")
    assert parse_pattern("u50").sparsity == 0.5 and parse_pattern("unstructured-70%").slug == "u70"
    assert parse_pattern(parse_pattern("2:4").slug) == parse_pattern("2:4")
    for bad in ["5:4", "abc", "u100"]:
        with pytest.raises(ValueError):
            parse_pattern(bad)


@pytest.mark.parametrize("pattern", ["4:4", "16:16", "u0"])
def test_a_pattern_that_prunes_nothing_is_refused_naming_its_key(pattern):
    from lmscalpel.config import ConfigError
    from lmscalpel.pruning.patterns import check_patterns, check_pruning_values

    with pytest.raises(ValueError, match="prunes nothing|no pruning"):
        parse_pattern(pattern)
    with pytest.raises(ConfigError, match=f"config key pruning.weight_patterns: '{pattern}': "):
        check_pruning_values({"patterns": ["2:4"], "weight_patterns": ["2:4", pattern]})
    with pytest.raises(ConfigError, match=f"config key unlearning.robustness.pruning_pattern: '{pattern}': "):
        check_patterns({"unlearning.robustness.pruning_pattern": pattern})


# --- criteria --------------------------------------------------------------------------------------------------

def _keep(criterion, x, weight=None, pattern="2:4", **options):
    crit = get_criterion(criterion)
    factor = crit.prepare(weight, **options) if weight is not None else None
    return keep_mask(crit.score(x, factor, **options), pattern)


def test_magnitude_ranks_by_absolute_value():
    x = torch.tensor([[0.1, -3.0, 2.0, 0.5]])
    assert _keep("magnitude", x).tolist() == [[False, True, True, False]]


def test_wanda_criterion_matches_direct_computation():
    weight = torch.tensor([[1.0, 0.0, 2.0, 0.0], [0.0, 4.0, 0.0, 3.0]])  # column norms 1, 4, 2, 3
    x = torch.tensor([[3.0, 1.0, 1.0, 1.0]])  # |x| * norm = 3, 4, 2, 3
    assert _keep("wanda", x, weight).tolist() == [[True, True, False, False]]
    direct = x.abs() * weight.norm(dim=0)
    assert torch.allclose(get_criterion("wanda").score(x, weight.norm(dim=0)), direct)
    assert _keep("magnitude", x).tolist() == [[True, True, False, False]]
    assert _keep("wanda", torch.ones(1, 4), weight).tolist() == [[False, True, False, True]]


def test_amber_standardises_before_column_norms():
    # a constant offset dominates raw column norms (Wanda-style picks columns 0 and 1) but vanishes after
    # standardisation, where columns 2 and 3 vary most
    weight = torch.tensor([[9.0, 9.0, 10.0, 11.5], [10.0, 10.0, 11.0, 8.0],
                           [11.0, 11.0, 9.0, 10.0], [10.0, 10.0, 10.0, 10.5]]) + torch.tensor([3.0, 2.9, 0, 0])
    x = torch.ones(1, 4)
    factor = amber_channel_factor(weight)
    flat = weight.flatten()
    lo, hi = torch.quantile(flat, torch.tensor([0.005, 0.995]))
    inliers = flat[(flat >= lo) & (flat <= hi)]
    norms = ((weight - inliers.mean()) / inliers.std(unbiased=False)).norm(dim=0)
    assert torch.allclose(factor, norms / norms.min())
    assert factor.min() == pytest.approx(1.0)
    assert _keep("amber", x, weight).tolist() == [[False, False, True, True]]
    assert _keep("wanda", x, weight).tolist() == [[True, True, False, False]]


def test_clact_uses_column_norms_of_the_sequence():
    x = torch.tensor([[[1.0, 1.0, 1.0, 1.0], [0.0, 5.0, 0.0, 3.0]]])  # [batch 1, 2 tokens, 4 channels]
    assert _keep("clact", x)[0, 0].tolist() == [False, True, False, True]
    assert _keep("magnitude", x)[0, 0].tolist() == [True, True, False, False]
    other = torch.tensor([[[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]], [[0.0, 0.0, 0.0, 0.0], [9.0, 0.0, 9.0, 0.0]]])
    assert _keep("clact", other, scope="sequence")[0, 0].tolist() == [True, True, False, False]
    assert _keep("clact", other, scope="batch")[0, 0].tolist() == [True, False, True, False]


def test_clact_column_norm_leaves_padding_out():
    seq = torch.randn(1, 3, 8, generator=torch.Generator().manual_seed(0))
    padded = torch.cat([seq, 50 * torch.ones(1, 5, 8)], dim=1)  # right padding with large activations
    valid = torch.arange(8).unsqueeze(0) < 3
    for scope in ("sequence", "batch"):
        alone = get_criterion("clact").score(seq, scope=scope)
        assert torch.allclose(get_criterion("clact").score(padded, scope=scope, valid=valid)[:, :3], alone)
        assert not torch.allclose(get_criterion("clact").score(padded, scope=scope)[:, :3], alone)


def test_global_unstructured_scope_takes_one_top_k_over_the_call(tiny_model):
    from lmscalpel.pruning.pruner import token_mask
    from lmscalpel.pruning.stage import criterion_options

    x = torch.randn(2, 5, 32, generator=torch.Generator().manual_seed(3)) * torch.linspace(0.1, 3, 5)[:, None]
    cfg = {"amber_quantile": 0.005, "unstructured": {"scope": "global", "global_criteria": ["amber"]}}
    assert "unstructured_scope" not in criterion_options(cfg, "magnitude", "u50")
    assert "unstructured_scope" not in criterion_options(cfg, "amber", "2:4")
    pruning = ActivationPruning(tiny_model, "u50", "amber", criterion_options=criterion_options(cfg, "amber", "u50"))
    name = next(iter(pruning.modules))
    kept = pruning.prune(name, x) != 0
    scores = get_criterion("amber").score(x, pruning.factors[name])
    assert int(kept.sum()) == 2 * 5 * 16 and torch.equal(kept, scores >= scores.flatten().topk(160).values[-1])
    assert len(set(kept.sum(-1).flatten().tolist())) > 1  # tokens keep different counts
    per_token = ActivationPruning(tiny_model, "u50", "amber").prune(name, x) != 0
    assert (per_token.sum(-1) == 16).all()
    valid = torch.tensor([[True] * 5, [True, True, False, False, False]])
    with token_mask(valid):
        kept = pruning.prune(name, x) != 0
    assert int(kept.sum()) == 7 * 16 and not kept[1, 2:].any()


def test_registries_have_the_paper_entries():
    assert {"magnitude", "amber", "clact", "wanda"} <= set(CRITERIA)
    assert {"none", "var", "dpts", "spts", "learnable"} <= set(MITIGATIONS)


# --- installation and mitigations --------------------------------------------------------------------------------

class _Block(torch.nn.Module):
    """Stand-in decoder block with one biased linear layer named like a Llama projection."""

    def __init__(self):
        super().__init__()
        self.up_proj = torch.nn.Linear(16, 8, bias=True)

    def forward(self, x):
        return self.up_proj(x)


class _Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.model = torch.nn.Module()
        self.model.layers = torch.nn.ModuleList([_Block()])

    def forward(self, x):
        return self.model.layers[0](x)


def _inputs():
    return torch.randn(2, 5, 16, generator=torch.Generator().manual_seed(3)) + 0.7  # median far from 0


def _calibrated(name, module):
    params = {}
    for key, side in MITIGATIONS[name].param_shapes or (("eta", "scalar"),):
        size = {"in": module.in_features, "out": module.out_features, "scalar": 1}[side]
        params[key] = torch.linspace(0.2, 0.9, size) if side != "scalar" else torch.tensor(0.6)
    return params


def test_pruning_keeps_bias_and_is_removed_on_exit():
    model, x = _Model(), _inputs()
    linear = model.model.layers[0].up_proj
    dense = model(x)
    with activation_pruning(model, "2:4", targets=("up_proj",)) as pruning:
        pruned = model(x)
        assert pruning.calls == 1
    expected = F.linear(x * keep_mask(x.abs(), "2:4"), linear.weight, linear.bias)
    assert torch.allclose(pruned, expected)
    assert torch.equal(model(x), dense)


@pytest.mark.parametrize("name", sorted(MITIGATIONS))
def test_each_mitigation_changes_the_output(name):
    model, x = _Model(), _inputs()
    linear = model.model.layers[0].up_proj
    params = {"model.layers.0.up_proj": _calibrated(name, linear)} if MITIGATIONS[name].calibration else None
    with activation_pruning(model, "2:4", "magnitude", "none", ("up_proj",)):
        plain = model(x)
    with activation_pruning(model, "2:4", "magnitude", name, ("up_proj",), calibration=params):
        mitigated = model(x)
    if name == "none":
        assert torch.equal(mitigated, plain)
    else:
        assert (mitigated - plain).abs().max() > 1e-4


def test_var_restores_per_token_variance():
    x = _inputs()
    pruning = ActivationPruning(_Model(), "2:4", "magnitude", "var", ("up_proj",))
    restored = pruning.transform("model.layers.0.up_proj", x)
    assert torch.allclose(restored.var(-1), x.var(-1), rtol=1e-4)


def test_dpts_is_a_rank_one_dense_correction():
    model, x = _Model(), _inputs()
    linear = model.model.layers[0].up_proj
    with activation_pruning(model, "2:4", "magnitude", "dpts", ("up_proj",)):
        out = model(x)
    eta = x.median(-1, keepdim=True).values
    shifted = x - eta
    expected = F.linear(shifted * keep_mask(shifted.abs(), "2:4"), linear.weight, linear.bias)
    expected = expected + eta * linear.weight.sum(dim=1)
    assert torch.allclose(out, expected, atol=1e-5)


def test_missing_calibration_is_a_clear_error():
    with pytest.raises(ValueError, match="calibration"):
        with activation_pruning(_Model(), "2:4", "magnitude", "spts", ("up_proj",)):
            pass


def test_spts_statistics_computed_once_and_reused(tiny_model, windows, tmp_path, monkeypatch):
    import lmscalpel.pruning.calibration as calibration

    params = compute_spts(tiny_model, windows)
    assert len(params) == 2 * 7
    path = tmp_path / "spts.safetensors"
    save_params(path, params, {"mitigation": "spts"})
    with activation_pruning(tiny_model, "2:4", "magnitude", "spts", calibration=params):
        from_dict = window_nlls(tiny_model, windows)

    def fail(*args, **kwargs):
        raise AssertionError("S-PTS statistics recomputed instead of read from the cached file")

    monkeypatch.setattr(calibration, "compute_spts", fail)
    with activation_pruning(tiny_model, "2:4", "magnitude", "spts", calibration=path) as pruning:
        from_file = window_nlls(tiny_model, windows)
    assert torch.equal(from_dict, from_file)
    name = "model.layers.0.mlp.down_proj"
    assert pruning.params[name]["eta"] == params[name]["eta"] != 0


def test_spts_matches_direct_median_mean(tiny_model, windows):
    captured = []
    module = tiny_model.model.layers[1].self_attn.o_proj
    handle = module.register_forward_pre_hook(lambda m, a: captured.append(a[0].reshape(-1, a[0].shape[-1])))
    with torch.no_grad():
        tiny_model(input_ids=windows)
    handle.remove()
    direct = torch.cat(captured).median(-1).values.mean()
    got = compute_spts(tiny_model, windows, targets=("o_proj",), layers=(1,), batch_size=3)
    assert torch.allclose(got["model.layers.1.self_attn.o_proj"]["eta"], direct, atol=1e-6)


def test_learnable_shift_trains_and_changes_the_output(tiny_model, windows, tmp_path):
    history = []
    params = train_learnable(tiny_model, windows, pattern="2:4", lr=1e-2, steps=40, history=history)
    assert all(p.requires_grad is False for p in tiny_model.parameters())
    assert len(history) == 2 and all(h["last_loss"] < h["first_loss"] for h in history)
    assert any(entry["shift"].abs().max() > 0 for entry in params.values())
    path = tmp_path / "learn.safetensors"
    save_params(path, params, {"mitigation": "learnable", "pattern": "2-4"})
    with activation_pruning(tiny_model, "2:4") :
        plain = window_nlls(tiny_model, windows)
    with activation_pruning(tiny_model, "2:4", mitigation="learnable", calibration=path):
        learned = window_nlls(tiny_model, windows)
    assert (learned - plain).abs().max() > 1e-6
    with pytest.raises(ValueError, match="calibrated for"):
        load_params(path, expect={"mitigation": "learnable_bias"})


def test_learnable_training_resumes_from_block_checkpoints(tiny_model, windows, tmp_path, monkeypatch):
    import lmscalpel.pruning.calibration as calibration

    first = train_learnable(tiny_model, windows, pattern="8:16", lr=1e-2, steps=5, checkpoint_dir=tmp_path)
    assert sorted(p.name for p in tmp_path.glob("block*.pt")) == ["block0.pt", "block1.pt"]
    real_fit, fitted = calibration._fit_block, []
    monkeypatch.setattr(calibration, "_fit_block", lambda *a, **k: fitted.append(1) or real_fit(*a, **k))
    again = train_learnable(tiny_model, windows, pattern="8:16", lr=1e-2, steps=5, checkpoint_dir=tmp_path)
    assert fitted == [] and all(torch.equal(first[n]["shift"], again[n]["shift"]) for n in first)
    # a changed key (here pruning.learnable.lr, or the calibration windows) trains every block again
    train_learnable(tiny_model, windows, pattern="8:16", lr=2e-2, steps=5, checkpoint_dir=tmp_path)
    assert len(fitted) == 2
    train_learnable(tiny_model, windows[:, :-1], pattern="8:16", lr=2e-2, steps=5, checkpoint_dir=tmp_path)
    assert len(fitted) == 4


# --- weight pruning --------------------------------------------------------------------------------------------

def test_magnitude_weight_pruning_patterns_and_restore(tiny_model, windows):
    before = window_nlls(tiny_model, windows)
    weight = tiny_model.model.layers[0].mlp.up_proj.weight
    original = weight.clone()
    with weight_pruning(tiny_model, "2:4", "magnitude") as masks:
        mask = masks["model.layers.0.mlp.up_proj"]
        assert (mask.reshape(mask.shape[0], -1, 4).sum(-1) == 2).all()
        assert torch.equal(weight, original * mask)
    with weight_pruning(tiny_model, "u50", "magnitude") as masks:
        mask = masks["model.layers.0.mlp.up_proj"]
        assert mask.sum() == mask.numel() // 2
        assert original.abs()[mask].min() >= original.abs()[~mask].max()
    assert torch.equal(weight, original)
    assert torch.equal(window_nlls(tiny_model, windows), before)


def _inputs_of(model, module, windows):
    captured = []
    handle = module.register_forward_pre_hook(lambda m, a: captured.append(a[0].reshape(-1, a[0].shape[-1])))
    with torch.no_grad():
        model(input_ids=windows)
    handle.remove()
    return torch.cat(captured)


def test_wanda_matches_direct_sequential_computation(tiny_model, windows):
    blocks = tiny_model.model.layers
    first, second = blocks[0].mlp.down_proj, blocks[1].self_attn.q_proj

    def direct_mask(module, x, n, m):
        scores = module.weight.abs() * x.norm(dim=0)[None]
        groups = scores.reshape(scores.shape[0], -1, m)
        keep = torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, groups.topk(n, -1).indices, True)
        return keep.reshape(scores.shape)

    expected_first = direct_mask(first, _inputs_of(tiny_model, first, windows), 2, 4)
    with weight_pruning(tiny_model, "2:4", "wanda", calibration=windows, layers=(0,)):
        expected_second = direct_mask(second, _inputs_of(tiny_model, second, windows), 2, 4)
    with weight_pruning(tiny_model, "2:4", "wanda", calibration=windows, batch_size=3) as masks:
        assert torch.equal(masks["model.layers.0.mlp.down_proj"], expected_first)
        assert torch.equal(masks["model.layers.1.self_attn.q_proj"], expected_second)
    with pytest.raises(ValueError, match="calibration"):
        with weight_pruning(tiny_model, "2:4", "wanda"):
            pass


@pytest.mark.parametrize("spec", ["2:4", "3:8", "8:16", "5:12", "16:32", "20:64", "u50", "u30"])
def test_masks_equal_a_stable_sort_with_many_ties(spec):
    pattern = parse_pattern(spec)
    scores = torch.randint(0, 4, (6, 192), generator=torch.Generator().manual_seed(4)).float()
    m = scores.shape[-1] if pattern.is_unstructured else pattern.m
    n = pattern.keep_count(192) if pattern.is_unstructured else pattern.n
    groups = scores.reshape(6, -1, m)
    order = torch.sort(groups, dim=-1, descending=True, stable=True).indices[..., :n]
    expected = torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, order, True).reshape(6, 192)
    assert torch.equal(keep_mask(scores, pattern), expected)
    continuous = torch.randn(6, 192, generator=torch.Generator().manual_seed(5))
    groups = continuous.reshape(6, -1, m)
    order = torch.sort(groups, dim=-1, descending=True, stable=True).indices[..., :n]
    expected = torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, order, True).reshape(6, 192)
    assert torch.equal(keep_mask(continuous, pattern), expected)


def test_siblings_reading_one_input_share_the_transform_only_when_module_independent(tiny_model, windows):
    from lmscalpel.pruning.pruner import find_target_modules

    def run(criterion, *targets):
        with activation_pruning(tiny_model, "8:16", criterion, targets=targets) as pruning:
            return window_nlls(tiny_model, windows), pruning

    _, pruning = run("magnitude", "q_proj", "k_proj", "v_proj")
    assert pruning._shared and pruning.calls == 3 * 2
    captured = {}
    with activation_pruning(tiny_model, "8:16", targets=("q_proj", "k_proj")) as pruning:
        modules = find_target_modules(tiny_model, ("q_proj", "k_proj"))
        hooks = [m.register_forward_pre_hook(lambda m, a, n=n: captured.__setitem__(n, a[0]))
                 for n, m in modules.items()]
        tiny_model(input_ids=windows[:1])
        for h in hooks:
            h.remove()
    assert captured["model.layers.0.self_attn.q_proj"] is captured["model.layers.0.self_attn.k_proj"]
    _, wanda = run("wanda", "q_proj", "k_proj")
    assert not wanda._shared
