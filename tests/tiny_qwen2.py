"""A tiny Qwen2 built here, its GGUF file in llama.cpp's qwen2 naming, and that file split over fake installed
distributions: what the Qwen2.5 presets run, at a size CI can afford (no download).

The tokenizer is a byte-level BPE with Qwen's ChatML added tokens, of which only ``<|im_end|>`` (EOS) and
``<|endoftext|>`` (padding) are named, so ``all_special_ids`` lacks ``<|im_start|>`` as it does for the real Qwen
tokenizer; the chat template is Qwen2.5's (default system prompt included).
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import numpy as np
import torch

ENDOFTEXT, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
QWEN_CHAT_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}{{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant."
    "<|im_end|>\\n' }}{%- endif %}"
    "{%- for message in messages %}{%- if message['role'] != 'system' %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
TINY_QWEN2 = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
              "num_key_value_heads": 2, "max_position_embeddings": 256, "rms_norm_eps": 1e-6}
ROPE_THETA = 1000000.0


def qwen_tokenizer(texts, vocab_size: int = 400):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[ENDOFTEXT, IM_START, IM_END],
                                  show_progress=False, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    core.train_from_iterator(texts, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, eos_token=IM_END, pad_token=ENDOFTEXT)
    tokenizer.chat_template = QWEN_CHAT_TEMPLATE
    return tokenizer


def build_tiny_qwen2(out: Path, texts, *, tie_word_embeddings: bool) -> Path:
    """A random-init Qwen2 (q/k/v biases non-zero, GQA) with the ChatML tokenizer, saved with save_pretrained."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tokenizer = qwen_tokenizer(texts)
    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=len(tokenizer), eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, bos_token_id=None,
                         tie_word_embeddings=tie_word_embeddings, rope_parameters={"rope_type": "default",
                                                                                   "rope_theta": ROPE_THETA},
                         use_sliding_window=False, sliding_window=None, **TINY_QWEN2)
    model = Qwen2ForCausalLM(config)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("_proj.bias"):
                param.normal_(0, 0.5)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


_BLOCK_NAMES = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
                "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
                "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm"}


def gguf_tensor_name(name: str) -> str:
    """llama.cpp's name of a transformers Qwen2 tensor (``output.weight`` is an untied lm_head)."""
    fixed = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
             "lm_head.weight": "output.weight"}
    if name in fixed:
        return fixed[name]
    _, _, layer, rest = name.split(".", 3)
    module, kind = rest.rsplit(".", 1)
    return f"blk.{layer}.{_BLOCK_NAMES[module]}.{kind}"


def write_qwen2_gguf(path: Path, model_dir: Path) -> Path:
    """The tiny Qwen2 as an F32 GGUF file with the metadata llama.cpp writes for qwen2 (and transformers reads)."""
    import gguf
    from transformers import AutoTokenizer, Qwen2ForCausalLM

    model, tokenizer = Qwen2ForCausalLM.from_pretrained(model_dir), AutoTokenizer.from_pretrained(model_dir)
    cfg = model.config
    writer = gguf.GGUFWriter(str(path), "qwen2")
    writer.add_name("tiny-qwen2")
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(cfg.num_attention_heads)
    writer.add_head_count_kv(cfg.num_key_value_heads)
    writer.add_rope_freq_base(ROPE_THETA)
    writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
    added = {i for i, token in tokenizer.added_tokens_decoder.items() if token.special}
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("qwen2")
    writer.add_token_list([token for token, _ in vocab])
    writer.add_token_types([gguf.TokenType.CONTROL if i in added else gguf.TokenType.NORMAL for _, i in vocab])
    merges = json.loads(tokenizer.backend_tokenizer.to_str())["model"]["merges"]
    writer.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in merges])
    writer.add_eos_token_id(tokenizer.eos_token_id)
    writer.add_pad_token_id(tokenizer.pad_token_id)
    writer.add_bos_token_id(tokenizer.pad_token_id)  # as Qwen2.5's GGUF files do
    writer.add_add_bos_token(False)
    writer.add_chat_template(tokenizer.chat_template)
    for name, tensor in model.state_dict().items():
        if name == "lm_head.weight" and cfg.tie_word_embeddings:
            continue
        writer.add_tensor(gguf_tensor_name(name), tensor.numpy().astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def install_fake_distribution(site: Path, name: str, version: str, files: dict[str, bytes]) -> None:
    """``name`` as pip would have installed it into ``site``: the files, and a dist-info with METADATA and a RECORD
    holding each file's sha256 (``files`` maps paths relative to ``site`` to their bytes)."""
    dist_info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    dist_info.mkdir(parents=True)
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
    (dist_info / "METADATA").write_bytes(metadata)
    rows = [f"{dist_info.name}/METADATA,{_record_hash(metadata)},{len(metadata)}"]
    for relative, data in files.items():
        (site / relative).parent.mkdir(parents=True, exist_ok=True)
        (site / relative).write_bytes(data)
        rows.append(f"{relative},{_record_hash(data)},{len(data)}")
    (dist_info / "RECORD").write_text("\n".join(rows + [f"{dist_info.name}/RECORD,,"]) + "\n")


def split_into_distributions(gguf_path: Path, site: Path, prefix: str, version: str = "0.1.0",
                             first_part_bytes: int = 4096, n_parts: int = 3) -> dict:
    """Split ``gguf_path`` into ``n_parts`` fake distributions ``<prefix>-part<n>`` (file
    ``<module>/data/part<nn>.bin``), the first only ``first_part_bytes`` long so that the header spans parts.
    Returns the ``model.gguf`` config block of the split source (pattern form, with its sha256)."""
    data = gguf_path.read_bytes()
    rest = len(data) - first_part_bytes
    cuts = [0, first_part_bytes] + [first_part_bytes + rest * k // (n_parts - 1) for k in range(1, n_parts)]
    for n in range(1, n_parts + 1):
        name = f"{prefix}-part{n}"
        install_fake_distribution(site, name, version, {
            f"{name.replace('-', '_')}/data/part{n:02d}.bin": data[cuts[n - 1]:cuts[n]]})
    return {"parts": {"distribution": f"{prefix}-part{{n}}", "file": "part{n:02d}.bin", "version": version,
                      "count": n_parts},
            "sha256": hashlib.sha256(data).hexdigest()}
