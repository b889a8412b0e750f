"""Rule pruning_table: gather the cells into table.csv, the claims summary and the figures."""

from lmscalpel.pruning.table import run_table
from lmscalpel.workflow import script_context

with script_context(globals(), rule="pruning_table") as smk:
    run_table(list(smk.input.cells), list(smk.input.chat), targets=smk.params.targets, table_out=smk.output.table,
              summary_out=smk.output.summary, heatmap_out=smk.output.heatmap, bars_out=smk.output.bars,
              chat_out=smk.output.chat)
