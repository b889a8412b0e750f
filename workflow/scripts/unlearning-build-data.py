"""Rule build_mini_clear: CLEAR's subsets and columns built from the toy world's people and portraits."""

import os

from lmscalpel.unlearning.stage import run_build_data
from lmscalpel.workflow import script_context

with script_context(globals(), rule="build_mini_clear") as smk:
    run_build_data(os.path.dirname(smk.input.people), smk.output.data, smk.params.cfg, smk.params.seed)
