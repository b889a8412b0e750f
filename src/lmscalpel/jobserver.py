"""A warm worker for local Snakemake runs: every job script would otherwise spend 5-10 s importing torch,
transformers, peft, scikit-learn... in a fresh interpreter, which across the ~80 jobs of the toy pipeline
costs more core-seconds than the work itself on a 2-core machine.

``onstart`` in ``workflow/rules/common.smk`` starts :func:`serve` (local runs only) and points ``LMSCALPEL_JOBSERVER`` at its
Unix socket. A job script hands itself over at its first ``import lmscalpel`` (:func:`hand_over`): it sends its
path, argv, working directory, environment and stdin/stdout/stderr to the server, which forks a child that
already has the heavy modules imported; the child runs the same script file (Snakemake's preamble included) as
``__main__`` and reports its exit status, which the waiting script exits with. Nothing else changes: same code,
same outputs, same logs. Without a server (cluster jobs, a script run by hand, a server not up yet or gone) the
script simply runs in its own interpreter. Set ``LMSCALPEL_JOBSERVER=off`` to disable it.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import json
import logging
import os
import runpy
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

SOCKET_ENV = "LMSCALPEL_JOBSERVER"
# Not `datasets` or `lm_eval`: they read HF_*_OFFLINE at import, which the zero-shot code sets per job.
PRELOAD = (
    "torch", "numpy", "safetensors.torch", "transformers", "transformers.models.llama.modeling_llama",
    "transformers.models.llava.modeling_llava", "peft", "pandas", "scipy.stats", "sklearn.linear_model",
    "rouge_score.rouge_scorer", "matplotlib.pyplot", "tqdm",
)
STATUS = struct.Struct("!i")
log = logging.getLogger(__name__)
_in_worker = False


def hand_over() -> None:
    """Run the current Snakemake job script in the warm worker and exit with its status, if a server is up.

    A no-op unless ``__main__`` is a Snakemake script job (its preamble defines ``snakemake``) and
    ``LMSCALPEL_JOBSERVER`` names a live server socket.
    """
    address = os.environ.get(SOCKET_ENV, "off")
    main = sys.modules.get("__main__")
    # Snakemake's preamble points __file__ at the source script; the file it runs (preamble + source) is this one.
    script = getattr(main, "__real_file__", None) or getattr(main, "__file__", None)
    if _in_worker or address == "off" or not script or not hasattr(main, "snakemake"):
        return
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        conn.connect(address)
    except OSError:
        conn.close()
        return
    request = {"script": os.path.abspath(script), "argv": sys.argv, "cwd": os.getcwd(), "env": dict(os.environ)}
    sys.stdout.flush()
    sys.stderr.flush()
    socket.send_fds(conn, [json.dumps(request).encode()], [0, 1, 2])
    reply = conn.recv(STATUS.size)
    # An empty reply: the worker died without reporting (killed, out of memory).
    os._exit(STATUS.unpack(reply)[0] if len(reply) == STATUS.size else 1)


def serve(address: str, preload: tuple[str, ...] = PRELOAD) -> None:
    """Import ``preload``, listen on ``address`` and fork one worker per job until terminated or until the
    parent (Snakemake) is gone."""
    parent_pid = os.getppid()
    started = time.perf_counter()
    os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")  # torch.cuda.is_available() then keeps fork safe
    for name in preload:
        try:
            importlib.import_module(name)
        except ImportError as error:  # an optional extra that is not installed: jobs import what they need
            log.info("not preloaded: %s (%s)", name, error)
    if not _fork_is_safe():
        log.warning("CUDA was initialised while preloading, so forked workers could not use it: not serving; "
                    "jobs run in their own interpreters")
        return
    gc.collect()
    gc.freeze()  # keeps the imported objects' pages shared with the workers (no refcount/GC writes to them)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(address)
    listener.listen(16)
    listener.settimeout(0.5)
    log.info("preloaded %d modules in %.1f s; listening on %s", len(preload), time.perf_counter() - started, address)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    served = 0
    try:
        while os.getppid() == parent_pid:
            _reap_workers()
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            sys.stdout.flush()
            sys.stderr.flush()
            if os.fork() == 0:
                listener.close()
                _run_worker(conn)
            conn.close()
            served += 1
    finally:
        listener.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(address)
        log.info("served %d jobs", served)


def _fork_is_safe() -> bool:
    """A forked child can use CUDA only if the parent never initialised it: ask a probe child."""
    if "torch" not in sys.modules:
        return True
    pid = os.fork()
    if pid == 0:
        os._exit(int(sys.modules["torch"].cuda._is_in_bad_fork()))
    return os.waitpid(pid, 0)[1] == 0


def _reap_workers() -> None:
    """Wait for finished workers, so their resource usage (peak RSS) counts toward this process's children."""
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass


def _run_worker(conn: socket.socket) -> None:
    """In the forked child: take over the job's stdio, environment and directory, run its script, report."""
    global _in_worker
    _in_worker = True
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    code = 1
    try:
        message, fds, _, _ = socket.recv_fds(conn, 1 << 20, 3)
        request = json.loads(message)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        sys.argv = request["argv"]
        sys.path[0] = os.path.dirname(request["script"])  # as `python script` sets it
        threading.Thread(target=_exit_when_client_gone, args=(conn,), daemon=True).start()
        logging.getLogger().handlers.clear()
        code = _run_script(request["script"])
    except BaseException:  # noqa: BLE001 - the child must always report and exit, never return to the server
        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
        with contextlib.suppress(OSError):
            conn.send(STATUS.pack(code))
        os._exit(code)


def _run_script(path: str) -> int:
    """Run ``path`` as ``__main__`` like ``python path`` would; return its exit status."""
    try:
        runpy.run_path(path, run_name="__main__")
    except SystemExit as stop:
        if stop.code is None or isinstance(stop.code, int):
            return stop.code or 0
        print(stop.code, file=sys.stderr)
        return 1
    except BaseException:  # noqa: BLE001 - reported like the interpreter would, as a traceback and status 1
        traceback.print_exc()
        return 1
    return 0


def _exit_when_client_gone(conn: socket.socket) -> None:
    """The job script waiting on the other end was killed (Snakemake cancelled the job): stop the work too."""
    with contextlib.suppress(OSError):
        conn.recv(1)
    os.kill(os.getpid(), signal.SIGKILL)


def start(log_path: str | os.PathLike) -> subprocess.Popen | None:
    """Start a server for this Snakemake process and point its jobs at it (``LMSCALPEL_JOBSERVER``)."""
    if os.environ.get(SOCKET_ENV) == "off":
        return None
    address = os.path.join(tempfile.mkdtemp(prefix="lmscalpel-"), "jobserver.sock")  # short: AF_UNIX paths <108 B
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", encoding="utf-8") as out:
        server = subprocess.Popen([sys.executable, "-c", "import sys; from lmscalpel.jobserver import main; main()",
                                   address], stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    os.environ[SOCKET_ENV] = address
    return server


def stop(server: subprocess.Popen | None) -> None:
    """Stop a server from :func:`start` (running jobs are unaffected) and wait for it."""
    if server is None:
        return
    address = server.args[-1]
    if os.environ.get(SOCKET_ENV) == address:
        del os.environ[SOCKET_ENV]
    server.terminate()
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
    shutil.rmtree(os.path.dirname(address), ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the server process (``python -c "from lmscalpel.jobserver import main; main()" SOCKET``)."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        raise SystemExit("usage: python -c 'from lmscalpel.jobserver import main; main()' SOCKET_PATH")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    Path(argv[0]).parent.mkdir(parents=True, exist_ok=True)
    serve(argv[0])

