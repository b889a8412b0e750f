"""Rule model_card: measure the model and enforce its gates (the toy model's unless model_card.enforce_gates)."""

from lmscalpel.models.card import write_model_card
from lmscalpel.workflow import model_ref, script_context

with script_context(globals(), rule="model_card") as smk:
    write_model_card(model_ref(smk), smk.input, smk.output.card, smk.params.card, smk.params.window,
                     toy_model=smk.params.toy_model, markers=smk.params.markers)
