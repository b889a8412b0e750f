"""The chat prompt every stage sends: one user turn through the model's own chat template.

No system prompt (spec §1 project default: a template that has a default system prompt adds it itself), and the
assistant's turn opened (``add_generation_prompt``), as text: callers tokenise it without added special tokens
(the template writes the ones the model expects).
"""

from __future__ import annotations

from typing import Any


def chat_prompt(template_owner, content: Any) -> str:
    """``content`` (a string, or a processor's list of parts such as ``[{"type": "image"}, {"type": "text", ...}]``)
    as the user turn of ``template_owner``'s chat template (a tokenizer or a multimodal processor)."""
    return template_owner.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True,
                                              tokenize=False)
