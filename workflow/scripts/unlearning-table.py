"""Rule unlearning_table: the grid table (CSV + markdown) and its two figures."""

from lmscalpel.unlearning.report import plot_scatter, plot_split_bars, write_table
from lmscalpel.workflow import script_context

with script_context(globals(), rule="unlearning_table") as smk:
    table = write_table(list(smk.input.metrics), smk.output.csv, smk.output.md)
    plot_scatter(table, smk.output.scatter)
    plot_split_bars(table, smk.output.bars)
