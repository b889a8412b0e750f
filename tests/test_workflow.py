"""Scripts run outside Snakemake (PyPSA-Eur style): the CLI parser and the mocked job of a shared script."""

from __future__ import annotations

import logging
import os
import subprocess
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


@pytest.mark.parametrize("run_name", [".", ".."])
def test_a_run_name_of_dot_or_dotdot_stops_before_any_file_is_touched(tmp_path, run_name):
    """reports/. and reports/.. were planned outputs: Snakemake deleted a tracked README.md (..) and another run's
    report (.) before a job ran. The name is refused while the config is read; nothing in the directory changes."""
    (tmp_path / "README.md").write_text("keep me")
    (tmp_path / "reports" / "other").mkdir(parents=True)
    (tmp_path / "reports" / "other" / "index.html").write_text("another run")
    (tmp_path / "dot.yaml").write_text(f'run_name: "{run_name}"\nstages: [report]\n')
    before = sorted((p.relative_to(tmp_path), p.read_bytes()) for p in tmp_path.rglob("*") if p.is_file())
    result = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(REPO_ROOT / "Snakefile"),
                             "--directory", str(tmp_path), "--cores", "1", "--configfile", str(tmp_path / "dot.yaml")],
                            capture_output=True, text=True, timeout=300,
                            env={**os.environ, "LMSCALPEL_JOBSERVER": "off"})
    assert result.returncode != 0 and "config key run_name" in result.stdout + result.stderr
    after = sorted((p.relative_to(tmp_path), p.read_bytes()) for p in tmp_path.rglob("*") if p.is_file()
                   and ".snakemake" not in p.parts)
    assert after == before


@pytest.mark.parametrize("path", ["reports/.", "reports/..", "results/../README.md", "../x.json"])
def test_atomic_writes_refuse_dot_components(tmp_path, monkeypatch, path):
    """The last line of defence: replacing reports/. would delete reports/ itself."""
    from lmscalpel.io import atomic_path

    monkeypatch.chdir(tmp_path)
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "keep").write_text("x")
    with pytest.raises(ValueError, match="must not contain"):
        with atomic_path(path):
            pass
    assert (tmp_path / "reports" / "keep").read_text() == "x"


def test_openmp_threads_wait_passively_unless_the_user_chose():
    """A spinning OpenMP thread starved its partner beside a busy process (benchmarks/bench_contention.py: 7.6x);
    importing lmscalpel, as every job script does first, sets the policy before torch loads, and keeps a user's."""
    probe = "import os, lmscalpel, torch; print(os.environ['OMP_WAIT_POLICY'])"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    run = lambda extra: subprocess.run([sys.executable, "-c", probe], env=env | extra, capture_output=True,
                                       text=True, check=True).stdout.strip()
    assert run({}) == "PASSIVE" and run({"OMP_WAIT_POLICY": "ACTIVE"}) == "ACTIVE"
