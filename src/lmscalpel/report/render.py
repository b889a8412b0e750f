"""Render ``reports/<run>/index.html`` and ``README.md``: the claims table first (every paper's headline claims with
this run's verdicts, ``claims.yaml``), then one section per paper with curated tables, sampled judged replies
(steering), figures, the config it ran with and the papers' secondary numbers next to ours; ``claims.json`` for
the side-by-side ``reports/index.html``.

Sections are declared in ``sections.yaml`` (paths relative to ``results/<run>/``), so a new stage adds a block
there rather than code here.
"""

from __future__ import annotations

import html
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

from lmscalpel.io import atomic_path, write_json
from lmscalpel.report.claims import evaluate_claims
from lmscalpel.report.replies import replies_html, replies_markdown, steering_replies
from lmscalpel.report.runs import VERDICT_CLASS, verdict_counts, write_claims, write_runs_index
from lmscalpel.report.tables import Table, curated_table
from lmscalpel.report.values import NotMeasured, format_number, source_value

SECTIONS_FILE = Path(__file__).with_name("sections.yaml")
RAW_COPY_MAX_BYTES = 5_000_000
# verdict cell backgrounds, used nowhere else on the page (the screenshot test finds the claims table by them)
VERDICT_COLOURS = {"holds": "#cfeccf", "fails": "#f5cccc", "noise": "#f6ecc2", "unmeasured": "#e4e4ee"}


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
    replies: dict | None = None  # judged replies to sample (lmscalpel.report.replies)


def load_sections(path: Path = SECTIONS_FILE) -> list[Section]:
    return [Section(**block) for block in yaml.safe_load(path.read_text(encoding="utf-8"))["sections"]]


def published_frame(results: Path, rows: list[dict]) -> pd.DataFrame:
    """Paper numbers beside this run's value, where the run measures the same quantity."""
    ours = []
    for row in rows:
        try:
            ours.append(format_number(source_value(results, row["ours"]), row["ours"].get("unit"))
                        if row.get("ours") else "— (not measured by this pipeline)")
        except NotMeasured as reason:
            ours.append(f"not measured ({reason})")
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


def model_name(config: dict) -> str:
    """The model's id (hub), its GGUF name or file (gguf), or "the toy model"."""
    model = config["model"]
    if model["source"] == "gguf":
        gguf = model.get("gguf") or {}
        return str(gguf.get("name") or gguf.get("path") or gguf.get("file") or "a GGUF model")
    return str(model.get("id") or "the toy model")


def describe_model(config: dict) -> str:
    if config["model"]["source"] == "toy":
        return "toy world (tiny Llama trained here; not comparable in scale to the papers)"
    return model_name(config)


def render(results: Path, out_dir: Path, config: dict, stages: list[str], manifest: dict,
           model_card: dict | None, captions_dir: Path) -> list[dict]:
    """Write index.html, README.md, claims.json, manifest.json, the figures and the raw tables into ``out_dir``
    (atomically, as one folder), then rebuild ``reports/index.html`` from every run's claims.json."""
    is_toy = config["model"]["source"] == "toy"
    label = describe_model(config)
    claims = evaluate_claims(results, config, stages)
    with atomic_path(out_dir) as tmp:
        tmp.mkdir(parents=True)
        html_parts = [f"<h1>lmscalpel report — run <code>{html.escape(config['run_name'])}</code></h1>",
                      f"<p>Model: {html.escape(label)}. Config sha256 <code>{manifest['config_sha256'][:12]}</code>, "
                      f"git <code>{manifest['git']['commit']}</code>. "
                      f"SAELens: {html.escape(saelens_line(manifest))}. "
                      '<a href="../index.html">All runs side by side</a>.</p>', *claims_html(claims, is_toy)]
        md_parts = [f"# lmscalpel report — run {markdown_text(config['run_name'])}", "",
                    f"Model: {markdown_text(label)}. SAELens: {markdown_text(saelens_line(manifest))}.", "",
                    *claims_markdown(claims, is_toy)]
        if model_card:
            card = {k: v for k, v in model_card.items() if not isinstance(v, (dict, list))}
            frame = pd.DataFrame({"quantity": [k.replace("_", " ") for k in card],
                                  "value": [format_number(v, card_unit(k)) for k, v in card.items()]})
            html_parts += ["<h2>Model card</h2>", frame.to_html(index=False)]
            md_parts += ["## Model card", "", markdown_table(frame), ""]
        for section in load_sections():
            if section.stage not in stages:
                continue
            h, m = render_section(section, results, tmp, config, captions_dir, is_toy)
            html_parts += h
            md_parts += m
        write_json(tmp / "manifest.json", manifest)
        write_claims(tmp / "claims.json", config["run_name"], label, claims)
        (tmp / "index.html").write_text(page("\n".join(html_parts)), encoding="utf-8")
        (tmp / "README.md").write_text("\n".join(md_parts) + "\n", encoding="utf-8")
    write_runs_index(out_dir.parent, page)
    return claims


MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]|#])")


def markdown_text(value) -> str:
    """``value`` as literal Markdown text on one line: strings from the results (model replies, dataset and model
    names) must not open HTML tags, links or emphasis, or split a table row (``|``, newlines)."""
    text = html.escape(str(value), quote=False)
    return MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(text.splitlines()))


def markdown_table(frame: pd.DataFrame) -> str:
    """A DataFrame as a Markdown table whose headers and text cells are literal text (numbers stay as they are)."""
    safe = frame.rename(columns=markdown_text).astype(object)
    return safe.map(lambda v: markdown_text(v) if isinstance(v, str) else v).to_markdown(index=False)


def code_block(text: str, language: str = "") -> list[str]:
    """A fenced block that no line of ``text`` can close (a fence longer than any backtick run inside)."""
    fence = "`" * max(3, 1 + max((len(run) for run in re.findall(r"`+", text)), default=0))
    return [f"{fence}{language}", text, fence]


def card_unit(key: str) -> str | None:
    """The model card's rates and accuracies are fractions: show them as %."""
    return "percent" if key.endswith(("_rate", "_compliance", "_accuracy")) else None


def saelens_line(manifest: dict) -> str:
    check = manifest.get("saelens") or {}
    version = check.get("version")
    return f"{version}, {check.get('status')}" if version else str(check.get("status", "not checked"))


CLAIM_COLUMNS = ["paper", "claim", "paper's number", "this run", "measured on", "verdict", "why"]
WITHIN_NOISE_NOTE = ("“Within noise”: the difference lies inside its uncertainty (seed spread, paired SE over "
                     "letters or perplexity windows), so it neither holds nor fails; the row names the uncertainty "
                     "that decided.")


def claim_cells(claim: dict) -> list[str]:
    return [claim["paper"], claim["claim"], str(claim["published"]), claim["this_run"], claim["data"],
            claim["verdict"], claim["why"]]


def claims_html(claims: list[dict], is_toy: bool) -> list[str]:
    rows = []
    for claim in claims:
        cells = claim_cells(claim)
        verdict_class = VERDICT_CLASS.get(claim["verdict"], "unmeasured")
        tds = "".join(f"<td>{html.escape(c)}</td>" for c in cells[:5])
        rows.append(f'<tr id="claim-{claim["id"]}">{tds}<td class="{verdict_class}"><b>{html.escape(cells[5])}</b>'
                    f'</td><td>{html.escape(cells[6])} <a href="#{claim["section"]}">→&nbsp;{claim["section"]}</a></td></tr>')
    note = " Toy-world numbers test the direction of each claim, not its size." if is_toy else ""
    return ['<section id="claims"><h2>Claims: the papers versus this run</h2>',
            f"<p><b>{verdict_counts(claims)}.</b> Verdicts are computed from the result files with the stages' "
            f"noise allowances (claims.yaml). {WITHIN_NOISE_NOTE}"
            f"{note} <a href=\"claims.json\">claims.json</a></p>",
            "<table class='claims'><tr>" + "".join(f"<th>{c}</th>" for c in CLAIM_COLUMNS) + "</tr>"
            + "".join(rows) + "</table></section>"]


def claims_markdown(claims: list[dict], is_toy: bool) -> list[str]:
    frame = pd.DataFrame([[markdown_text(cell) for cell in claim_cells(c)] for c in claims], columns=CLAIM_COLUMNS)
    frame["section"] = [f"[§](#{c['section']})" for c in claims]
    note = " Toy-world numbers test the direction of each claim, not its size." if is_toy else ""
    return ["## Claims: the papers versus this run", "",
            f"**{verdict_counts(claims)}.** Verdicts computed from the result files with the stages' noise "
            f"allowances. {WITHIN_NOISE_NOTE}{note}", "",
            frame.to_markdown(index=False), ""]


def copy_raw(source: Path | None, results: Path, out: Path) -> str | None:
    """Copy a table's raw file into the report (``data/...``) and return its relative link."""
    if source is None or source.stat().st_size > RAW_COPY_MAX_BYTES:
        return None
    target = out / "data" / source.relative_to(results)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source, target)
    return target.relative_to(out).as_posix()


def table_html(table: Table, link: str | None, toy_note: str) -> list[str]:
    raw = f' <small><a href="{link}">raw {Path(link).suffix[1:]}</a></small>' if link else ""
    body = table.frame.to_html(index=False, na_rep="—") if len(table.frame) else ""
    notes = "".join(f"<p class='note'>{html.escape(n)}</p>" for n in table.notes)
    return [f"<h3>{html.escape(table.title)}{toy_note}{raw}</h3>", f'<div class="wide">{body}</div>{notes}']


def table_markdown(table: Table, link: str | None, toy_note: str) -> list[str]:
    raw = f" ([raw]({link}))" if link else ""
    body = markdown_table(table.frame) if len(table.frame) else ""
    notes = [f"*{markdown_text(n)}*" for n in table.notes]
    return [f"### {markdown_text(table.title)}{toy_note}{raw}", "", body, "", *notes, ""]


def render_section(section: Section, results: Path, out: Path, config: dict, captions_dir: Path,
                   is_toy: bool) -> tuple[list[str], list[str]]:
    toy_note = " (toy-world numbers)" if is_toy else ""
    h = [f'<section id="{section.stage}"><h2>{html.escape(section.title)}</h2>',
         f"<p><em>{html.escape(section.paper)}</em></p><p>{html.escape(section.summary)}</p>"]
    m = [f'<a id="{section.stage}"></a>', "", f"## {section.title}", "", f"*{section.paper}*", "", section.summary, ""]
    for spec in section.tables:
        table = curated_table(results, spec)
        link = copy_raw(table.source, results, out)
        h += table_html(table, link, toy_note)
        m += table_markdown(table, link, toy_note)
    if section.replies:
        h_replies, m_replies = replies_section(results, section.replies)
        h += h_replies
        m += m_replies
    if section.published:
        frame = published_frame(results, section.published)
        h += ["<h3>Published numbers vs this run</h3>", frame.to_html(index=False)]
        m += ["### Published numbers vs this run", "", markdown_table(frame), ""]
    for figure in collect_figures(results, section.figures):
        target = out / "figures" / section.stage / figure.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(figure, target)
        rel = target.relative_to(out).as_posix()
        caption = figure_caption(figure, captions_dir, section.stage, model_name(config))
        h.append(f'<figure><img src="{rel}" alt="{html.escape(figure.stem)}"><figcaption>{html.escape(caption)}'
                 "</figcaption></figure>")
        m += [f"![{markdown_text(figure.stem)}]({rel})", "", f"*{markdown_text(caption)}*", ""]
    cfg = section_config(config, section.config_keys)
    h += ["<details><summary>Config of this section</summary><pre>" + html.escape(cfg) + "</pre></details></section>"]
    m += ["<details><summary>Config of this section</summary>", "", *code_block(cfg, "yaml"), "</details>", ""]
    return h, m


def replies_section(results: Path, spec: dict) -> tuple[list[str], list[str]]:
    """A few judged replies per kind and verdict (HTML, Markdown), so that a reader can audit the judge."""
    replies = steering_replies(results, spec)
    title = f"Judged replies: up to {spec['per_group']} per kind and verdict (drawn with seed {spec['seed']})"
    note = (f"Verdicts as the headline numbers count them; every reply in {spec['grids']} and {spec['universal']}."
            if len(replies) else f"No judged replies in this run ({spec['grids']}).")
    h = [f"<h3>{html.escape(title)}</h3>", f"<p class='note'>{html.escape(note)}</p>"]
    m = [f"### {markdown_text(title)}", "", f"*{markdown_text(note)}*", ""]
    if len(replies):
        h.append(f'<div class="wide">{replies_html(replies, spec["max_chars"])}</div>')
        m += replies_markdown(replies, spec["max_chars"])
    return h, m


def page(body: str, title: str = "lmscalpel report") -> str:
    style = ("body{font-family:system-ui,sans-serif;max-width:1200px;margin:1em auto;padding:0 1em;color:#222}"
             "table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:.9em}td,th{border:1px solid #ccc;"
             "padding:.25em .6em;text-align:right}th{background:#f3f3f3}figure{display:inline-block;width:48%;"
             "margin:.5em 1%;vertical-align:top}img{width:100%;border:1px solid #ddd}figcaption{font-size:.85em;"
             "color:#555}.wide{overflow-x:auto}section{border-top:2px solid #eee;margin-top:2em}pre{background:#f8f8f8;"
             "padding:.5em}table.claims{font-size:.8em}table.claims td,table.claims th{text-align:left;vertical-align:top}"
             f".holds{{background:{VERDICT_COLOURS['holds']}}}.fails{{background:{VERDICT_COLOURS['fails']}}}"
             f".noise{{background:{VERDICT_COLOURS['noise']}}}"
             f".unmeasured{{background:{VERDICT_COLOURS['unmeasured']};color:#555}}"
             "table.replies td{text-align:left;vertical-align:top}.reply{white-space:pre-wrap}"
             "section#claims{border-top:none;margin-top:0}.note{font-size:.8em;color:#555;margin:-1em 0 1em}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>{body}</body></html>\n")
