"""A 2-thread torch job on 2 cores, alone and beside one CPU-bound ``nice 19`` process, under each OpenMP wait
policy: seconds and the ratio to the job alone, measured side by side in one run (goal: <= 1.5x beside the busy
process with the policy lmscalpel sets, OMP_WAIT_POLICY=PASSIVE).

The busy process runs either in this session (where nice 19 lowers its share) or in a session of its own (setsid,
as from another terminal: with the kernel's autogroups, nice does not reach across sessions and each session gets
an equal share of the CPU). Each measurement is a fresh interpreter, since OpenMP reads its policy at start-up.

    .venv/bin/python benchmarks/bench_contention.py [--steps 600]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

WORK = """
import sys, time, torch
torch.set_num_threads(int(sys.argv[1]))
torch.manual_seed(0)
d, h, b = 576, 1536, 256  # a SmolLM2-sized MLP block, forward and backward (many mid-sized parallel regions)
w1, w2 = torch.randn(d, h, requires_grad=True), torch.randn(h, d, requires_grad=True)
x = torch.randn(b, d)
start = time.perf_counter()
for _ in range(int(sys.argv[2])):
    (torch.nn.functional.silu(x @ w1) @ w2).square().mean().backward()
print(time.perf_counter() - start)
"""
HOG = "while True: pass"


def job_seconds(threads: int, steps: int, policy: str | None) -> float:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"} | ({"OMP_WAIT_POLICY": policy} if policy else {})
    out = subprocess.run([sys.executable, "-c", WORK, str(threads), str(steps)], env=env, capture_output=True,
                         text=True, check=True)
    return float(out.stdout.strip())


def start_hog(own_session: bool) -> subprocess.Popen:
    hog = subprocess.Popen(["nice", "-n", "19", sys.executable, "-c", HOG], start_new_session=own_session)
    time.sleep(1)
    return hog


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=600)
    args = ap.parse_args()
    policies = {"spin (OpenMP default)": None, "PASSIVE (lmscalpel)": "PASSIVE"}
    alone = {name: job_seconds(2, args.steps, policy) for name, policy in policies.items()}
    print(f"{'condition':64s} {'seconds':>8s} {'x alone':>8s}")
    for name, seconds in alone.items():
        print(f"{'2 threads, alone, ' + name:64s} {seconds:8.1f} {1.0:8.2f}")
    for own_session in (False, True):
        where = "own session (setsid)" if own_session else "this session"
        hog = start_hog(own_session)
        try:
            for name, policy in policies.items():
                seconds = job_seconds(2, args.steps, policy)
                print(f"{'2 threads, nice-19 hog in ' + where + ', ' + name:64s} {seconds:8.1f} "
                      f"{seconds / alone[name]:8.2f}")
            seconds = job_seconds(1, args.steps, None)
            print(f"{'1 thread, nice-19 hog in ' + where:64s} {seconds:8.1f} "
                  f"{seconds / alone['PASSIVE (lmscalpel)']:8.2f}")
        finally:
            hog.kill()
            hog.wait()


if __name__ == "__main__":
    main()
