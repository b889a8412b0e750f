# Input functions and final outputs of model.smk (snakemake --lint wants functions and rules in separate files).


TOYWORLD_FILES = ["train", "chat_eval", "spelling", "reasoning", "people", "bios", "reviews", "narrative_heldout"]


def get_gguf_files(wildcards=None):
    """The configured GGUF file (model.gguf.path, or model.gguf.file inside model.gguf.distribution), or every
    installed part of a split source (model.gguf.parts), in order."""
    from lmscalpel.models.gguf import gguf_parts

    return [str(part.path) for part in gguf_parts(config["model"]["gguf"])]


def get_convert_gguf_mem_mb(wildcards, input):
    """Peak memory of the conversion: one fp32 model plus transformers' de-quantisation, ~8.3x a Q4_K_M file
    (measured peak RSS: 8.6 GiB for Qwen2.5-Coder-1.5B's 1.04 GiB of parts, 3.7 GiB for the 0.5B's 0.46 GiB)."""
    return max(4000, int(10 * input.size_mb))


def get_toyworld_files(wildcards=None):
    """Toy-world ground truth the model card measures on, when the run generates the toy world."""
    if not toyworld_readers():
        return {}
    return {name: f"{RESULTS}/toyworld/{name}.jsonl" for name in TOYWORLD_FILES}


def get_model_card_gate(wildcards=None):
    """The model card as an input of the rules whose claims need a model that refuses by itself (steering), where
    its gates apply (model_card.enforce_gates): a model below them stops the run before those rules start."""
    from lmscalpel.models.card import gates_enforced

    if not gates_enforced(config["model_card"], is_toy_model()):
        return {}
    return {"card_gate": f"{RESULTS}/model/model_card.json"}


def get_model_targets():
    return [f"{RESULTS}/model/model_card.json"]
