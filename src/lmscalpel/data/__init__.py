"""Where texts, prompts and benchmarks come from: ``text`` (corpora and perplexity texts: the toy world, pydoc,
local files, hub datasets), ``prompts`` (prompt sets: the toy world's, HarmBench, AdvBench, a file, a hub dataset,
a benchmark's questions), ``benchmarks`` (GSM8K, MMLU, ... read from installed packages), ``lm_eval_tasks``
(local lm-eval tasks over them: mmlu_packaged, ...), ``packaged`` (files inside installed distributions), ``files``
(local files read with one-line errors) and ``plan`` (what the DAG needs of them).

Re-exports are lazy (``lmscalpel.lazy``), as in every package ``__init__``.
"""

from lmscalpel.lazy import lazy_exports

_EXPORTS = {
    "is_local_source": "text", "iter_texts": "text", "iter_token_blocks": "text", "load_texts": "text",
    "local_documents": "text", "split_documents": "text",
    "PromptSet": "prompts", "load_prompt_set": "prompts",
    "BENCHMARKS": "benchmarks", "Item": "benchmarks", "load_benchmark": "benchmarks",
    "register_benchmark": "benchmarks",
    "BENCHMARK_TASKS": "lm_eval_tasks", "build_benchmark_tasks": "lm_eval_tasks",
    "PINNED": "packaged", "PackagedFile": "packaged", "install_command": "packaged",
    "DataFileError": "files",
}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
