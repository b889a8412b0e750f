# The report a researcher reads: reports/<run>/index.html + README.md (claims table first), claims.json and the run
# manifest; it also rebuilds reports/index.html (every run's claims side by side) from the runs' claims.json.
REPORT = f"reports/{RUN}"
CAPTIONS_DIR = str(Path(workflow.basedir) / "workflow" / "report")


include: "inputs/report.smk"


STAGE_TARGETS["report"] = get_report_targets


rule report:
    input:
        unpack(get_report_inputs),
    output:
        index=f"{REPORT}/index.html",
        readme=f"{REPORT}/README.md",
        manifest=f"{REPORT}/manifest.json",
        claims=f"{REPORT}/claims.json",
    log:
        f"{LOGS}/report/report.log",
    localrule: True
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        code=code_fingerprint("report"),
        stages=STAGES,
        captions=CAPTIONS_DIR,
        data_sources=lambda wildcards: data_plan.data_sources(config),
    script:
        "../scripts/report.py"
