"""Rule plot_reasonscore: ReasonScore distribution with the selection threshold."""

from lmscalpel.reasoning.figures import plot_reasonscore
from lmscalpel.workflow import script_context

with script_context(globals(), rule="plot_reasonscore") as smk:
    plot_reasonscore(smk.input.scores, smk.input.selected, smk.output.figure)
