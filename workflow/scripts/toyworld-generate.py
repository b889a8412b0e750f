"""Rule toyworld_generate: write the toy-world corpus and ground truth."""

from pathlib import Path

from lmscalpel.toyworld import generate
from lmscalpel.workflow import script_context

with script_context(globals(), rule="toyworld_generate") as smk:
    generate(Path(smk.output.metadata).parent, smk.params.toyworld, smk.params.seed)
