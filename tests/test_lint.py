"""`snakemake --lint` is clean: every rule has a log, an environment, named I/O, no absolute paths."""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO_ROOT


def test_snakemake_lint_is_clean(tmp_path):
    result = subprocess.run([sys.executable, "-m", "snakemake", "--lint", "--snakefile", str(REPO_ROOT / "Snakefile"),
                             "--directory", str(tmp_path), "--configfile", str(REPO_ROOT / "config.yaml")],
                            capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "Lints for" not in output, output[-5000:]
