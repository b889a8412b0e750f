"""Across runs: each run's ``claims.json`` and ``reports/index.html``, which puts the claims tables of every run
under ``reports/`` side by side (toy world, real-model CPU preset, paper presets). Any run's report rule rebuilds
the index from the runs' claims files, so it never needs the other runs' results."""

from __future__ import annotations

import html
import logging
import math
from pathlib import Path

from lmscalpel.io import read_json, write_json, write_text

log = logging.getLogger(__name__)
VERDICT_CLASS = {"holds": "holds", "does not hold": "fails", "within noise": "noise", "not measured": "unmeasured"}


def write_claims(path: Path, run_name: str, model_label: str, claims: list[dict]) -> None:
    """The run's claims as strict JSON (NaN written as null)."""
    clean = [{k: None if isinstance(v, float) and math.isnan(v) else v for k, v in c.items()} for c in claims]
    write_json(path, {"run_name": run_name, "model": model_label, "claims": clean})


def load_runs(reports: Path) -> list[dict]:
    """Every ``reports/<run>/claims.json`` (a damaged one is skipped with a warning, not fatal)."""
    runs = []
    for path in sorted(reports.glob("*/claims.json")):
        try:
            runs.append(read_json(path) | {"dir": path.parent.name})
        except (OSError, ValueError) as error:
            log.warning("skipping %s: %s", path, error)
    return runs


def runs_index_html(runs: list[dict]) -> str:
    """One row per claim (in the order of the first run that has it), one column per run."""
    order: dict[str, dict] = {}
    for run in runs:
        for claim in run["claims"]:
            order.setdefault(claim["id"], claim)
    head = "".join(f'<th><a href="{html.escape(r["dir"])}/index.html">{html.escape(r["run_name"])}</a><br>'
                   f'<small>{html.escape(str(r["model"]))}<br>{verdict_counts(r["claims"])}</small></th>'
                   for r in runs)
    rows = []
    for claim_id, claim in order.items():
        cells = []
        for run in runs:
            mine = next((c for c in run["claims"] if c["id"] == claim_id), None)
            if mine is None:
                cells.append('<td class="unmeasured">not in this run\'s claims</td>')
                continue
            # a claims.json from before the "measured on" column has no data: the cell shows "—" there
            cells.append(f'<td class="{VERDICT_CLASS.get(mine["verdict"], "unmeasured")}"><b>'
                         f'{html.escape(mine["verdict"])}</b><br>{html.escape(mine["this_run"])}<br>'
                         f'<small>measured on: {html.escape(mine.get("data") or "—")}<br>'
                         f'{html.escape(mine["why"])}</small></td>')
        rows.append(f"<tr><th>{html.escape(claim['paper'])}</th><td class='claim'>{html.escape(claim['claim'])}"
                    f"<br><small>paper: {html.escape(str(claim['published']))}</small></td>{''.join(cells)}</tr>")
    return ("<h1>lmscalpel — every run's claims side by side</h1>"
            f"<p>{len(runs)} runs under <code>reports/</code>; each column links to its report.</p>"
            f"<table class='claims'><tr><th>paper</th><th>claim</th>{head}</tr>{''.join(rows)}</table>")


def verdict_counts(claims: list[dict]) -> str:
    """E.g. "9 hold, 3 do not hold, 2 within noise, 7 not measured" (the within-noise count only when there are)."""
    counts = {v: sum(c["verdict"] == v for c in claims) for v in VERDICT_CLASS}
    noise = f", {counts['within noise']} within noise" if counts["within noise"] else ""
    return (f"{counts['holds']} hold, {counts['does not hold']} do not hold{noise}, "
            f"{counts['not measured']} not measured")


def write_runs_index(reports: Path, page) -> Path:
    """Rebuild ``reports/index.html`` (atomically) from every run's claims; ``page`` wraps the body in HTML."""
    path = reports / "index.html"
    write_text(path, page(runs_index_html(load_runs(reports)), title="lmscalpel runs"))
    return path
