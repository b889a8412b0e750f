"""Local data files a config names (prompt files, text datasets' ``data_files``): read with one-line errors that name
the file, the config key and what is wrong, where a parser would raise ``DatasetGenerationError: An error occurred
while generating the dataset``, a bare ``UnicodeDecodeError`` or accept NUL bytes.

Every reader checks the whole file first (:func:`read_text`: a file, not empty, no NUL byte, UTF-8), then parses it
by its format (CSV with strict quoting, JSON lines, a JSON array, plain lines). :func:`validate` runs the same checks
on a file that ``datasets`` will read, so a bad file fails the same way whichever loader reads it.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any

# suffix -> the reader :func:`validate` checks a file with (parquet is binary: datasets checks it)
FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".json": "json", ".txt": "text"}


class DataFileError(ValueError):
    """A local data file that cannot be read as configured; the message is one line: key, file, problem."""


def _error(key: str, path: str | os.PathLike, problem: str) -> DataFileError:
    return DataFileError(f"config key {key}: {path} {problem}")


def check_file(path: str | os.PathLike, key: str) -> Path:
    """``path`` as a Path, or an error naming ``key`` when it is no file (what the plan checks before any job)."""
    path = Path(path)
    if not path.is_file():
        raise _error(key, path, "is a directory, not a file" if path.is_dir() else "is not a file")
    return path


def read_text(path: str | os.PathLike, key: str) -> str:
    """The file's text: refused when empty or only whitespace, with a NUL byte, or not UTF-8 (a BOM is dropped)."""
    data = check_file(path, key).read_bytes()
    if not data.strip():
        raise _error(key, path, "is empty" if not data else "holds only whitespace")
    if b"\x00" in data:
        line = data.count(b"\n", 0, data.index(b"\x00")) + 1
        raise _error(key, path, f"has a NUL byte on line {line}: a binary file, or text not saved as UTF-8")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise _error(key, path, f"is not UTF-8 text (byte 0x{data[err.start]:02x} on line {line}): a binary file, "
                                "or save it as UTF-8") from None


def read_lines(path: str | os.PathLike, key: str) -> list[str]:
    """One record per line (a trailing newline ends the last one)."""
    return read_text(path, key).splitlines()


def read_jsonl(path: str | os.PathLike, key: str) -> list[dict[str, Any]]:
    """One JSON object per non-blank line."""
    rows = []
    for number, line in enumerate(read_lines(path, key), start=1):
        if line.strip():
            rows.append(_json_object(line, path, key, f"line {number}"))
    return rows


def read_json_records(path: str | os.PathLike, key: str) -> list[dict[str, Any]]:
    """A JSON array of objects, or JSON lines (``datasets``' json loader reads both)."""
    text = read_text(path, key)
    try:
        whole = json.loads(text)
    except json.JSONDecodeError:
        return read_jsonl(path, key)
    records = whole if isinstance(whole, list) else [whole]
    return [_object(record, path, key, f"record {i}") for i, record in enumerate(records, start=1)]


def _json_object(line: str, path, key: str, where: str) -> dict[str, Any]:
    try:
        value = json.loads(line)
    except json.JSONDecodeError as err:
        raise _error(key, path, f"{where} is not JSON ({err.msg} at column {err.colno})") from None
    return _object(value, path, key, where)


def _object(value: Any, path, key: str, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _error(key, path, f"{where} is a JSON {type(value).__name__}, not an object with named fields")
    return value


def read_csv(path: str | os.PathLike, key: str) -> tuple[list[str], list[dict[str, str]]]:
    """(columns, rows) of a CSV file with a header row; quoting is strict, so a stray or unclosed quote is an error
    on its line instead of swallowing the rest of the file into one cell."""
    reader = csv.reader(io.StringIO(read_text(path, key), newline=""), strict=True)
    try:
        header = next(reader)
        rows = []
        for cells in reader:
            if len(cells) > len(header):
                raise _error(key, path, f"line {reader.line_num} has {len(cells)} cells, the header "
                                        f"{len(header)} ({', '.join(header)})")
            rows.append(dict(zip(header, cells + [""] * (len(header) - len(cells)))))
    except csv.Error as err:
        raise _error(key, path, f"line {reader.line_num} is not valid CSV ({err}; quote a cell holding commas, "
                                "quotes or line breaks and double its quotes)") from None
    if not rows:
        raise _error(key, path, f"has a header ({', '.join(header)}) but no rows")
    return header, rows


def validate(path: str | os.PathLike, key: str) -> Path:
    """Check a file that another loader (``datasets``) reads, with the reader of its suffix."""
    path = check_file(path, key)
    reader = FORMATS.get(path.suffix.lower())
    if reader == "csv":
        read_csv(path, key)
    elif reader in ("jsonl", "json"):
        read_json_records(path, key)
    elif reader == "text":
        read_text(path, key)
    return path
