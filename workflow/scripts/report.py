"""Rule report: render reports/<run>/ (claims table first) from the results of every configured stage, and rebuild
reports/index.html from every run's claims.json."""

from pathlib import Path

from lmscalpel.report.build import build_report
from lmscalpel.workflow import script_context

with script_context(globals(), rule="report") as smk:
    build_report(Path(smk.input.card).parents[1], Path(smk.output.index).parent, smk.config, smk.params.stages,
                 captions_dir=Path(smk.params.captions), data_sources=smk.params.data_sources)
