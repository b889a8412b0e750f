"""The vision-language model of the unlearning stage: a tiny LLaVA on the toy world, LLaVA-1.5 on presets.

The tiny model is transformers' ``LlavaForConditionalGeneration`` with a randomly initialised CLIP vision tower
(image size = portrait size, patch 8) and the toy Llama as language model, so the toy world and the preset run the
same model class, processor and chat-template code path. The vision tower stays frozen in every stage (as in
CLEAR); on the tiny model the projector is trained during fine-tuning because, unlike LLaVA-1.5's, it starts random.
"""

from __future__ import annotations

import os
from typing import Any

import torch
import transformers
from transformers import CLIPVisionConfig, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

from lmscalpel.models import ModelRef, load_model
from lmscalpel.runtime import seed_everything

IMAGE_TOKEN = "<image>"

# The toy chat template (lmscalpel.toyworld.tokenizer.CHAT_TEMPLATE) extended to LLaVA-style content lists, where
# an image part renders as the image placeholder; build_tiny_llava checks that both render text alike.
TOY_VLM_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['content'] is string %}{% set text = message['content'] %}{% else %}"
    "{% set ns = namespace(text='') %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}{% set ns.text = ns.text + '" + IMAGE_TOKEN + "' %}"
    "{% else %}{% set ns.text = ns.text + part['text'] %}{% endif %}{% endfor %}{% set text = ns.text %}{% endif %}"
    "{% if message['role'] == 'user' %}<|user|>{{ text }}"
    "{% elif message['role'] == 'assistant' %}<|assistant|>{{ text }}<|end|>"
    "{% else %}{{ raise_exception('the toy chat template knows only user and assistant turns') }}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def build_tiny_llava(lm_ref: ModelRef, *, image_size: int, patch_size: int, vision_hidden_size: int,
                     vision_layers: int, vision_heads: int, vision_intermediate_size: int,
                     seed: int) -> tuple[LlavaForConditionalGeneration, LlavaProcessor]:
    """Wrap the toy language model in a LLaVA with a random CLIP vision tower; return ``(model, processor)``.

    The ``<image>`` token is added to the tokenizer and the language model's embeddings are resized for it.
    """
    seed_everything(seed)
    lm, tokenizer = load_model(lm_ref, eval_mode=False)
    tokenizer.add_special_tokens({"additional_special_tokens": [IMAGE_TOKEN]},
                                 replace_extra_special_tokens=False)
    lm.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    _check_toy_template(tokenizer)
    vision = CLIPVisionConfig(hidden_size=vision_hidden_size, intermediate_size=vision_intermediate_size,
                              num_hidden_layers=vision_layers, num_attention_heads=vision_heads,
                              image_size=image_size, patch_size=patch_size, projection_dim=vision_hidden_size)
    config = LlavaConfig(vision_config=vision, text_config=lm.config,
                         image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
                         image_seq_length=(image_size // patch_size) ** 2,
                         vision_feature_select_strategy="default", vision_feature_layer=-1,
                         tie_word_embeddings=bool(getattr(lm.config, "tie_word_embeddings", False)))
    model = LlavaForConditionalGeneration(config)
    model.model.language_model.load_state_dict(lm.model.state_dict())
    model.lm_head.load_state_dict(lm.lm_head.state_dict())
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    image_processor = transformers.CLIPImageProcessorPil(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size})
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=patch_size,
                               vision_feature_select_strategy="default", num_additional_image_tokens=1,
                               chat_template=TOY_VLM_CHAT_TEMPLATE, image_token=IMAGE_TOKEN)
    model.eval()
    return model, processor


def _check_toy_template(tokenizer: Any) -> None:
    """The VLM template copies the toy chat format; fail loudly if the toy tokenizer's template differs."""
    conversation = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"},
                    {"role": "user", "content": "r"}]
    env = transformers.utils.chat_template_utils._compile_jinja_template(TOY_VLM_CHAT_TEMPLATE)
    for prompt in (True, False):
        expected = tokenizer.apply_chat_template(conversation, add_generation_prompt=prompt, tokenize=False)
        got = env.render(messages=conversation, add_generation_prompt=prompt, bos_token=tokenizer.bos_token,
                         eos_token=tokenizer.eos_token)
        if got != expected:
            raise ValueError(f"toy chat template changed: the tiny VLM renders {got!r}, the toy tokenizer "
                             f"{expected!r}; update TOY_VLM_CHAT_TEMPLATE in lmscalpel/unlearning/vlm.py")


def save_vlm(model: torch.nn.Module, processor: Any, out_dir: str | os.PathLike) -> None:
    model.save_pretrained(out_dir, safe_serialization=True)
    processor.save_pretrained(out_dir)


def load_vlm(ref: ModelRef, *, eval_mode: bool = True) -> tuple[torch.nn.Module, Any]:
    """Load a LLaVA-style model (local tiny VLM or ``llava-hf/llava-1.5-7b-hf``) and its processor."""
    model, _ = load_model(ref, auto_class="AutoModelForImageTextToText", eval_mode=eval_mode)
    kwargs = {"revision": ref.revision} if ref.revision and not ref.is_local else {}
    processor = transformers.AutoProcessor.from_pretrained(ref.name_or_path,
                                                           trust_remote_code=ref.trust_remote_code, **kwargs)
    if processor.tokenizer.pad_token is None:
        processor.tokenizer.pad_token = processor.tokenizer.eos_token
    return model, processor


def vision_modules(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The vision tower (always frozen), found by name so peft-wrapped models work too."""
    towers = [m for name, m in model.named_modules() if name.split(".")[-1] == "vision_tower"]
    if not towers:
        raise ValueError(f"{type(model).__name__} has no vision_tower module")
    return towers[:1]
