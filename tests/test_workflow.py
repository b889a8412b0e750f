"""Scripts run outside Snakemake (PyPSA-Eur style): the CLI parser and the mocked job of a shared script."""

from __future__ import annotations

import logging
import sys

import pytest

from conftest import REPO_ROOT
from lmscalpel.workflow import parse_cli, script_context


@pytest.fixture
def checkout(tmp_path, monkeypatch):
    """A working directory that sees the repository's Snakefile, rules and default config (outputs land here)."""
    for name in ("Snakefile", "workflow", "config.yaml"):
        (tmp_path / name).symlink_to(REPO_ROOT / name)
    monkeypatch.chdir(tmp_path)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield tmp_path
    root.handlers[:] = handlers  # script_context points the root logger at the (now closed) rule log
    root.setLevel(level)


def test_parse_cli_reads_wildcards_and_configfiles():
    parsed = parse_cli(["pruning_cell_weight", "pattern=2-4", "--configfile", "a.yaml", "method=wanda"],
                       "pruning_cell_weight")
    assert parsed == {"configfiles": ["a.yaml"], "pattern": "2-4", "method": "wanda"}
    with pytest.raises(SystemExit, match="runs rule 'pruning_cell_weight'"):
        parse_cli(["pruning_cell_dense"], "pruning_cell_weight")


def test_shared_script_takes_its_rule_from_the_first_argument(checkout, monkeypatch):
    rules = ("pruning_cell_dense", "pruning_cell_activation", "pruning_cell_weight")
    monkeypatch.setattr(sys, "argv", ["pruning-cell.py", "pruning_cell_weight", "targets=all", "pattern=2-4",
                                      "method=magnitude"])
    with script_context({}, rule=rules) as smk:
        assert smk.rule == "pruning_cell_weight" and smk.params.family == "weight"
        assert smk.output.cell == "results/toy/pruning/cells/weight/all/2-4/magnitude.json"
    assert (checkout / "logs/toy/pruning/cells").is_dir()
    monkeypatch.setattr(sys, "argv", ["pruning-cell.py"])
    with script_context({}, rule=rules) as smk:
        assert smk.rule == "pruning_cell_dense" and smk.output.cell == "results/toy/pruning/cells/dense.json"
