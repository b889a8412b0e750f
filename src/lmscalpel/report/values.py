"""Reading one number out of a stage's result files, and writing it in words a reader can use.

A *source* is ``{file, key}`` (a JSON key or dotted path; ``file`` may be a glob, the first match is read) or
``{file, key, where}`` for a CSV cell (``where`` selects the row). Units: ``percent`` (a rate in [0, 1] shown as
%), ``relative`` (a relative change shown as signed %), ``pp`` (a difference of two rates, shown in signed
percentage points), ``ratio`` (×), ``points`` (a value already in points), ``bool``
(yes/no), ``count``, ``int``, ``text``, or none (four significant digits).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from lmscalpel.io import read_json

MISSING = "—"


class NotMeasured(Exception):
    """A claim or cell this run has no result for; the message says why (shown in the report)."""


def first_match(results: Path, pattern: str) -> Path:
    matches = sorted(results.glob(pattern))
    if not matches:
        raise NotMeasured(f"no {pattern} in this run")
    return matches[0]


def lookup(data: Any, dotted: str) -> Any:
    """``data[key]`` for flat keys (which may contain dots, e.g. ``train_cr_c0.5``), else a dotted path."""
    if isinstance(data, dict) and dotted in data:
        return data[dotted]
    for part in dotted.split("."):
        if isinstance(data, dict) and part in data:
            data = data[part]
        elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            raise NotMeasured(f"{dotted} not in the result file")
    return data


def read_table(results: Path, pattern: str) -> pd.DataFrame:
    return pd.read_csv(first_match(results, pattern))


def select_rows(frame: pd.DataFrame, where: dict[str, Any]) -> pd.DataFrame:
    for column, value in where.items():
        if column not in frame:
            raise NotMeasured(f"column {column} not in the table")
        frame = frame[frame[column].astype(str) == str(value)]
    return frame


def source_value(results: Path, source: dict) -> Any:
    """The value a source names (raises NotMeasured when the file, key or row is absent)."""
    path = first_match(results, source["file"])
    if path.suffix == ".csv":
        rows = select_rows(pd.read_csv(path), source.get("where", {}))
        if not len(rows) or source["key"] not in rows:
            raise NotMeasured(f"no {source['key']} row matching {source.get('where', {})} in {source['file']}")
        return rows[source["key"]].iloc[0]
    return lookup(read_json(path), source["key"])


def is_missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def format_number(value: Any, unit: str | None = None) -> str:
    """One value in the unit's words; NaN / None become "—" (the caller adds the reason)."""
    if isinstance(value, (list, dict)):
        return json.dumps(value)[:120]
    if is_missing(value):
        return MISSING
    if unit == "bool" or isinstance(value, bool):
        return "yes" if _truthy(value) else "no"
    if unit == "text" or isinstance(value, str):
        return str(value)
    value = float(value)
    if math.isinf(value):
        return "∞" if value > 0 else "−∞"
    if unit == "percent":
        return f"{100 * value:.1f} %"
    if unit == "relative":
        return f"{100 * value:+.1f} %"
    if unit == "ratio":
        return f"{value:.2f}×"
    if unit == "pp":
        return f"{100 * value:+.1f} pt"
    if unit == "points":
        return f"{value:+.1f} pt"
    if unit in ("count", "int"):
        return f"{value:.0f}"
    return f"{value:.4g}"


def format_interval(low: Any, high: Any, unit: str | None = None, label: str = "95 % CI") -> str:
    if is_missing(low) or is_missing(high):
        return ""
    return f" [{label} {format_number(low, unit).replace(' %', '')}–{format_number(high, unit)}]"


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)
