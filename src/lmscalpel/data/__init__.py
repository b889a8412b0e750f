"""Where texts and prompts come from: ``text`` (corpora and perplexity texts: the toy world, pydoc, local files, hub
datasets) and ``prompts`` (chat prompts: the toy world's, JailbreakBench or a researcher's file).

Re-exports are lazy (``lmscalpel.lazy``), as in every package ``__init__``.
"""

from lmscalpel.lazy import lazy_exports

_EXPORTS = {
    "is_local_source": "text", "iter_texts": "text", "iter_token_blocks": "text", "load_texts": "text",
    "local_documents": "text", "split_documents": "text",
    "benign_prompts": "prompts", "dataset_prompts": "prompts", "load_prompts": "prompts", "toy_prompts": "prompts",
}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
