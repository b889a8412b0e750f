"""Rule unlearning_table: the grid table (CSV + markdown) and its figures."""

from lmscalpel.unlearning.report import plot_forget_retain, plot_scatter, plot_split_bars, write_table
from lmscalpel.workflow import script_context

with script_context(globals(), rule="unlearning_table") as smk:
    table = write_table(list(smk.input.metrics), smk.output.csv, smk.output.md)
    plot_scatter(table, smk.output.scatter)
    plot_split_bars(table, smk.output.bars)
    plot_forget_retain(table, smk.output.forget_retain)
