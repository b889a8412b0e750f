"""Rule reasoning_cot_corpus: the model's own chain-of-thought answers to a benchmark subset (ReasonScore corpus)."""

from lmscalpel.reasoning.stage import run_cot_corpus
from lmscalpel.workflow import model_ref, script_context

with script_context(globals(), rule="reasoning_cot_corpus") as smk:
    run_cot_corpus(model_ref=model_ref(smk), cfg=smk.params.reasoning, seed=smk.params.seed,
                   checkpoint_dir=smk.params.checkpoint_dir, out_corpus=smk.output.corpus,
                   out_summary=smk.output.summary)
