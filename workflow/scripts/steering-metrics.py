from lmscalpel.steering.stage import run_metrics_stage
from lmscalpel.workflow import script_context

with script_context(globals(), rule="steering_metrics") as smk:
    run_metrics_stage(grids=list(smk.input.grids), cfg=smk.params.steering, sae_kinds=smk.params.sae_kinds,
                      output_json=smk.output.metrics, output_cells=smk.output.cells,
                      output_categories=smk.output.categories, output_vectors=smk.output.vectors,
                      output_cross=smk.output.cross_paper, output_per_vector=smk.output.per_vector,
                      output_cross_category=smk.output.cross_category, prompt_sets=smk.params.prompt_sets,
                      card_json=smk.input.card)
