"""The warm worker: a Snakemake script job hands itself over to a server that forks a preloaded child, which runs
the same file with the job's argv, stdio, environment and directory and reports its exit status; without a
server the script runs in its own interpreter."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lmscalpel import jobserver

# Stands in for Snakemake's preamble (which defines `snakemake`); the job then imports lmscalpel like every script.
JOB = """
snakemake = {"rule": "demo"}
import os, sys, pathlib
import lmscalpel
own_dir = os.path.samefile(sys.path[0], os.path.dirname(os.path.abspath(__file__)))
pathlib.Path("ran.txt").write_text(f"{os.getpid()} {os.getppid()} {os.environ.get('DEMO_VALUE')} {own_dir}")
print("to stdout")
print("to stderr", file=sys.stderr)
if sys.argv[1] == "raise":
    raise RuntimeError("job failed")
if sys.argv[1] == "sleep":
    __import__("time").sleep(60)
sys.exit(int(sys.argv[1]))
"""


def wait_for(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.fixture()
def server(tmp_path):
    address = str(tmp_path / "s.sock")
    code = f"from lmscalpel.jobserver import serve; serve({address!r}, preload=('json',))"
    proc = subprocess.Popen([sys.executable, "-c", code])
    wait_for(lambda: Path(address).exists())
    yield proc, address
    proc.terminate()
    proc.wait(timeout=30)


def run_job(tmp_path: Path, address: str, *args: str, **popen) -> subprocess.CompletedProcess | subprocess.Popen:
    (tmp_path / "job.py").write_text(JOB)
    env = {**os.environ, jobserver.SOCKET_ENV: address, "DEMO_VALUE": "from-client"}
    cmd = [sys.executable, "job.py", *args]
    if popen:
        return subprocess.Popen(cmd, cwd=tmp_path, env=env, **popen)
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)


def ran_in(tmp_path: Path) -> tuple[int, int, str, bool]:
    """The job's pid, parent pid, DEMO_VALUE, and whether sys.path[0] is the script's directory."""
    pid, ppid, value, own_dir = (tmp_path / "ran.txt").read_text().split(" ")
    return int(pid), int(ppid), value, own_dir == "True"


def test_job_runs_in_a_forked_worker_with_its_own_stdio_env_and_status(server, tmp_path):
    proc, address = server
    result = run_job(tmp_path, address, "7")
    assert result.returncode == 7
    assert result.stdout == "to stdout\n" and result.stderr == "to stderr\n"
    _, parent, value, own_dir = ran_in(tmp_path)
    assert parent == proc.pid and value == "from-client" and own_dir


def test_exception_in_the_worker_is_a_traceback_and_status_1(server, tmp_path):
    result = run_job(tmp_path, server[1], "raise")
    assert result.returncode == 1 and "RuntimeError: job failed" in result.stderr


def test_without_a_server_the_script_runs_in_its_own_interpreter(tmp_path):
    for address in (str(tmp_path / "nobody.sock"), "off"):
        result = run_job(tmp_path, address, "3")
        assert result.returncode == 3 and result.stdout == "to stdout\n"
        assert ran_in(tmp_path)[1] == os.getpid()  # the script's own process, a child of this test


def test_killing_the_waiting_script_stops_the_worker(server, tmp_path):
    proc, address = server
    client = run_job(tmp_path, address, "sleep", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: (tmp_path / "ran.txt").exists())
    worker, parent, *_ = ran_in(tmp_path)
    assert parent == proc.pid
    client.kill()
    client.wait()
    wait_for(lambda: not Path(f"/proc/{worker}").exists())


def test_start_and_stop_set_and_clear_the_address(tmp_path, monkeypatch):
    monkeypatch.delenv(jobserver.SOCKET_ENV, raising=False)
    server = jobserver.start(tmp_path / "logs" / "jobserver.log")
    address = os.environ[jobserver.SOCKET_ENV]
    wait_for(lambda: Path(address).exists(), timeout=120)
    jobserver.stop(server)
    assert jobserver.SOCKET_ENV not in os.environ and not Path(address).parent.exists()
    assert "served 0 jobs" in (tmp_path / "logs" / "jobserver.log").read_text()


def test_start_is_disabled_by_off(monkeypatch, tmp_path):
    monkeypatch.setenv(jobserver.SOCKET_ENV, "off")
    assert jobserver.start(tmp_path / "jobserver.log") is None


def test_no_serving_when_forked_workers_could_not_use_cuda(tmp_path):
    """After CUDA initialisation a forked child cannot use the GPU; simulated with torch's own bad-fork flag."""
    address = str(tmp_path / "s.sock")
    code = ("import torch; torch.cuda._is_in_bad_fork = lambda: True\n"
            f"from lmscalpel.jobserver import serve; serve({address!r}, preload=('json',))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and not Path(address).exists() and "not serving" in result.stderr
