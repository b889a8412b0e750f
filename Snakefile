# lmscalpel: one DAG from the toy world (or a hub model) to the report. See README.md.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/toyworld.smk"
include: "workflow/rules/model.smk"
include: "workflow/rules/safety.smk"
include: "workflow/rules/cache.smk"
include: "workflow/rules/sae.smk"
include: "workflow/rules/features.smk"
include: "workflow/rules/steering.smk"
include: "workflow/rules/reasoning.smk"
include: "workflow/rules/pruning.smk"
include: "workflow/rules/unlearning.smk"
include: "workflow/rules/report.smk"


# every part has registered its layer keys: a block beyond the model stops the run here (common.smk)
check_layer_keys()


rule all:
    default_target: True
    input:
        get_final_outputs,
