"""Rule reasoning_steer_figure: accuracy and thinking-length deltas per steered latent."""

from lmscalpel.reasoning.figures import plot_steering
from lmscalpel.workflow import script_context

with script_context(globals(), rule="reasoning_steer_figure") as smk:
    plot_steering(smk.input.metrics, smk.output.figure)
