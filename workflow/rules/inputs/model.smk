# Input functions and final outputs of model.smk (snakemake --lint wants functions and rules in separate files).


TOYWORLD_FILES = ["train", "chat_eval", "spelling", "reasoning", "people", "bios", "reviews", "narrative_heldout"]


def get_gguf_file(wildcards=None):
    """The configured GGUF file (model.gguf.path, or model.gguf.file inside model.gguf.distribution)."""
    from lmscalpel.models.gguf import locate_gguf

    return str(locate_gguf(config["model"]["gguf"]))


def get_toyworld_files(wildcards=None):
    """Toy-world ground truth the model card measures on, when the run generates the toy world."""
    if not toyworld_readers():
        return {}
    return {name: f"{RESULTS}/toyworld/{name}.jsonl" for name in TOYWORLD_FILES}


def get_model_targets():
    return [f"{RESULTS}/model/model_card.json"]
