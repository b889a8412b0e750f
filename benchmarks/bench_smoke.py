"""Wall time and peak memory of the default pipeline from scratch (what `make smoke` runs after installing).

Goal: the full report from the toy world in <= 10 minutes on 2 cores with peak RSS <= 4 GiB. Runs the real
Snakefile with config.yaml in a fresh temporary directory, so nothing cached in this checkout is reused.
Peak RSS is the largest resident set of any single process of the run (getrusage over all waited-for
descendants); with --cores 2 at most two jobs run at once.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LIMIT_S, LIMIT_GIB = 600, 4.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--keep", action="store_true", help="keep the run directory and print its path")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="lmscalpel-smoke-"))
    shutil.copy(REPO / "config.yaml", workdir / "config.yaml")
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--cores", str(args.cores), "--workflow-profile", str(REPO / "workflow" / "profiles" / "default")]
    start = time.perf_counter()
    result = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    peak_gib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
    report = workdir / "reports" / "toy" / "index.html"
    print(f"snakemake exit code: {result.returncode}; report written: {report.exists()}")
    print(f"wall time: {wall:.0f} s (goal <= {LIMIT_S} s; ratio {wall / LIMIT_S:.2f})")
    print(f"peak RSS of one process: {peak_gib:.2f} GiB (goal <= {LIMIT_GIB} GiB; ratio {peak_gib / LIMIT_GIB:.2f})")
    if result.returncode:
        print(result.stderr[-4000:])
    if args.keep:
        print(f"run directory: {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
