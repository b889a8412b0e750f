from lmscalpel.steering.stage import run_figures_stage
from lmscalpel.workflow import script_context

with script_context(globals(), rule="steering_figures") as smk:
    run_figures_stage(cells=smk.input.cells, categories=smk.input.categories, metrics_json=smk.input.metrics,
                      universal_table=smk.input.universal_table, universal_json=smk.input.universal,
                      per_vector=smk.input.per_vector, cross_category=smk.input.cross_category,
                      output_compliance=smk.output.compliance, output_categories=smk.output.categories,
                      output_universal=smk.output.universal, output_histogram=smk.output.histogram,
                      output_cross_category=smk.output.cross_category)
