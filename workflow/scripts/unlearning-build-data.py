"""Rule unlearning_build_data: CLEAR's subsets and columns built from the toy world's people and portraits."""

import os

from lmscalpel.unlearning.stage import run_build_data
from lmscalpel.workflow import script_context

with script_context(globals(), rule="unlearning_build_data") as smk:
    run_build_data(os.path.dirname(smk.input.people), smk.output.data, smk.params.cfg, smk.params.seed)
