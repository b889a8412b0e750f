# Input functions and final outputs of safety.smk (snakemake --lint wants functions and rules in separate files).


def get_safety_tune_text(wildcards=None):
    """The toy world's held-out narrative for the tune's test perplexity (other datasets are read by the script)."""
    if config["safety_tune"]["perplexity"]["dataset"]["path"] != "toyworld":
        return {}
    return {"text": f"{RESULTS}/toyworld/narrative_heldout.jsonl"}


def get_safety_targets():
    return [f"{RESULTS}/model/safety_card.json"] if is_safety_tuned() else []
