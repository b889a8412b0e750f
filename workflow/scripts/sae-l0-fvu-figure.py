from lmscalpel.sae.stage import plot_l0_fvu
from lmscalpel.workflow import script_context

with script_context(globals(), rule="sae_l0_fvu_figure") as smk:
    plot_l0_fvu(smk.input.metrics, figure=smk.output.figure, table=smk.output.table)
