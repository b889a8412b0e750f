"""Rule unlearning_robustness_table: the cross-paper row as a CSV and a bar chart."""

from lmscalpel.unlearning.report import write_robustness
from lmscalpel.workflow import script_context

with script_context(globals(), rule="unlearning_robustness_table") as smk:
    write_robustness(list(smk.input.metrics), smk.output.csv, smk.output.png)
