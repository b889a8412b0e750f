"""Rule toyworld_train_model: tokenizer + tiny Llama, resumable from checkpoints outside the output."""

from lmscalpel.toyworld.train import train_toy_model
from lmscalpel.workflow import script_context

with script_context(globals(), rule="toyworld_train_model") as smk:
    train_toy_model(smk.input.train, smk.output.model, smk.params.toy_model, smk.params.seed,
                    smk.params.checkpoint_dir, device=smk.params.device)
