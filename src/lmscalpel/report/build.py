"""Entry point of the report rule: manifest (with the SAELens read-back of an exported SAE) + rendered pages."""

from __future__ import annotations

from pathlib import Path

from lmscalpel.io import read_json
from lmscalpel.report.manifest import run_manifest, saelens_check
from lmscalpel.report.render import render


def build_report(results: Path, out_dir: Path, config: dict, stages: list[str], captions_dir: Path,
                 data_sources: list[dict] = ()) -> None:
    card_path = results / "model" / "model_card.json"
    card = read_json(card_path) if card_path.exists() else None
    # captions live in the workflow's checkout, so git there gives the commit of the code that ran
    manifest = run_manifest(config, captions_dir, data_sources) | {"saelens": saelens_check(results)}
    render(results, out_dir, config, stages, manifest, card, captions_dir)
