"""Curated result tables: named rows of a flat JSON or named columns of a CSV, in words and units, with confidence
intervals where the stage has them and "—" plus the reason where a value is NaN.

A table spec (in ``sections.yaml``) is ``{title, file, rows: [...]}`` for a JSON (each row ``{label, key, unit,
ci: [low_key, high_key], ci_label, nan: reason}``) or ``{title, file, columns: [...]}`` for a CSV (each column
``{key, label, unit, ci, ci_label, se, nan}``; optional ``where`` selects rows). ``ci_label`` names an interval that
is not a 95 % CI (e.g. the range over seeds; one whose ends are equal, a single seed, is left out); ``se`` names the
key of a standard error, shown as "value ± SE" (lm-eval's accuracies). A string instead of a dict is a key shown
under its own name; a spec without ``rows`` / ``columns`` shows every field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from lmscalpel.io import read_json
from lmscalpel.report.values import (MISSING, NotMeasured, first_match, format_interval, format_number, is_missing,
                                     lookup, select_rows)

DEFAULT_NAN_REASON = "not computed in this run"
MAX_ROWS = 40


@dataclass
class Table:
    title: str
    frame: pd.DataFrame
    source: Path | None
    notes: list[str] = field(default_factory=list)


def _entry(entry: str | dict) -> dict:
    return {"key": entry, "label": entry.replace("_", " ")} if isinstance(entry, str) else entry


def _scalar_keys(data: dict) -> list[str]:
    """A spec without ``rows`` (not curated yet): every scalar field, under its own name."""
    return [k for k, v in data.items() if isinstance(v, (int, float, str, bool)) or v is None]


def _cell(value, entry: dict, low=None, high=None, se=None) -> tuple[str, str | None]:
    """The formatted cell and, for "—", the reason."""
    if is_missing(value):
        return MISSING, entry.get("nan", DEFAULT_NAN_REASON)
    if not is_missing(se):
        unit = entry.get("unit")
        return f"{format_number(value, unit).removesuffix(' %')} ± {format_number(se, unit)}", None
    label = entry.get("ci_label")
    if label and not is_missing(low) and low == high:
        low = high = None
    return format_number(value, entry.get("unit")) + format_interval(low, high, entry.get("unit"),
                                                                     label or "95 % CI"), None


def _label(entry: dict) -> str:
    return entry.get("label", entry["key"])


def json_table(path: Path, spec: dict) -> Table:
    data = read_json(path)
    labels, values = [], []
    for raw in spec.get("rows") or _scalar_keys(data):
        entry = _entry(raw)
        try:
            value = lookup(data, entry["key"])
        except NotMeasured:  # a key this run's configuration does not produce
            continue
        ci = [data.get(k) for k in entry.get("ci", [])] or [None, None]
        text, reason = _cell(value, entry, *ci, se=data.get(entry["se"]) if "se" in entry else None)
        if reason:
            text = f"{MISSING} ({reason})"
        labels.append(_label(entry))
        values.append(text)
    return Table(spec["title"], pd.DataFrame({"quantity": labels, "value": values}), path)


def csv_table(path: Path, spec: dict) -> Table:
    raw = select_rows(pd.read_csv(path), spec.get("where", {}))
    entries = [_entry(e) for e in spec.get("columns") or list(raw.columns) if _entry(e)["key"] in raw]
    columns, reasons = {}, {}
    for entry in entries:
        low_key, high_key = (entry.get("ci") or [None, None])
        cells = []
        for _, row in raw.head(MAX_ROWS).iterrows():
            low = row.get(low_key) if low_key else None
            high = row.get(high_key) if high_key else None
            se = row.get(entry["se"]) if "se" in entry else None
            text, reason = _cell(row[entry["key"]], entry, low, high, se)
            if reason:
                reasons[entry.get("label", entry["key"])] = reason
            cells.append(text)
        columns[_label(entry)] = cells
    notes = [f"{MISSING} in “{label}”: {reason}" for label, reason in reasons.items()]
    if len(raw) > MAX_ROWS:
        notes.append(f"first {MAX_ROWS} of {len(raw)} rows; all rows in the raw file")
    return Table(spec["title"], pd.DataFrame(columns), path, notes)


def curated_table(results: Path, spec: dict) -> Table:
    """The table a spec names; a missing output gives an empty table whose note says so."""
    try:
        path = first_match(results, spec["file"])
    except NotMeasured as reason:
        return Table(spec["title"], pd.DataFrame(), None, [str(reason)])
    return csv_table(path, spec) if path.suffix == ".csv" else json_table(path, spec)
