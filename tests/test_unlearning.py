"""Unlearning stage: mini-CLEAR, the tiny LLaVA, every loss (finite, has a gradient, hand-checked case), LoRA + L1,
TOFU metrics against scipy, checkpoint resume and an end-to-end run on tiny models."""

from __future__ import annotations

import copy
import math
import random

import numpy as np
import pytest
import scipy.stats
import torch
import torch.nn.functional as F

from lmscalpel.checkpoint import key_digest
from lmscalpel.models import ModelRef
from lmscalpel.unlearning import metrics as M
from lmscalpel.unlearning.data import build_mini_clear, load_clear_subset, rows_of
from lmscalpel.unlearning.evaluate import (UTILITY_TASKS, Sample, Task, evaluate_model, evaluate_task, gold_ratios,
                                           summarise, tasks_for)
from lmscalpel.unlearning.items import IGNORE, Encoder, Item, rows_to_items
from lmscalpel.unlearning.lora import attach_lora, l1_penalty, lora_parameters
from lmscalpel.unlearning.losses import METHODS, Context, Reference, forward, get_method
from lmscalpel.unlearning.train import decayed_parameter_names, train_loop, unlearn, unlearn_key
from lmscalpel.unlearning.vlm import build_tiny_llava, load_vlm, save_vlm

FRACTIONS = {"forget10": 0.1, "forget34": 0.34}
PROMPTS = {"caption_prompts": ["Describe the image.", "Who is this?"], "face_prompt": "The name of the person is "}
PARAMS = {"npo": {"beta": 0.1}, "dpo": {"beta": 0.1}, "rmu": {"layer": None, "coeff": None, "alpha": 100.0},
          "scrub": {"alpha": 1.0, "gamma": 1.0, "msteps": None}, "llmu": {"epsilons": [0.5, 1.0, 1.0], "k": 2},
          "sku": {"epsilons": [2.5, 1.0, 0.5], "k": 2, "negation_scale": 1.0}}


@pytest.fixture(scope="module")
def clear_dir(tmp_path_factory, toyworld_dir):
    out = tmp_path_factory.mktemp("clear") / "mini-clear"
    build_mini_clear(toyworld_dir, out, forget_fractions=FRACTIONS, real_fraction=0.4, n_perturbed=2,
                     n_real_world=6, seed=0)
    return str(out)


@pytest.fixture(scope="module")
def vlm_dir(tmp_path_factory, tiny_lm_dir):
    model, processor = build_tiny_llava(ModelRef(str(tiny_lm_dir)), image_size=32, patch_size=8,
                                        vision_hidden_size=16, vision_layers=1, vision_heads=2,
                                        vision_intermediate_size=32, seed=0)
    out = tmp_path_factory.mktemp("vlm") / "vlm"
    save_vlm(model, processor, out)
    return str(out)


@pytest.fixture(scope="module")
def vlm(vlm_dir):
    return load_vlm(ModelRef(vlm_dir))


@pytest.fixture(scope="module")
def items(clear_dir):
    def load(subset):
        return rows_to_items(rows_of(load_clear_subset(clear_dir, subset)), face_prompt=PROMPTS["face_prompt"],
                             caption_prompts=PROMPTS["caption_prompts"])
    forget, retain = load("forget34+tofu"), load("retain66+tofu")
    # one caption item and one text item on each side: both modalities in one batch
    pick = lambda xs: [next(i for i in xs if i.image is not None), next(i for i in xs if i.image is None)]  # noqa
    return pick(forget), pick(retain), load("full+tofu")


def _context(vlm, items, method, *, retain_weight=1.0, reference_model=None, params=None):
    model, processor = vlm
    model = copy.deepcopy(model).train().requires_grad_(True)
    forget, retain, everyone = items
    ctx = Context(model=model, reference=None, encoder=Encoder(processor, 128),
                  params={**PARAMS.get(method, {}), **(params or {}), "seed": 0}, retain_weight=retain_weight,
                  n_epochs=2, rng=random.Random(0), answer_pool=everyone, forget_pool=forget)
    ref = Reference(reference_model if reference_model is not None else model, uses_adapter=False)
    ctx.reference = ref
    return ctx


def _total(losses):
    return [loss() if callable(loss) else loss for loss in losses]


def _hand_nll(ctx, items):
    batch = ctx.batch(items)
    logits = forward(ctx.model, batch).logits[:, :-1]
    labels = batch["labels"][:, 1:]
    per_tok = F.cross_entropy(logits.transpose(1, 2), labels, ignore_index=IGNORE, reduction="none")
    return (per_tok.sum(1) / (labels != IGNORE).sum(1)).mean()


# ---------------------------------------------------------------------------------------------------------------
# data and model
# ---------------------------------------------------------------------------------------------------------------

def test_mini_clear_has_clear_subsets_and_columns(clear_dir):
    full = rows_of(load_clear_subset(clear_dir, "full"))
    forget = rows_of(load_clear_subset(clear_dir, "forget34"))
    retain = rows_of(load_clear_subset(clear_dir, "retain66"))
    small = rows_of(load_clear_subset(clear_dir, "forget10"))
    assert {r["name"] for r in forget} | {r["name"] for r in retain} == {r["name"] for r in full}
    assert not {r["name"] for r in forget} & {r["name"] for r in retain}
    assert {r["name"] for r in small} <= {r["name"] for r in forget}  # nested like TOFU
    perturbed = rows_of(load_clear_subset(clear_dir, "forget34_perturbed"))
    assert set(perturbed[0]) >= {"image", "caption", "name", "paraphrased_caption", "perturbed_captions",
                                 "perturbed_names"}
    for row in perturbed:
        assert row["name"] not in row["perturbed_names"] and len(row["perturbed_captions"]) == 2
        assert row["name"] in row["paraphrased_caption"]
    tofu = rows_of(load_clear_subset(clear_dir, "forget34+tofu"))
    assert sum(r["image"] is None for r in tofu) > 0 and sum(r["image"] is not None for r in tofu) == len(forget)
    real = rows_of(load_clear_subset(clear_dir, "real_faces"))
    assert all(r["answer"] in r["options"] for r in real)
    assert not {r["answer"] for r in real} & {r["name"] for r in full}


def test_tiny_llava_roundtrip_and_prompt_masking(vlm_dir, vlm, items):
    model, processor = vlm
    reloaded, _ = load_vlm(ModelRef(vlm_dir))
    encoder = Encoder(processor, 128)
    forget, _, _ = items
    batch = encoder.encode(forget)
    assert batch["pixel_values"].shape == (1, 3, 32, 32)
    assert int((batch["input_ids"][0] == model.config.image_token_id).sum()) == 16  # (32 / 8)^2 patches
    answer = batch["labels"][1][batch["labels"][1] != IGNORE]
    assert processor.tokenizer.decode(answer) == forget[1].answer + processor.tokenizer.eos_token
    with torch.no_grad():
        torch.testing.assert_close(forward(model, batch).logits, forward(reloaded, batch).logits)


def test_max_length_never_cuts_image_tokens(tiny_lm_dir, items):
    """A processor that expands <image> into more tokens than max_length (LLaVA-1.5: 576 > 512): the budget counts
    text tokens, image tokens come on top, and an item without room for an answer names the config key."""
    model, processor = build_tiny_llava(ModelRef(str(tiny_lm_dir)), image_size=32, patch_size=4,
                                        vision_hidden_size=16, vision_layers=1, vision_heads=2,
                                        vision_intermediate_size=32, seed=0)
    caption = items[0][0]
    n_image = (32 // 4) ** 2
    full = Encoder(processor, 4096).encode([caption])
    n_text = int(full["attention_mask"].sum()) - n_image
    assert n_image > n_text  # the image dominates the sequence, as on LLaVA-1.5
    batch = Encoder(processor, n_text).encode([caption])  # exactly the text budget of prompt + answer
    for key in ("input_ids", "labels", "attention_mask"):
        torch.testing.assert_close(batch[key], full[key])
    short = Encoder(processor, n_text - 2).encode([caption])  # cuts the answer's tail, never image tokens
    assert int((short["input_ids"] == model.config.image_token_id).sum()) == n_image
    assert int((short["labels"] != IGNORE).sum()) == int((full["labels"] != IGNORE).sum()) - 2
    with torch.no_grad():
        assert torch.isfinite(forward(model, short).logits).all()
    answer_tokens = int((full["labels"] != IGNORE).sum())
    with pytest.raises(ValueError, match="unlearning.max_length"):
        Encoder(processor, n_text - answer_tokens).encode([caption])


# ---------------------------------------------------------------------------------------------------------------
# losses
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_loss_is_finite_and_has_a_gradient(vlm, items, method):
    ctx = _context(vlm, items, method)
    spec = get_method(method)
    if spec.setup:
        spec.setup(ctx, items[0])
    first = _total(spec.losses(ctx, items[0], items[1]))[-1]
    assert torch.isfinite(first)
    first.backward()
    grads = [p.grad for p in ctx.model.parameters() if p.grad is not None]
    assert grads and any(float(g.abs().sum()) > 0 for g in grads)


def test_ga_gd_idk_match_hand_computed_nll(vlm, items):
    forget, retain, _ = items
    ctx = _context(vlm, items, "ga")
    ga = get_method("ga").losses(ctx, forget, retain)[0]
    torch.testing.assert_close(ga, -_hand_nll(ctx, forget))
    gd = get_method("gd").losses(ctx, forget, retain)[0]
    torch.testing.assert_close(gd, -_hand_nll(ctx, forget) + _hand_nll(ctx, retain))
    ctx.rng = random.Random(5)
    idk = get_method("idk").losses(ctx, forget, retain)[0]
    idk_items = [f.with_answer(a) for f, a in zip(forget, _idk_draws(5, len(forget)))]
    torch.testing.assert_close(idk, _hand_nll(ctx, idk_items) + _hand_nll(ctx, retain))


def _idk_draws(seed, n):
    from lmscalpel.unlearning.losses import IDK_ANSWERS
    rng = random.Random(seed)
    return [rng.choice(IDK_ANSWERS) for _ in range(n)]


def test_reference_based_losses_at_the_reference_point(vlm, items):
    """At θ = θ₀: KL term 0 (KL = GA); NPO and DPO forget terms = (2/β) ln 2; SCRUB's max-step is 0."""
    forget, retain, _ = items
    ctx = _context(vlm, items, "kl")
    torch.testing.assert_close(get_method("kl").losses(ctx, forget, retain)[0], -_hand_nll(ctx, forget))
    for method in ("npo", "dpo"):
        ctx = _context(vlm, items, method, retain_weight=0.0)
        value = get_method(method).losses(ctx, forget, retain)[0]
        assert value.item() == pytest.approx(2 / 0.1 * math.log(2), rel=1e-5)
    ctx = _context(vlm, items, "scrub")
    losses = get_method("scrub").losses(ctx, forget, retain)
    assert len(losses) == 2 and abs(losses[0].item()) < 1e-6
    ctx.epoch = 1  # msteps = ceil(2 / 2) = 1: only min-steps from now on
    assert len(get_method("scrub").losses(ctx, forget, retain)) == 1


def test_npo_gradient_tends_to_ga_on_summed_nll(vlm, items):
    """NPO's gradient is E[w ∇log π] with w → 1 as β → 0: gradient ascent on the summed NLL."""
    forget, retain, _ = items
    reference = copy.deepcopy(vlm[0])
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in reference.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=gen))  # θ ≠ θ₀, so w ≠ 1 unless β → 0
    ctx = _context(vlm, items, "npo", retain_weight=0.0, reference_model=reference, params={"beta": 1e-4})
    get_method("npo").losses(ctx, forget, retain)[0].backward()
    npo_grads = [p.grad.clone() for p in ctx.model.parameters() if p.grad is not None]
    ctx.model.zero_grad()
    batch = ctx.batch(forget)
    logits = forward(ctx.model, batch).logits[:, :-1]
    summed = -F.cross_entropy(logits.transpose(1, 2), batch["labels"][:, 1:], ignore_index=IGNORE,
                              reduction="none").sum(1)
    summed.mean().backward()  # minimising mean log π = ascending the summed NLL
    ga_grads = [p.grad for p in ctx.model.parameters() if p.grad is not None]
    scale = max(float(b.abs().max()) for b in ga_grads)  # w = 1 + O(β·Δlog π): compare on the gradients' scale
    for a, b in zip(npo_grads, ga_grads):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-3 * scale)


def test_rmu_llmu_sku_reduce_to_their_definitions(vlm, items):
    forget, retain, _ = items
    ctx = _context(vlm, items, "rmu", params={"alpha": 0.0, "coeff": 3.0})
    get_method("rmu").setup(ctx, forget)
    assert ctx.state["control"].norm().item() == pytest.approx(1.0)
    batch = ctx.batch(forget)
    layer = math.ceil(2 / 4)  # ⌈L/4⌉ with L = 2
    hidden = forward(ctx.model, batch, hidden=True).hidden_states[layer + 1]
    # open-unlearning: answer tokens only (labels != -100), averaged within each sample, then over samples
    per_sample = [((hidden[i] - 3.0 * ctx.state["control"]) ** 2).mean(-1)[batch["labels"][i] != IGNORE].mean()
                  for i in range(len(forget))]
    expected = torch.stack(per_sample).mean()
    torch.testing.assert_close(get_method("rmu").losses(ctx, forget, retain)[0], expected)
    pooled = ((hidden - 3.0 * ctx.state["control"]) ** 2).mean(-1)[batch["attention_mask"].bool()].mean()
    assert not torch.isclose(expected, pooled)  # the two conventions differ on this batch
    assert get_method("rmu").trainable(ctx.model, ctx.params) == [r"layers\.0\.mlp\.down_proj",
                                                                   r"layers\.1\.mlp\.down_proj"]

    ctx = _context(vlm, items, "llmu", params={"epsilons": [1.0, 0.0, 0.0]})
    torch.testing.assert_close(get_method("llmu").losses(ctx, forget, retain)[0], -_hand_nll(ctx, forget))
    ctx = _context(vlm, items, "llmu", params={"epsilons": [0.0, 0.0, 1.0]})
    rbatch = ctx.batch(retain)
    logp = torch.log_softmax(forward(ctx.model, rbatch).logits, -1)
    entropy = -(logp.exp() * logp).sum(-1)[rbatch["attention_mask"].bool()].mean()  # CE(p, p) = H(p) at θ₀
    torch.testing.assert_close(get_method("llmu").losses(ctx, forget, retain)[0], entropy)

    ctx = _context(vlm, items, "sku", params={"epsilons": [1.0, 0.0, 0.0]})
    torch.testing.assert_close(get_method("sku").losses(ctx, forget, retain)[0], _hand_nll(ctx, forget))
    model = ctx.model
    initial = {n: p.detach().clone() for n, p in model.named_parameters()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.5)
    get_method("sku").finalize(model, initial, False, ctx.params)
    for n, p in model.named_parameters():
        torch.testing.assert_close(p, initial[n] - 0.5)  # θ₀ − (θ_bad − θ₀)


def test_nll_reduction_token_is_hf_loss(vlm, items):
    """nll_reduction "token" is HF's ``.loss`` (CLEAR's and open-unlearning's retain NLL); "sample" is E ℓ_θ."""
    forget, retain, _ = items
    ctx = _context(vlm, items, "gd")
    batch = ctx.batch(retain)  # a caption and a text item: answers of different lengths
    hf_loss = ctx.model(**batch).loss
    torch.testing.assert_close(ctx.nll(retain), _hand_nll(ctx, retain))
    ctx.nll_reduction = "token"
    torch.testing.assert_close(ctx.nll(retain), hf_loss)
    assert not torch.isclose(hf_loss, _hand_nll(ctx, retain))


def test_weight_decay_skips_biases_and_norms(vlm):
    """As the HF Trainer: AdamW decays weight matrices, not biases or norm weights."""
    decayed = decayed_parameter_names(vlm[0])
    names = dict(vlm[0].named_parameters())
    assert any(n.endswith("q_proj.weight") for n in decayed) and any("embed_tokens" in n for n in decayed)
    exempt = [n for n in names if n.endswith("bias") or "norm" in n]
    assert exempt and not set(exempt) & decayed
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.LayerNorm(2))
    before = {n: p.detach().clone() for n, p in module.named_parameters()}
    named = dict(module.named_parameters())
    # zero gradients: one AdamW step only applies the decay, p <- p (1 - lr * wd)
    train_loop(named, lambda step: [0.0 * sum(p.sum() for p in named.values())], n_steps=1, lr=0.1,
               weight_decay=0.5, warmup_steps=0, checkpoint_dir=None, checkpoint_every=1,
               decayed=decayed_parameter_names(module))
    torch.testing.assert_close(module[0].weight, before["0.weight"] * (1 - 0.1 * 0.5))
    for name in ("0.bias", "1.weight", "1.bias"):
        torch.testing.assert_close(named[name], before[name])


# ---------------------------------------------------------------------------------------------------------------
# LoRA + L1
# ---------------------------------------------------------------------------------------------------------------

def test_l1_penalty_is_lambda_times_abs_sum_over_lora_only(vlm):
    model = attach_lora(copy.deepcopy(vlm[0]), r=4, alpha=8, dropout=0.0)
    with torch.no_grad():
        for p in lora_parameters(model):
            p.copy_(torch.randn_like(p))
    names = [n for n, _ in model.named_parameters() if "lora_" in n]
    assert names and all("language_model" in n for n in names)  # never the vision tower or projector
    expected = 0.1 * sum(p.detach().abs().sum() for p in lora_parameters(model))
    penalty = l1_penalty(model, 0.1)
    torch.testing.assert_close(penalty, expected)
    penalty.backward()
    for name, p in model.named_parameters():
        if "lora_" in name:
            torch.testing.assert_close(p.grad, 0.1 * torch.sign(p.detach()))
        else:
            assert p.grad is None
    with torch.no_grad():
        next(p for n, p in model.named_parameters() if "lora_" not in n).add_(1.0)
    torch.testing.assert_close(l1_penalty(model, 0.1), expected)  # base weights do not count


# ---------------------------------------------------------------------------------------------------------------
# metrics
# ---------------------------------------------------------------------------------------------------------------

def test_probability_is_normalised_on_every_task_but_the_caption_and_tofu_sets(clear_dir, monkeypatch):
    """CLEAR normalises P(true) over the true and perturbed answers on every task but its eval_log ones."""
    nll = {"true": 0.5, "para": 0.7, "p1": 1.0, "p2": 2.0}
    monkeypatch.setattr("lmscalpel.unlearning.evaluate.score_items",
                        lambda model, encoder, items, batch_size: [nll[i.answer] for i in items])
    samples = [Sample(Item("q", "true"), "para", ("p1", "p2"))]
    normalised = math.exp(-0.5) / (math.exp(-0.5) + math.exp(-1.0) + math.exp(-2.0))
    expected = {"forget": math.exp(-0.5), "retain": math.exp(-0.5), "tofu_forget": math.exp(-0.5),
                "tofu_retain": math.exp(-0.5), "forget_facerec": normalised, "retain_facerec": normalised,
                "real_faces": normalised, "real_world": normalised}
    tasks = tasks_for("forget10", clear_dir)
    assert {t.name for t in tasks} == set(expected)
    for task in tasks:
        result = evaluate_task(None, None, task, samples, batch_size=1, max_new_tokens=1, generate_answers=False)
        assert result["prob"] == pytest.approx(expected[task.name]), task.name


def _task_results(rng):
    names = ["forget", "forget_facerec", "retain", "retain_facerec", "real_faces", "real_world", "tofu_forget",
             "tofu_retain"]
    return {name: {"prob": rng.uniform(0.2, 0.9), "rouge": rng.uniform(0.2, 0.9), "truth_ratio": rng.uniform(0.2, 0.9),
                   "truth_ratios": rng.lognormal(0.0, 1.0, size=20).tolist()} for name in names}


def test_forget_quality_uses_forget_and_utility_clears_tasks():
    """Headline FQ: KS test on the Forget truth ratios only; utility: hmean over Real Faces, Real World, Retain and
    Retain FaceRec (CLEAR's mm/calculate_metrics.py)."""
    rng = np.random.default_rng(0)
    results = _task_results(rng)
    results["forget_facerec"]["truth_ratios"] = rng.lognormal(3.0, 0.2, size=20).tolist()  # far from gold
    gold = {name: rng.lognormal(0.0, 1.0, size=20).tolist() for name in ("forget", "forget_facerec", "tofu_forget")}
    flat = summarise(results, gold)
    assert flat["forget_quality"] == pytest.approx(scipy.stats.ks_2samp(results["forget"]["truth_ratios"],
                                                                        gold["forget"]).pvalue)
    pooled = scipy.stats.ks_2samp(results["forget"]["truth_ratios"] + results["forget_facerec"]["truth_ratios"],
                                  gold["forget"] + gold["forget_facerec"]).pvalue
    assert flat["forget_quality"] != pytest.approx(pooled)
    assert flat["log_forget_quality_ln"] == pytest.approx(math.log(flat["forget_quality"]))
    values = [results[t][k] for t in UTILITY_TASKS for k in ("prob", "rouge", "truth_ratio")]
    assert set(UTILITY_TASKS) == {"real_faces", "real_world", "retain", "retain_facerec"}
    assert flat["model_utility"] == pytest.approx(scipy.stats.hmean(values))
    results["tofu_retain"]["prob"] = 1e-6  # TOFU's text retain set is not one of CLEAR's utility tasks
    assert summarise(results, gold)["model_utility"] == pytest.approx(flat["model_utility"])


def test_truth_ratio_forget_quality_and_utility_match_scipy():
    rng = np.random.default_rng(0)
    para_tokens = [rng.uniform(0.05, 0.9, size=n) for n in (3, 5, 4)]
    pert_tokens = [[rng.uniform(0.05, 0.9, size=n) for n in (2, 6)] for _ in range(3)]
    para_nll = [-np.mean(np.log(t)) for t in para_tokens]
    pert_nll = [[-np.mean(np.log(t)) for t in ts] for ts in pert_tokens]
    expected = [scipy.stats.gmean(p) / scipy.stats.gmean([scipy.stats.gmean(t) for t in ts])
                for p, ts in zip(para_tokens, pert_tokens)]
    ratios = M.truth_ratios(para_nll, pert_nll)
    np.testing.assert_allclose(ratios, expected)
    assert M.truth_ratio_score(ratios, forget=True) == pytest.approx(np.mean(np.minimum(ratios, 1 / ratios)))
    assert M.truth_ratio_score(ratios, forget=False) == pytest.approx(np.mean(np.maximum(0, 1 - 1 / ratios)))
    a, b = rng.normal(size=30), rng.normal(0.5, 1.0, size=25)
    assert M.forget_quality(a, b) == pytest.approx(scipy.stats.kstest(a, b).pvalue)
    assert M.forget_quality(a, a) == pytest.approx(1.0)
    values = [0.3, 0.7, 0.5]
    assert M.harmonic_mean(values) == pytest.approx(scipy.stats.hmean(values))
    assert M.harmonic_mean([0.3, 0.0]) == 0.0
    assert M.normalised_probability([0.5], [[1.0, 2.0]]) == pytest.approx(
        np.exp(-0.5) / (np.exp(-0.5) + np.exp(-1.0) + np.exp(-2.0)))


# ---------------------------------------------------------------------------------------------------------------
# training, resume, end to end
# ---------------------------------------------------------------------------------------------------------------

def test_train_loop_resume_gives_the_same_parameters(tmp_path):
    class Killed(Exception):
        pass

    def run(ckpt, kill_at=None):
        torch.manual_seed(0)
        layer = torch.nn.Linear(4, 2)
        data = torch.randn(8, 4, generator=torch.Generator().manual_seed(1))

        def losses(step):
            if step == kill_at:
                raise Killed
            return [layer(data[step % 8]).pow(2).sum()]

        try:
            train_loop(dict(layer.named_parameters()), losses, n_steps=6, lr=0.1, weight_decay=0.0,
                       warmup_steps=1, checkpoint_dir=ckpt, checkpoint_every=2)
        except Killed:
            pass
        return layer

    straight = run(None)
    killed = run(tmp_path / "ck", kill_at=3)  # dies after the checkpoint at step 2
    resumed = run(tmp_path / "ck")
    assert not torch.equal(killed.weight, straight.weight)
    for a, b in zip(straight.parameters(), resumed.parameters()):
        torch.testing.assert_close(a, b)


def test_train_loop_resumes_only_a_run_of_the_same_settings(tmp_path):
    """Issue 23 item 4: run twice in one checkpoint directory with lr 0.1 then 0.5, it returned the lr 0.1 weights."""
    def run(ckpt, lr, **kwargs):
        torch.manual_seed(0)
        layer = torch.nn.Linear(4, 2)
        data = torch.randn(8, 4, generator=torch.Generator().manual_seed(1))
        steps = []

        def losses(step):
            steps.append(step)
            return [layer(data[step % 8]).pow(2).sum()]

        args = {"weight_decay": 0.0, "warmup_steps": 1, "checkpoint_every": 2, **kwargs}
        train_loop(dict(layer.named_parameters()), losses, n_steps=6, lr=lr, checkpoint_dir=ckpt, **args)
        return layer.weight.detach().clone(), steps

    slow, steps = run(tmp_path / "ck", 0.1)
    assert steps == list(range(6))
    fast, steps = run(tmp_path / "ck", 0.5)
    assert steps == list(range(6)) and torch.equal(fast, run(None, 0.5)[0]) and not torch.equal(fast, slow)
    resumed, steps = run(tmp_path / "ck", 0.5, checkpoint_every=3)  # nothing that changes the numbers changed
    assert steps == [] and torch.equal(resumed, fast)
    assert run(tmp_path / "ck", 0.5, key={"method": "npo"})[1] == list(range(6))  # the caller's key counts too


def test_unlearn_key_holds_its_own_method_and_lambda_only():
    cfg = {"lr": 1e-3, "epochs": 1, "checkpoint_every": 5, "methods": {"npo": {"beta": 0.1}, "dpo": {"beta": 0.1}},
           "l1": {"lora_r": 4, "lora_alpha": 8, "lambdas": [0.1]}}

    def key(c, method="npo", l1=0.1):
        params = {**c["methods"][method], "seed": 0}
        return key_digest(unlearn_key(c, method, params, "forget10", "both", l1, PROMPTS, ModelRef("m"), {}))

    same = [{**cfg, "methods": {**cfg["methods"], "dpo": {"beta": 0.5}}}, {**cfg, "checkpoint_every": 7},
            {**cfg, "l1": {**cfg["l1"], "lambdas": [0.1, 0.01]}}]
    assert all(key(c) == key(cfg) for c in same)
    other = [{**cfg, "lr": 2e-3}, {**cfg, "methods": {**cfg["methods"], "npo": {"beta": 0.5}}},
             {**cfg, "l1": {**cfg["l1"], "lora_r": 8}}]
    assert all(key(c) != key(cfg) for c in other) and key(cfg, l1=0.01) != key(cfg) != key(cfg, "dpo")


def test_unlearn_with_l1_and_evaluate_end_to_end(vlm_dir, clear_dir, tmp_path):
    cfg = {"lr": 1e-3, "epochs": 1, "batch_size": 4, "weight_decay": 0.0, "warmup_epochs": 0, "retain_weight": 1.0,
           "checkpoint_every": 5, "max_length": 128, "face_items": True, "methods": PARAMS,
           "nll_reduction": "sample", "l1": {"lora_r": 4, "lora_alpha": 8}}
    model, processor, info = unlearn(original=ModelRef(vlm_dir), source=clear_dir, revision=None,
                                     split="forget34", modality="both", method="npo", l1_lambda=0.1, cfg=cfg,
                                     prompts=PROMPTS, checkpoint_dir=tmp_path / "ck", seed=0)
    assert not any("lora_" in n for n, _ in model.named_parameters())  # merged
    assert math.isfinite(info["final_loss"]) and info["l1_norm_lora"] > 0
    kwargs = dict(split="forget34", source=clear_dir, revision=None, max_rows=4, batch_size=16, max_new_tokens=4,
                  max_generate_rows=2, **PROMPTS)
    results = evaluate_model(model, Encoder(processor, 128), **kwargs)
    assert set(results) == {"forget", "retain", "forget_facerec", "retain_facerec", "real_faces", "real_world",
                            "tofu_forget", "tofu_retain"}
    flat = summarise(results, gold_ratios(results))
    assert flat["forget_quality"] == pytest.approx(1.0)  # the same model as its own gold
    assert all(0 <= flat[k] <= 1 for k in ("real", "retain", "forget", "model_utility"))
    original, _ = load_vlm(ModelRef(vlm_dir))
    assert any(not torch.equal(a, b) for a, b in zip(model.state_dict().values(), original.state_dict().values()))


def test_robustness_row_steers_and_prunes(vlm, clear_dir):
    from lmscalpel.unlearning.robustness import measure

    model, processor = vlm
    eval_cfg = {"max_rows": 3, "batch_size": 16, **PROMPTS}
    results = evaluate_model(model, Encoder(processor, 128), split="forget34", source=clear_dir, revision=None,
                             max_new_tokens=1, generate_answers=False, **eval_cfg)
    cfg = {"steering_layer": 0, "steering_scale": 4.0, "n_directions": 2, "pruning_pattern": "8:16"}
    record = measure(model, processor, source=clear_dir, revision=None, split="forget34", gold=gold_ratios(results),
                     cfg=cfg, eval_cfg=eval_cfg, max_length=128, seed=0)
    assert record["none_forget_quality"] == pytest.approx(1.0)  # unperturbed model against its own ratios
    assert record["steering_alpha"] > 0
    assert record["steering_forget"] != pytest.approx(record["none_forget"])  # the interventions act
    assert record["pruning_forget"] != pytest.approx(record["none_forget"])


def test_table_and_figures(tmp_path):
    from lmscalpel.io import write_json
    from lmscalpel.unlearning.report import (plot_forget_retain, plot_scatter, plot_split_bars, write_robustness,
                                             write_table)

    paths = []
    runs = [("ga", None, "both"), ("ga", 0.01, "both"), ("ga", 0.001, "both"), ("gold", None, "none")]
    for i, (method, lam, modality) in enumerate(runs):
        path = tmp_path / f"{i}.json"
        write_json(path, {"method": method, "split": "forget10", "modality": modality, "l1": lam is not None,
                          "l1_lambda": lam, "real": 0.5, "retain": 0.4 + i / 10, "forget": 0.3,
                          "forget_quality": 0.01 * (i + 1), "log_forget_quality_log10": math.log10(0.01 * (i + 1)),
                          "model_utility": 0.2 * (i + 1)})
        paths.append(path)
    table = write_table(paths, tmp_path / "t.csv", tmp_path / "t.md")
    assert len(table) == 4 and "| ga |" in (tmp_path / "t.md").read_text()
    assert sorted(table["l1_lambda"].dropna()) == [0.001, 0.01]  # one row per λ of the sweep
    plot_scatter(table, tmp_path / "s.png")
    plot_split_bars(table, tmp_path / "b.png")
    plot_forget_retain(table, tmp_path / "fr.png")
    rob = tmp_path / "r.json"
    write_json(rob, {"method": "ga", "split": "forget10", "modality": "both", "l1": False, "none_forget_quality": 0.1,
                     "steering_forget_quality": 0.2, "pruning_forget_quality": 0.05})
    write_robustness([rob], tmp_path / "r.csv", tmp_path / "r.png")
    for name in ("s.png", "b.png", "fr.png", "r.png"):
        assert (tmp_path / name).stat().st_size > 1000
