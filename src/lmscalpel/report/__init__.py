"""The report: one HTML/Markdown page per run with every paper's headline table, figures and config."""

from lmscalpel.report.build import build_report

__all__ = ["build_report"]
