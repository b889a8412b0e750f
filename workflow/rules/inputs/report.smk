# Input functions and final outputs of report.smk (snakemake --lint wants functions and rules in separate files).


def get_report_inputs(wildcards):
    """Everything the report reads: the model card and the final outputs of every other configured stage."""
    stage_outputs = [path for stage in STAGES if stage != "report" for path in STAGE_TARGETS[stage]()]
    return {"card": f"{RESULTS}/model/model_card.json", "stage_outputs": stage_outputs}


def get_report_targets():
    return [f"{REPORT}/index.html", f"{REPORT}/README.md", f"{REPORT}/manifest.json", f"{REPORT}/claims.json"]
