from pathlib import Path

from lmscalpel.features.stage import run_absorption
from lmscalpel.workflow import script_context

with script_context(globals(), rule="features_absorption") as smk:
    run_absorption(str(Path(smk.input.cfg).parent), smk.input.activations_spelling_safetensors,
                   smk.input.probes_first_letter_safetensors, smk.input.probes_first_letter_json,
                   smk.params.features, smk.params.seed, smk.params.layer, smk.output.metrics,
                   smk.params.device)
