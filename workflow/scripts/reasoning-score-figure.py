"""Rule reasoning_score_figure: ReasonScore distribution with the selection threshold."""

from lmscalpel.reasoning.figures import plot_reasonscore
from lmscalpel.workflow import script_context

with script_context(globals(), rule="reasoning_score_figure") as smk:
    plot_reasonscore(smk.input.scores, smk.input.selected, smk.output.figure)
