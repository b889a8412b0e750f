"""Wall time and peak memory of the default pipeline from scratch (what `make smoke` runs after installing), or of
a preset (`--preset presets/smollm2_135m_cpu.yaml`, what `make real` runs).

Goals on 2 cores: the toy world's full report in <= 10 minutes with peak RSS <= 4 GiB; the real-model CPU preset
in <= 40 minutes with peak RSS <= 8 GiB; the Qwen2.5-Coder-1.5B preset in <= 90 minutes and 12 GiB. Runs the real Snakefile in a fresh temporary directory, so nothing cached
in this checkout is reused.
Peak RSS is the largest resident set of any single process of the run (wait4's rusage over all waited-for
descendants, the warm worker's forked jobs included); with --cores 2 at most two jobs run at once.
``--beside-busy`` runs it twice back to back, quiet and then beside one CPU-bound ``nice 19`` process, and prints
the ratio of the wall times.
Set LMSCALPEL_JOBSERVER=off in the environment to measure the run without the warm worker.
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
GOALS = {"toy": (600, 4.0), "smollm2_135m_cpu": (2400, 8.0),
         "qwen25_coder_1p5b_cpu": (5400, 12.0)}   # run name -> (seconds, GiB)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--keep", action="store_true", help="keep the run directory and print its path")
    parser.add_argument("--preset", type=Path, help="a preset config file (default: the toy world of config.yaml)")
    parser.add_argument("--beside-busy", action="store_true",
                        help="run twice back to back, quiet and then beside one CPU-bound `nice 19` process of this "
                             "session, and print the ratio of their wall times (issue 23 item 9: goal <= 1.5x)")
    args = parser.parse_args()
    run_name = yaml.safe_load(args.preset.read_text())["run_name"] if args.preset else "toy"
    limit_s, limit_gib = GOALS.get(run_name, (float("nan"), float("nan")))
    walls = {}
    for busy in (False, True) if args.beside_busy else (False,):
        print(f"--- {'beside a CPU-bound nice 19 process' if busy else 'quiet'}", flush=True)
        code, walls[busy] = run_once(args, run_name, limit_s, limit_gib, busy)
        if code:
            return code
    if args.beside_busy:
        print(f"wall beside the busy process / quiet: {walls[True]:.0f} / {walls[False]:.0f} s = "
              f"{walls[True] / walls[False]:.2f}x (goal <= 1.5x)")
    return 0


def run_once(args: argparse.Namespace, run_name: str, limit_s: float, limit_gib: float,
             busy: bool) -> tuple[int, float]:
    """One run from scratch in a fresh directory: (exit code, wall seconds); prints its time, memory and rules."""
    workdir = Path(tempfile.mkdtemp(prefix="lmscalpel-smoke-"))
    shutil.copy(REPO / "config.yaml", workdir / "config.yaml")
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--cores", str(args.cores), "--workflow-profile", str(REPO / "workflow" / "profiles" / "default")]
    if args.preset:
        cmd += ["--configfile", str(args.preset.resolve())]
    # the busy neighbour: a CPU-bound loop at nice 19 in this session (nice orders processes within a session's
    # autogroup; one of another session gets an equal share whatever its nice, see bench_contention.py)
    hog = subprocess.Popen(["nice", "-n", "19", sys.executable, "-c", "while True: pass"]) if busy else None
    log_path = workdir / "snakemake.stderr"
    try:
        start = time.perf_counter()
        with open(log_path, "w") as log:
            run = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log)
            _, status, usage = os.wait4(run.pid, 0)   # this run's rusage: its own and its waited-for descendants'
        wall = time.perf_counter() - start
    finally:
        if hog is not None:
            hog.kill()
            hog.wait()
    returncode = os.waitstatus_to_exitcode(status)
    peak_gib = usage.ru_maxrss / 2**20
    stderr = log_path.read_text()
    report = workdir / "reports" / run_name / "index.html"
    print(f"snakemake exit code: {returncode}; report written: {report.exists()}")
    print(f"wall time: {wall:.0f} s (goal <= {limit_s} s; ratio {wall / limit_s:.2f})")
    print(f"peak RSS of one process: {peak_gib:.2f} GiB (goal <= {limit_gib} GiB; ratio {peak_gib / limit_gib:.2f})")
    print_rule_times(stderr)
    print_peak_memory(workdir / "logs")
    server_log = workdir / "logs" / run_name / "jobserver.log"
    if server_log.exists() and (served := re.search(r"served (\d+) jobs", server_log.read_text())):
        print(f"jobs run in the warm worker: {served.group(1)}")
    if returncode:
        print(stderr[-4000:])
    if args.keep:
        print(f"run directory: {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    sys.stdout.flush()
    return returncode, wall


def print_rule_times(log: str, top: int = 12) -> None:
    """Jobs and job-seconds per rule from Snakemake's log (start and finish stamps, 1 s resolution): where the
    wall time goes, start-up included."""
    stamp, rule, started, per_rule = None, None, {}, {}
    for line in log.splitlines():
        if match := re.match(r"\[(\w{3} \w{3} +\d+ [\d:]+ \d{4})\]", line):
            stamp = datetime.datetime.strptime(match.group(1), "%a %b %d %H:%M:%S %Y")
        elif match := re.match(r"(?:local)?rule (\w+):", line):
            rule = match.group(1)
        elif (match := re.match(r"\s+jobid: (\d+)", line)) and rule:
            started[match.group(1)], rule = (rule, stamp), None
        elif (match := re.match(r"Finished jobid: (\d+)", line)) and match.group(1) in started:
            name, begin = started.pop(match.group(1))
            count, seconds = per_rule.get(name, (0, 0.0))
            per_rule[name] = (count + 1, seconds + (stamp - begin).total_seconds())
    total = sum(seconds for _, seconds in per_rule.values())
    jobs = sum(count for count, _ in per_rule.values())
    print(f"{jobs} jobs, {total:.0f} job-seconds; rules with the most job-seconds:")
    for name, (count, seconds) in sorted(per_rule.items(), key=lambda item: -item[1][1])[:top]:
        print(f"  {name:32s} {count:3d} jobs {seconds:6.0f} s ({seconds / count:5.1f} s each)")


def print_peak_memory(logs: Path, top: int = 5) -> None:
    """The jobs with the largest peak RSS, from the line each rule's log ends with (lmscalpel.workflow)."""
    peaks = []
    for log in logs.rglob("*.log"):
        for match in re.finditer(r"rule (\w+) done in (\d+) s, peak RSS ([\d.]+) GiB", log.read_text(errors="replace")):
            peaks.append((float(match.group(3)), match.group(1), log.relative_to(logs)))
    print("jobs with the largest peak RSS:")
    for gib, rule, path in sorted(peaks, reverse=True)[:top]:
        print(f"  {gib:5.2f} GiB  {rule:32s} {path}")


if __name__ == "__main__":
    sys.exit(main())
