"""Train the toy tokenizer and the tiny Llama on the toy world, resumably.

The checkpoint (``lmscalpel.checkpoint``: weights, optimiser state and step, keyed by the config section, the seed
and the corpus) lives outside the declared output; a rerun after a kill continues from the last one and, because
the batch order is a pure function of (seed, step), ends with the same weights as an uninterrupted run.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from tqdm import tqdm
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from lmscalpel.checkpoint import file_identity, open_checkpoint
from lmscalpel.config import section_dataclass
from lmscalpel.io import atomic_path, read_jsonl, write_json
from lmscalpel.runtime import resolve_device, seed_everything
from lmscalpel.toyworld.tokenizer import BOS, END, train_tokenizer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ToyModelConfig:
    """Config section ``toy_model``."""

    section: ClassVar[str] = "toy_model"

    vocab_size: int = 1024
    hidden_size: int = 128
    intermediate_size: int = 384
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int = 4
    max_position_embeddings: int = 256
    context_length: int = 128
    batch_size: int = 32
    steps: int = 700
    lr: float = 3e-3
    warmup_steps: int = 100
    weight_decay: float = 0.01
    checkpoint_every: int = 200

    @classmethod
    def from_dict(cls, cfg: dict[str, Any]) -> "ToyModelConfig":
        return section_dataclass(cls, cfg)

    def llama_config(self, tokenizer: PreTrainedTokenizerFast) -> LlamaConfig:
        return LlamaConfig(
            vocab_size=len(tokenizer), hidden_size=self.hidden_size, intermediate_size=self.intermediate_size,
            num_hidden_layers=self.num_hidden_layers, num_attention_heads=self.num_attention_heads,
            num_key_value_heads=self.num_key_value_heads, max_position_embeddings=self.max_position_embeddings,
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True,
        )


def document_text(row: dict) -> str:
    """Chat rows already carry BOS/END from the chat template; other families get them here."""
    text = row["text"]
    return text if text.startswith(BOS) else f"{BOS}{text}{END}"


def pack_corpus(texts: list[str], tokenizer, context_length: int) -> torch.Tensor:
    """Concatenate tokenised documents and cut the stream into [N, context_length] blocks."""
    ids = [i for t in texts for i in tokenizer(t, add_special_tokens=False)["input_ids"]]
    n = len(ids) // context_length
    if n == 0:
        raise ValueError(f"corpus has {len(ids)} tokens, fewer than toy_model.context_length={context_length}")
    return torch.tensor(ids[: n * context_length]).view(n, context_length)


def batch_indices(step: int, n_blocks: int, batch_size: int, seed: int) -> torch.Tensor:
    """Blocks of a step: epoch-wise permutations drawn from (seed, epoch), so resuming replays the same order."""
    per_epoch = max(1, n_blocks // batch_size)
    epoch, offset = divmod(step, per_epoch)
    perm = torch.randperm(n_blocks, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
    return perm[offset * batch_size:(offset + 1) * batch_size]


def lr_factor(step: int, cfg: ToyModelConfig) -> float:
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))


def checkpoint_key(cfg: ToyModelConfig, corpus_path: str | Path, seed: int) -> dict:
    """What a training run's numbers depend on: its config section (defaults included), the seed and the corpus."""
    return {"toy_model": cfg.__dict__, "seed": seed, "corpus": file_identity(corpus_path)}


def train_toy_model(corpus_path: str | Path, out_dir: str | Path, cfg: ToyModelConfig | dict, seed: int,
                    checkpoint_dir: str | Path, device: str = "auto", stop_after: int | None = None) -> dict:
    """Train tokenizer + tiny Llama on the toy world's ``train.jsonl``; write ``save_pretrained`` files (model and
    tokenizer) to ``out_dir``.

    ``stop_after`` ends training early without writing the output (tests use it to simulate a kill).
    """
    cfg = cfg if isinstance(cfg, ToyModelConfig) else ToyModelConfig.from_dict(cfg)
    seed_everything(seed)
    texts = [document_text(r) for r in read_jsonl(corpus_path)]
    tokenizer = train_tokenizer(texts, cfg.vocab_size)
    blocks = pack_corpus(texts, tokenizer, cfg.context_length)
    model = LlamaForCausalLM(cfg.llama_config(tokenizer))
    dev = resolve_device(device)
    model.to(dev).train()
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.95))
    with open_checkpoint(checkpoint_dir, checkpoint_key(cfg, corpus_path, seed), what="toy_model") as ckpt:
        state = ckpt.load_state()
        start = 0 if state is None else state["step"]
        if state is not None:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            log.info("resumed from step %d", start)
        losses = []
        bar = tqdm(range(start, cfg.steps), desc="train toy llama", initial=start, total=cfg.steps, mininterval=2)
        for step in bar:
            for group in optimizer.param_groups:
                group["lr"] = cfg.lr * lr_factor(step, cfg)
            batch = blocks[batch_indices(step, len(blocks), cfg.batch_size, seed)].to(dev)
            loss = model(input_ids=batch, labels=batch).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            losses.append(loss.item())
            bar.set_postfix(loss=f"{loss.item():.3f}")
            done = step + 1
            if done % cfg.checkpoint_every == 0 or done == cfg.steps:
                ckpt.save_state({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": done})
            if stop_after is not None and done >= stop_after:
                return {"stopped_at": done}
        model.eval()
        summary = {"steps": cfg.steps, "resumed_from": start,
                   "final_loss": float(sum(losses[-20:]) / max(1, len(losses[-20:]))), "n_blocks": len(blocks),
                   "train_tokens_seen": (cfg.steps - start) * cfg.batch_size * cfg.context_length,
                   "n_parameters": sum(p.numel() for p in model.parameters()), "seed": seed}
        with atomic_path(out_dir) as tmp:
            model.to("cpu").save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
            write_json(tmp / "training_summary.json", summary)
    return summary
