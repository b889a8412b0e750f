"""Render ``reports/<run>/index.html`` and ``README.md``: one section per paper with its headline table, figures,
the config it ran with and the paper's published numbers next to ours.

Sections are declared in ``sections.yaml`` (paths relative to ``results/<run>/``), so a new stage adds a block
there rather than code here.
"""

from __future__ import annotations

import html
import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from lmscalpel.io import atomic_path, read_json, write_json

SECTIONS_FILE = Path(__file__).with_name("sections.yaml")
MAX_TABLE_ROWS = 40


@dataclass
class Section:
    stage: str
    title: str
    paper: str
    summary: str
    tables: list[dict]
    figures: list[str]
    published: list[dict]
    config_keys: list[str]


def load_sections(path: Path = SECTIONS_FILE) -> list[Section]:
    return [Section(**block) for block in yaml.safe_load(path.read_text(encoding="utf-8"))["sections"]]


def lookup(data: Any, dotted: str) -> Any:
    """``data[key]`` for flat keys (which may contain dots, e.g. ``train_cr_c0.5``), else a dotted path."""
    if isinstance(data, dict) and dotted in data:
        return data[dotted]
    for part in dotted.split("."):
        data = data[part] if isinstance(data, dict) else data[int(part)]
    return data


def format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, dict)):
        return json.dumps(value)[:120]
    return str(value)


def table_frame(results: Path, spec: dict) -> pd.DataFrame:
    """A headline table: a CSV (optionally some columns) or the scalar fields of a flat JSON (first glob match)."""
    matches = sorted(results.glob(spec["file"]))
    if not matches:
        raise FileNotFoundError(f"report table {spec['file']!r}: no such output under {results}")
    path = matches[0]
    if path.suffix == ".csv":
        frame = pd.read_csv(path)
        return frame[spec["columns"]] if spec.get("columns") else frame
    data = read_json(path)
    keys = spec.get("keys") or [k for k, v in data.items() if isinstance(v, (int, float, str, bool)) or v is None]
    return pd.DataFrame({"metric": keys, "value": [format_value(lookup(data, k)) for k in keys]})


def our_value(results: Path, source: dict) -> Any:
    """A JSON key, or a CSV cell (``where`` selects the row, ``key`` the column)."""
    path = results / source["file"]
    if path.suffix == ".csv":
        frame = pd.read_csv(path)
        for column, value in source.get("where", {}).items():
            frame = frame[frame[column] == value]
        return frame[source["key"]].iloc[0]
    return lookup(read_json(path), source["key"])


def published_frame(results: Path, rows: list[dict]) -> pd.DataFrame:
    """Paper numbers beside this run's value, where the run measures the same quantity."""
    ours = []
    for row in rows:
        try:
            ours.append(format_value(our_value(results, row["ours"])) if row.get("ours") else "—")
        except (FileNotFoundError, KeyError, IndexError, ValueError):
            ours.append("not measured")
    return pd.DataFrame({"quantity": [r["quantity"] for r in rows], "paper": [r["paper"] for r in rows],
                         "source": [r["source"] for r in rows], "this run": ours})


def section_config(config: dict, keys: list[str]) -> str:
    return yaml.safe_dump({k: config.get(k) for k in keys}, sort_keys=False)


def collect_figures(results: Path, patterns: list[str]) -> list[Path]:
    return sorted({p for pattern in patterns for p in results.glob(pattern)})


def figure_caption(figure: Path, captions_dir: Path, stage: str, model_label: str) -> str:
    """Caption from the matching workflow/report/<stage>_<name>.rst (Jinja expressions replaced by the model)."""
    figure_words = set(figure.stem.split("_"))
    for candidate in sorted(captions_dir.glob(f"{stage}_*.rst")):
        if set(candidate.stem.removeprefix(f"{stage}_").split("_")) <= figure_words:
            text = re.sub(r"\{\{.*?\}\}", model_label, candidate.read_text(encoding="utf-8"))
            return " ".join(text.split())
    return figure.stem.replace("_", " ")


def render(results: Path, out_dir: Path, config: dict, stages: list[str], manifest: dict,
           model_card: dict | None, captions_dir: Path) -> None:
    """Write index.html, README.md, manifest.json and the figures into ``out_dir`` (atomically, as one folder)."""
    is_toy = config["model"]["source"] == "toy"
    label = "toy world (tiny Llama trained here; not comparable in scale to the papers)" if is_toy else config["model"]["id"]
    with atomic_path(out_dir) as tmp:
        tmp.mkdir(parents=True)
        html_parts = [f"<h1>lmscalpel report — run <code>{html.escape(config['run_name'])}</code></h1>",
                      f"<p>Model: {html.escape(label)}. Config sha256 <code>{manifest['config_sha256'][:12]}</code>, "
                      f"git <code>{manifest['git']['commit']}</code>.</p>"]
        md_parts = [f"# lmscalpel report — run `{config['run_name']}`", "", f"Model: {label}.", ""]
        if model_card:
            card = {k: v for k, v in model_card.items() if not isinstance(v, (dict, list))}
            frame = pd.DataFrame({"metric": list(card), "value": [format_value(v) for v in card.values()]})
            html_parts += ["<h2>Model card</h2>", frame.to_html(index=False)]
            md_parts += ["## Model card", "", frame.to_markdown(index=False), ""]
        for section in load_sections():
            if section.stage not in stages:
                continue
            h, m = render_section(section, results, tmp, config, captions_dir, is_toy)
            html_parts += h
            md_parts += m
        write_json(tmp / "manifest.json", manifest)
        (tmp / "index.html").write_text(page("\n".join(html_parts)), encoding="utf-8")
        (tmp / "README.md").write_text("\n".join(md_parts) + "\n", encoding="utf-8")


def render_section(section: Section, results: Path, out: Path, config: dict, captions_dir: Path,
                   is_toy: bool) -> tuple[list[str], list[str]]:
    toy_note = " (toy-world numbers)" if is_toy else ""
    h = [f'<section id="{section.stage}"><h2>{html.escape(section.title)}</h2>',
         f"<p><em>{html.escape(section.paper)}</em></p><p>{html.escape(section.summary)}</p>"]
    m = [f"## {section.title}", "", f"*{section.paper}*", "", section.summary, ""]
    for spec in section.tables:
        frame = table_frame(results, spec).head(MAX_TABLE_ROWS)
        h += [f"<h3>{html.escape(spec['title'])}{toy_note}</h3>",
              f'<div class="wide">{frame.to_html(index=False, float_format="%.4g")}</div>']
        m += [f"### {spec['title']}{toy_note}", "", frame.to_markdown(index=False, floatfmt=".4g"), ""]
    if section.published:
        frame = published_frame(results, section.published)
        h += ["<h3>Published numbers vs this run</h3>", frame.to_html(index=False)]
        m += ["### Published numbers vs this run", "", frame.to_markdown(index=False), ""]
    for figure in collect_figures(results, section.figures):
        target = out / "figures" / section.stage / figure.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(figure, target)
        rel = target.relative_to(out).as_posix()
        caption = figure_caption(figure, captions_dir, section.stage, config["model"]["id"] or "the toy model")
        h.append(f'<figure><img src="{rel}" alt="{html.escape(figure.stem)}"><figcaption>{html.escape(caption)}'
                 "</figcaption></figure>")
        m += [f"![{figure.stem}]({rel})", "", f"*{caption}*", ""]
    cfg = section_config(config, section.config_keys)
    h += ["<details><summary>Config of this section</summary><pre>" + html.escape(cfg) + "</pre></details></section>"]
    m += ["<details><summary>Config of this section</summary>", "", "```yaml", cfg, "```", "</details>", ""]
    return h, m


def page(body: str) -> str:
    style = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
             "table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:.9em}td,th{border:1px solid #ccc;"
             "padding:.25em .6em;text-align:right}th{background:#f3f3f3}figure{display:inline-block;width:48%;"
             "margin:.5em 1%;vertical-align:top}img{width:100%;border:1px solid #ddd}figcaption{font-size:.85em;"
             "color:#555}.wide{overflow-x:auto}section{border-top:2px solid #eee;margin-top:2em}pre{background:#f8f8f8;padding:.5em}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>lmscalpel report</title>"
            f"<style>{style}</style></head><body>{body}</body></html>\n")
