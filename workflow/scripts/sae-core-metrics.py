from lmscalpel.sae.stage import run_core_metrics
from lmscalpel.workflow import model_ref, script_context

with script_context(globals(), rule="sae_core_metrics") as smk:
    if getattr(smk.input, "text", None):
        from lmscalpel.io import read_jsonl

        texts, source, skip = [row["text"] for row in read_jsonl(smk.input.text)], smk.input.text, 0
    else:
        from lmscalpel.data.text import is_local_source, iter_texts

        dataset, skip = smk.params.dataset, smk.params.cached_sequences
        if is_local_source(dataset):  # local text: its test split, which the cache never reads
            dataset, skip = {**dataset, "split": "test"}, 0
        # hub runs: the cache dataset, past the sequences the SAEs were trained on
        texts, source = iter_texts(dataset, default_split="train"), f"{dataset['path']}:{dataset['split']}"
    run_core_metrics(
        sae_dir=smk.input.sae.rsplit("/", 1)[0],
        output=smk.output.metrics,
        model_ref=model_ref(smk),
        eval_cfg=smk.params.eval,
        hook=smk.params.hook,
        texts=texts,
        text_source=source,
        seed=smk.params.seed,
        skip_sequences=skip,
    )
