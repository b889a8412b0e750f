"""Rule model_card: measure the model and enforce the toy model's gates."""

from lmscalpel.models.card import write_model_card
from lmscalpel.workflow import model_ref, script_context

with script_context(globals(), rule="model_card") as smk:
    write_model_card(model_ref(smk), smk.input, smk.output.card, smk.params.card, smk.params.window,
                     enforce_gates=smk.params.enforce_gates, markers=smk.params.markers)
