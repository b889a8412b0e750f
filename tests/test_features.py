"""Feature metrics on planted structure (no model, no trained SAE): absorption, SCR, TPP, sparse probing,
max-cosine, and the comparison table."""

from __future__ import annotations

import math
import random

import pytest
import torch

from lmscalpel.features import absorption as ab
from lmscalpel.features.compare import comparison_table, run_compare
from lmscalpel.features.data import build_prompts, icl_prompt, spelling_words, split_rows, vocab_words
from lmscalpel.features.geometry import distinct_features, max_cosine
from lmscalpel.features.probes import BinaryProbe
from lmscalpel.features.scr_tpp import (normalised_scr, one_vs_rest_sets, scr_run, scr_sets, tpp_run,
                                        train_probes, ProbeConfig)
from lmscalpel.features.sparse_probing import sparse_probe_task
from lmscalpel.io import write_json


class StandInSAE:
    """encode = ReLU(x @ W_dec.T) with unit rows, decode = f @ W_dec; optional hand-written absorption rule."""

    def __init__(self, w_dec: torch.Tensor, absorb=None):
        self.W_dec = w_dec / w_dec.norm(dim=1, keepdim=True)
        self.W_enc = self.W_dec.T.clone()
        self.absorb = absorb

    def encode(self, x):
        f = torch.relu(x.float() @ self.W_enc)
        return self.absorb(x, f) if self.absorb else f

    def decode(self, f):
        return f @ self.W_dec


# --- absorption ---

D_ABS, MARK = 40, 30  # letters use dims 0..25; dim 30 marks the words that get absorbed


def _letter_data(n_words: int, marked_letter: int | None, gen: torch.Generator):
    labels = torch.arange(26).repeat_interleave(n_words)
    x = 3 * torch.nn.functional.one_hot(labels, D_ABS).float()
    x[:, 32:] = 0.3 * torch.randn(len(labels), D_ABS - 32, generator=gen)  # word-specific noise
    if marked_letter is not None:
        rows = (labels == marked_letter).nonzero().flatten()[: n_words // 2]
        x[rows, MARK] = 3.0
    return x, labels


def _absorption_inputs():
    gen = torch.Generator().manual_seed(0)
    train_x, train_y = _letter_data(6, None, gen)
    test_x, test_y = _letter_data(3, None, gen)
    absorb_x, absorb_y = _letter_data(4, 0, gen)  # half of the 'A' words carry the marker
    spelling = {"train_x": train_x, "train_y": train_y, "test_x": test_x, "test_y": test_y,
                "absorb_x": absorb_x, "absorb_y": absorb_y}
    probe_w, probe_b = torch.eye(D_ABS)[:26], torch.full((26,), -1.5)
    f1 = ab.per_letter_f1(test_x @ probe_w.T + probe_b, test_y)
    return spelling, probe_w, probe_b, f1


def _letter_saes():
    """Clean: one latent per dimension (± for the noise dims). Absorbing: plus a latent along e_A + e_mark that
    replaces the 'A' latent and the marker latent on marked words."""
    eye = torch.eye(D_ABS)
    clean_rows = torch.cat([eye, -eye[32:]])
    absorbing_row = (eye[0] + eye[MARK])[None]
    absorbing_idx = len(clean_rows)

    def absorb(x, f):
        marked = x[:, MARK] > 0.5
        f[:, absorbing_idx] = 0.0
        f[marked, absorbing_idx] = (x[marked, 0] + x[marked, MARK]) / 2 ** 0.5
        f[marked, 0] = 0.0
        f[marked, MARK] = 0.0
        return f

    return StandInSAE(clean_rows), StandInSAE(torch.cat([clean_rows, absorbing_row]), absorb)


def test_absorbing_latent_scores_absorption_and_clean_control_does_not():
    spelling, probe_w, probe_b, f1 = _absorption_inputs()
    assert min(f1.values()) == 1.0
    clean, absorbing = _letter_saes()
    cfg = ab.AbsorptionConfig(min_letters=20, sparse_epochs=20, sparse_batch_size=32)
    m_clean = ab.absorption_metrics(clean, spelling, probe_w, probe_b, f1, cfg, seed=0)
    m_abs = ab.absorption_metrics(absorbing, spelling, probe_w, probe_b, f1, cfg, seed=0)
    assert m_clean["n_letters_passing"] == 26
    assert m_clean["letter_A_absorption_fraction"] == pytest.approx(0.0, abs=1e-6)
    assert m_clean["mean_absorption_fraction_score"] == pytest.approx(0.0, abs=1e-6)
    # the two marked words of four are fully absorbed; nothing else changes
    assert m_abs["letter_A_absorption_fraction"] == pytest.approx(0.5)
    assert m_abs["letter_A_full_absorption_rate"] == pytest.approx(0.5)
    assert m_abs["letter_B_absorption_fraction"] == pytest.approx(0.0, abs=1e-6)
    assert m_abs["mean_absorption_fraction_score"] > m_clean["mean_absorption_fraction_score"]


def test_num_split_features_counts_the_main_latents_as_saebench_reports():
    """SAEBench's ``mean_num_split_features`` is len(split_feats): one clean latent per letter counts 1, not 0."""
    spelling, probe_w, probe_b, f1 = _absorption_inputs()
    clean, _ = _letter_saes()
    cfg = ab.AbsorptionConfig(min_letters=20, sparse_epochs=20, sparse_batch_size=32)
    m = ab.absorption_metrics(clean, spelling, probe_w, probe_b, f1, cfg, seed=0)
    per_letter = [m[f"letter_{ch}_num_split_features"] for ch in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"]
    assert min(per_letter) >= 1
    assert m["mean_num_split_features"] == pytest.approx(sum(per_letter) / 26)


def test_absorption_gate_names_config_key():
    spelling, probe_w, probe_b, f1 = _absorption_inputs()
    clean, _ = _letter_saes()
    with pytest.raises(ValueError, match="min_letters"):
        ab.absorption_metrics(clean, spelling, probe_w, probe_b, {"A": 0.9, "B": 0.1}, ab.AbsorptionConfig(), 0)


def test_partial_absorption_fraction_follows_formula():
    cfg = ab.AbsorptionConfig()
    probe = torch.tensor([1.0, 0.0, 0.0])
    cos = torch.tensor([1.0, 0.6, 0.0])
    x = torch.tensor([3.0, 0.0, 1.0])  # P = 3
    a = torch.tensor([1.0, 2.5, 0.0])  # M = 1, absorber q = 1.5 ≥ 0.4·P → u = min(1.5, 2) = 1.5
    frac, full = ab.word_absorption(x, a, probe, cos, [0], cfg)
    assert frac == pytest.approx(1.5 / 2.5)
    assert not full  # the main latent fired


def test_main_latents_stop_when_f1_stops_improving():
    gen = torch.Generator().manual_seed(0)
    y = torch.arange(40) % 2 == 0
    a = torch.rand(40, 6, generator=gen)
    a[:, 3] = y.float() * 2  # latent 3 alone separates the letter
    weights = torch.tensor([0.1, 0.0, 0.2, 1.0, 0.3, 0.0])
    main, f1s = ab.main_latents(a, a, y, y, weights, ab.AbsorptionConfig())
    assert main == [3] and f1s[0] == 1.0 and len(f1s) == 2


# --- prompts ---

def test_icl_prompt_marks_the_spelled_word():
    p = icl_prompt("zebra", ["apple", "bread"], "{word} has the first letter:")
    assert p.text == "\napple has the first letter: A\nbread has the first letter: B\nzebra has the first letter:"
    assert p.text[:p.word_end].endswith("\nzebra") and p.letter == "Z"
    prompts = build_prompts(["apple", "bread"], ["apple", "bread", "cat"], 5, "{word}:", 2, random.Random(0))
    assert len(prompts) == 4 and all(p.word not in p.text[:p.word_end - len(p.word)] for p in prompts)


def _word_level_tokenizer(vocab: list[str], decoder):
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.WordLevel({t: i for i, t in enumerate(vocab)}, unk_token="<unk>"))
    core.decoder = decoder
    return PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>")


def test_vocab_words_keep_single_token_words_with_their_leading_space():
    """SAEBench's rule: " cat" and "cat" are two single-token words; the space is kept, not stripped and merged."""
    from tokenizers import decoders

    byte_level = _word_level_tokenizer(["<unk>", "\u0120cat", "cat", "\u0120Dog", "\u012042", "\u0120ca-t", "\u010a"],
                                       decoders.ByteLevel())
    assert vocab_words(byte_level) == [" Dog", " cat", "cat"]
    # SentencePiece: decoding a lone "▁cat" drops the space; the rule puts it back
    metaspace = _word_level_tokenizer(["<unk>", "\u2581cat", "cat", "<0x0A>"],
                                      decoders.Metaspace(replacement="\u2581", prepend_scheme="always"))
    assert vocab_words(metaspace) == [" cat", "cat"]
    words = spelling_words("vocab", None, byte_level, 0.34, seed=0)
    assert sorted((w["word"], w["letter"]) for w in words) == [(" Dog", "D"), (" cat", "C"), ("cat", "C")]
    p = icl_prompt(" cat", [" Dog", "cat"], "{word} has the first letter:")
    assert p.text == "\n Dog has the first letter: D\ncat has the first letter: C\n cat has the first letter:"
    assert p.text[:p.word_end].endswith("\n cat") and p.letter == "C"


# --- SCR / TPP ---

def _scr_world(n_per_quadrant: int = 40):
    labels, xs = [], []
    for prof, sp in (("professor", 1.0), ("nurse", -1.0)):
        for gender, sg in (("male", 1.0), ("female", -1.0)):
            for _ in range(n_per_quadrant):
                labels.append({"profession": prof, "gender": gender})
                xs.append([sp, 2 * sg, 0.0, 0.0])
    split = split_rows(len(labels), 0.25, seed=0)
    sets = scr_sets(labels, split, "profession", "gender", ("professor", "nurse"), ("male", "female"),
                    4000, 1000, seed=0)
    e = torch.eye(4)
    probes = {"column1": BinaryProbe(e[0], 0.0, 1.0), "column2": BinaryProbe(e[1], 0.0, 1.0),
              "biased": BinaryProbe(e[1] + 0.1 * e[0], 0.0, 1.0)}  # learned mostly gender
    return torch.tensor(xs), sets, probes


def test_scr_is_one_when_ablation_recovers_clean_accuracy_and_zero_when_nothing_changes():
    x, sets, probes = _scr_world()
    e = torch.eye(4)
    gender_sae = StandInSAE(torch.stack([e[1], -e[1], e[0], -e[0]]))
    unrelated_sae = StandInSAE(torch.stack([e[2], -e[2], e[3], -e[3]]))
    for sae, expected in ((gender_sae, 1.0), (unrelated_sae, 0.0)):
        f = sae.encode(x)
        out = scr_run(sae, x, f, sets, probes, sae.W_dec, [2])
        assert out["direction"] == 1  # the biased probe is near chance on profession data
        assert out["dir1_original_accuracy"] == pytest.approx(0.5)
        assert out["metric_n2"] == pytest.approx(expected)


def test_normalised_scr_guards_tiny_gaps():
    assert normalised_scr(0.9, 0.6, 0.9) == pytest.approx(1.0)
    assert normalised_scr(0.6, 0.6, 0.9) == 0.0
    assert normalised_scr(0.9, 0.6, 0.6005) == 0.0


def test_scr_sets_are_balanced_and_disjoint_across_splits():
    _, sets, _ = _scr_world()
    for s in sets.values():
        assert int(s.train_y.sum()) * 2 == len(s.train_y)
        assert not set(s.train_idx.tolist()) & set(s.test_idx.tolist())


def _quadrant_rows(sizes: dict[tuple[str, str], int], columns: tuple[str, str]) -> list[dict]:
    return [{columns[0]: a, columns[1]: b} for (a, b), n in sizes.items() for _ in range(n)]


def _count(labels, idx, **want) -> int:
    return sum(all(labels[i][k] == v for k, v in want.items()) for i in idx.tolist())


def test_scr_sets_have_saebench_sizes():
    """size/4 per quadrant; each class of a keyed set gets 2·size/4 (both its quadrants), the biased classes
    2·size/4 from their one quadrant (SAEBench ``get_spurious_corr_data``)."""
    sizes = {("p", "m"): 60, ("p", "f"): 30, ("n", "m"): 30, ("n", "f"): 60}
    labels = _quadrant_rows(sizes, ("prof", "gender"))
    split = ["train"] * len(labels)
    for i in range(0, len(labels), 6):
        split[i] = "test"  # 10 test rows in each of the big quadrants, 5 in each small one
    sets = scr_sets(labels, split, "prof", "gender", ("p", "n"), ("m", "f"), 80, 20, seed=0)
    q = 80 // 4
    col1, col2, biased = sets["column1"], sets["column2"], sets["biased"]
    assert len(col1.train_y) == len(col2.train_y) == len(biased.train_y) == 4 * q
    pos1 = col1.train_idx[col1.train_y == 1]
    assert _count(labels, pos1, prof="p", gender="m") == _count(labels, pos1, prof="p", gender="f") == q
    pos2 = col2.train_idx[col2.train_y == 1]
    assert _count(labels, pos2, prof="p", gender="m") == _count(labels, pos2, prof="n", gender="m") == q
    assert _count(labels, biased.train_idx[biased.train_y == 1], prof="p", gender="m") == 2 * q
    assert _count(labels, biased.train_idx[biased.train_y == 0], prof="n", gender="f") == 2 * q
    assert len(col1.test_y) == 4 * 5  # test: q = min(20/4, smallest quadrant 5)


def test_one_vs_rest_sets_balance_positives_and_stratify_negatives():
    """SAEBench TPP/sparse probing: size/4 rows per (class, attribute value) as positives; negatives drawn
    ⌈n/(C−1)⌉ from every other class's balanced sample."""
    sizes = {("a", "m"): 30, ("a", "f"): 50, ("b", "m"): 40, ("b", "f"): 40, ("c", "m"): 60, ("c", "f"): 60}
    labels = _quadrant_rows(sizes, ("cls", "gender")) + _quadrant_rows({k: 2 for k in sizes}, ("cls", "gender"))
    split = ["train"] * sum(sizes.values()) + ["test"] * 2 * len(sizes)
    sets = one_vs_rest_sets(labels, split, "cls", ["a", "b", "c"], 80, 4, seed=0, balance_column="gender")
    s = sets["a"]
    pos, neg = s.train_idx[s.train_y == 1], s.train_idx[s.train_y == 0]
    assert len(pos) == len(neg) == 40
    assert _count(labels, pos, cls="a", gender="m") == _count(labels, pos, cls="a", gender="f") == 20
    assert _count(labels, neg, cls="b") == _count(labels, neg, cls="c") == 20
    unbalanced = one_vs_rest_sets(labels, split, "cls", ["a", "b", "c"], 80, 4, seed=0)["a"]
    assert len(unbalanced.train_y) == 80 and _count(labels, unbalanced.train_idx, cls="a") == 40


def test_tpp_targets_the_ablated_class_and_trained_probes_learn():
    classes = ["a", "b", "c"]
    labels = [{"cls": c} for c in classes for _ in range(40)]
    x = torch.stack([torch.eye(6)[classes.index(lab["cls"])] * 2 for lab in labels])
    x = x + 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    split = split_rows(len(labels), 0.25, seed=0)
    sets = one_vs_rest_sets(labels, split, "cls", classes, 4000, 1000, seed=0)
    probes = train_probes(x, sets, ProbeConfig(epochs=10, lr=0.05), seed=0)
    assert min(p.test_accuracy for p in probes.values()) > 0.9
    # probes that read only their own class direction: ablating class i's latent flips exactly its positives
    own = {c: BinaryProbe(torch.eye(6)[i], -1.0, 1.0) for i, c in enumerate(classes)}
    sae = StandInSAE(torch.eye(6))
    out = tpp_run(sae, x, sae.encode(x), sets, own, sae.W_dec, [1])
    assert out["intended_n1"] == pytest.approx(0.5)
    assert out["unintended_n1"] == pytest.approx(0.0)
    assert out["total_n1"] == pytest.approx(0.5)


# --- sparse probing ---

def test_sparse_probing_finds_the_informative_latent():
    gen = torch.Generator().manual_seed(0)
    labels = [{"c": "pos" if i % 2 else "neg"} for i in range(80)]
    f = torch.rand(80, 20, generator=gen)
    f[:, 7] += torch.tensor([2.0 if lab["c"] == "pos" else 0.0 for lab in labels])
    sets = one_vs_rest_sets(labels, split_rows(80, 0.25, 0), "c", ["pos", "neg"], 4000, 1000, seed=0)
    acc = sparse_probe_task(f, {"pos": sets["pos"]}, [1], max_iter=200)
    noise = sparse_probe_task(torch.rand(80, 20, generator=gen), {"pos": sets["pos"]}, [1], max_iter=200)
    assert acc["top_1"] == 1.0 and noise["top_1"] < 0.8


# --- distinct features ---

def test_max_cosine_matches_brute_force_and_counts_distinct():
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(37, 8, generator=gen)
    unit = w / w.norm(dim=1, keepdim=True)
    sims = unit @ unit.T
    sims.fill_diagonal_(-2)
    assert torch.allclose(max_cosine(w, block=10), sims.max(1).values, atol=1e-6)
    ortho = torch.eye(8)
    dup = torch.cat([torch.eye(8)[:4], torch.eye(8)[:4] + 0.01])
    m_o, _ = distinct_features(ortho, ortho.T, [0.5])
    m_d, _ = distinct_features(dup, dup.T, [0.5], reference_w_dec=ortho)
    assert m_o["distinct_decoder_below_0.5"] == 8 and m_o["mean_max_cos_decoder"] == pytest.approx(0.0)
    assert m_d["distinct_decoder_below_0.5"] == 0 and m_d["no_counterpart_in_reference_below_0.5"] == 0


# --- comparison ---

def test_comparison_table_and_figures(tmp_path):
    archs = {"bt": "batchtopk", "ort": "ortsae"}
    files, cos_files = [], []
    for sae, fve, cos in (("bt", 0.6, 0.4), ("ort", 0.5, 0.2)):
        d = tmp_path / sae
        base = {"sae_path": str(d), "sae_width": 64}
        for metric, values in {
            "absorption": {"mean_absorption_fraction_score": 0.1, "mean_full_absorption_score": 0.0,
                           "mean_num_split_features": 0.2, "n_letters_passing": 20},
            "composition": {"meta_sae_fve": fve},
            "distinct": {"mean_max_cos_decoder": cos, "mean_max_cos_encoder": cos,
                         "distinct_decoder_below_0.5": 3, "reference_sae_path": str(tmp_path / "bt")},
            "scr": {"scr_metric_n2": 0.1, "scr_metric_n20": 0.2},
            "tpp": {"tpp_total_n2": 0.01, "tpp_total_n20": 0.05},
            "sparse_probing": {"l0_on_probe_texts": 8.0, "sae_top_1_test_accuracy": 0.7},
        }.items():
            write_json(d / f"{metric}.json", {**base, **values})
            files.append(str(d / f"{metric}.json"))
        from lmscalpel.features.activations import save_tensors
        save_tensors(d / "max_cos.safetensors", {"max_cos_decoder": torch.rand(64) * cos * 2})
        cos_files.append(str(d / "max_cos.safetensors"))
        write_json(tmp_path / "sae" / sae / "core_metrics.json", {"l0": 16.0 + fve, "fvu": 0.2})
    core = [str(tmp_path / "sae" / s / "core_metrics.json") for s in archs]
    table = comparison_table(files, archs, core)
    ort = table.set_index("sae").loc["ort"]
    assert ort["meta_sae_fve_rel_change_vs_reference"] == pytest.approx(-1 / 6)
    assert ort["mean_max_cos_decoder_rel_change_vs_reference"] == pytest.approx(-0.5)
    assert ort["core_l0"] == pytest.approx(16.5) and ort["architecture"] == "ortsae"

    class Out:
        table = str(tmp_path / "out" / "comparison.csv")
        seeds = str(tmp_path / "out" / "comparison_over_seeds.csv")
        absorption_vs_l0 = str(tmp_path / "out" / "a.png")
        composition_vs_width = str(tmp_path / "out" / "c.png")
        max_cos_hist = str(tmp_path / "out" / "m.png")
        scr_vs_n = str(tmp_path / "out" / "s.png")
        tpp_vs_n = str(tmp_path / "out" / "t.png")

    run_compare(files, cos_files, archs, Out, core)
    for path in vars(Out).values():
        if isinstance(path, str) and path.startswith(str(tmp_path)):
            assert (tmp_path / "out" / path.split("/")[-1]).stat().st_size > 0


def test_seed_table_gives_each_grid_entry_its_mean_and_spread_over_seeds():
    """Seeds of one grid entry (sae.seeds) collapse into one row: mean, sample sd, min and max; a lone seed has no
    sd. Rows of other entries are not mixed in."""
    import pandas as pd

    from lmscalpel.features.compare import seeds_table

    table = pd.DataFrame([
        {"sae": "ort", "architecture": "ortsae", "width": 64, "base_sae": "ort", "seed": 0, "meta_sae_fve": 0.5},
        {"sae": "ort-s1", "architecture": "ortsae", "width": 64, "base_sae": "ort", "seed": 1, "meta_sae_fve": 0.7},
        {"sae": "ort-s2", "architecture": "ortsae", "width": 64, "base_sae": "ort", "seed": 2, "meta_sae_fve": 0.6},
        {"sae": "bt", "architecture": "batchtopk", "width": 64, "base_sae": "bt", "seed": 0, "meta_sae_fve": 0.9}])
    rows = seeds_table(table).set_index("sae")
    assert list(rows.index) == ["ort", "bt"] and rows.loc["ort", "n_seeds"] == 3 and rows.loc["ort", "seeds"] == "0 1 2"
    assert rows.loc["ort", "meta_sae_fve"] == pytest.approx(0.6) and rows.loc["ort", "meta_sae_fve_sd"] == pytest.approx(0.1)
    assert (rows.loc["ort", "meta_sae_fve_min"], rows.loc["ort", "meta_sae_fve_max"]) == (0.5, 0.7)
    assert rows.loc["bt", "meta_sae_fve"] == 0.9 and math.isnan(rows.loc["bt", "meta_sae_fve_sd"])
    assert "seed_sd" not in rows and "width_sd" not in rows


# --- composition ---

def test_meta_sae_explains_sum_of_atoms_dictionary_better_than_orthogonal():
    from lmscalpel.features.composition import MetaSAEConfig, composition_metrics

    gen = torch.Generator().manual_seed(0)
    basis, _ = torch.linalg.qr(torch.randn(64, 64, generator=gen))
    orthogonal = basis.T  # 64 orthonormal rows
    atoms = basis.T[:12]
    pairs = [(i, j) for i in range(12) for j in range(i + 1, 12)][:64]
    composed = torch.stack([atoms[i] + atoms[j] for i, j in pairs])
    composed = composed / composed.norm(dim=1, keepdim=True)
    cfg = MetaSAEConfig(batch_size=64, steps=300, lr=5e-3)
    fve_orth = composition_metrics(orthogonal, cfg, seed=0)["meta_sae_fve"]
    fve_comp = composition_metrics(composed, cfg, seed=0)["meta_sae_fve"]
    assert fve_comp > fve_orth + 0.3
    assert fve_orth < 0.5


def test_meta_sae_is_scored_in_batch_topk_mode_with_mean_l0_exactly_k():
    """SAEBench scores the meta-SAE with its training-mode BatchTopK: k·B codes per eval batch, mean L0 = k."""
    from dataclasses import replace

    from lmscalpel.features.composition import MetaSAEConfig, composition_metrics, meta_codes, train_meta_sae

    rows = torch.randn(96, 32, generator=torch.Generator().manual_seed(1))
    rows = rows / rows.norm(dim=1, keepdim=True)
    cfg = MetaSAEConfig(batch_size=32, steps=60, lr=5e-3)
    assert composition_metrics(rows, cfg, seed=0)["meta_sae_l0"] == cfg.k
    small = replace(cfg, eval_batch_size=40)
    codes = meta_codes(train_meta_sae(rows, small, seed=0), rows, small)
    assert [int((codes[s:s + 40] != 0).sum()) for s in (0, 40, 80)] == [4 * 40, 4 * 40, 4 * 16]
    with pytest.raises(ValueError, match="features.composition.eval_mode"):
        replace(cfg, eval_mode="inference")


def test_tasks_with_too_few_rows_are_skipped_not_fatal():
    import yaml

    from conftest import REPO_ROOT, validated
    from lmscalpel.features.stage import _task_sets

    features = validated(yaml.safe_load((REPO_ROOT / "config.yaml").read_text()))["features"]
    labels = [{"profession": p, "gender": g} for p in ("professor", "nurse") for g in ("male", "female")
              for _ in range(12)] + [{"profession": "surgeon", "gender": "male"}]
    split = split_rows(len(labels), 0.5, seed=0)
    groups, skipped = _task_sets("bios", labels, split, features, seed=0)
    assert set(groups) == {"scr|professor|nurse"}
    assert {"scr|surgeon|psychologist", "tpp", "sp|profession"} <= set(skipped)
