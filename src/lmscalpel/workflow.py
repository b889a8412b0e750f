"""Glue between Snakemake and the package: the script context and a ``mock_snakemake`` for running a rule's
script outside Snakemake (PyPSA-Eur style), so one stage can be debugged alone::

    python workflow/scripts/toyworld-train-model.py toyworld_train_model
    python workflow/scripts/cache-activations.py cache_activations --configfile presets/<preset>.yaml
    python workflow/scripts/<script>.py <rule> wildcard=value ...
"""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from lmscalpel.runtime import seed_everything, set_threads

if TYPE_CHECKING:  # transformers costs seconds of start-up that table and figure jobs do not need
    from lmscalpel.models.loader import ModelRef


def mock_snakemake(rule: str, configfiles: list[str] | None = None, workdir: str | os.PathLike | None = None,
                   **wildcards: str) -> Any:
    """Build the job of ``rule`` with ``wildcards`` through Snakemake's API and return its ``snakemake`` object.

    The object has the same ``input``, ``output``, ``log``, ``params``, ``wildcards``, ``threads``,
    ``resources`` and ``config`` a script sees inside Snakemake.
    """
    from snakemake.api import SnakemakeApi
    from snakemake.dag import DAG
    from snakemake.jobs import Job
    from snakemake.script import Snakemake
    from snakemake.settings.types import (ConfigSettings, DAGSettings, ResourceSettings, StorageSettings,
                                         WorkflowSettings)

    root = Path(workdir or os.getcwd())
    snakefile = root / "Snakefile"
    if not snakefile.exists():
        raise FileNotFoundError(f"{snakefile}: run mock_snakemake from the repository root (or pass workdir)")
    with SnakemakeApi() as api, contextlib.chdir(root):
        workflow = api.workflow(
            snakefile=snakefile, workdir=root,
            config_settings=ConfigSettings(configfiles=[Path(c) for c in (configfiles or [])]),
            resource_settings=ResourceSettings(cores=1), storage_settings=StorageSettings(),
            workflow_settings=WorkflowSettings(),
        )._workflow
        workflow.global_resources = {}
        workflow.dag_settings = DAGSettings()
        rule_obj = workflow.get_rule(rule)
        job = Job(rule_obj, DAG(workflow, rules=[rule_obj]), wildcards_dict=wildcards)
        mock = Snakemake(job.input, job.output, job.params, job.wildcards, job.threads, job.resources, job.log,
                         workflow.config, rule, None)
    for path in list(mock.output) + list(mock.log):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    return mock


def parse_cli(argv: list[str], rule: str) -> dict[str, Any]:
    """``[rule] [wildcard=value ...] [--configfile FILE ...]`` → keyword arguments of :func:`mock_snakemake`."""
    configfiles, wildcards, rest = [], {}, list(argv)
    while rest:
        arg = rest.pop(0)
        if arg == "--configfile":
            configfiles.append(rest.pop(0))
        elif "=" in arg:
            key, value = arg.split("=", 1)
            wildcards[key] = value
        elif arg != rule:
            raise SystemExit(f"this script runs rule {rule!r}; usage: {rule} [wildcard=value ...] [--configfile FILE]")
    return {"configfiles": configfiles, **wildcards}


@contextlib.contextmanager
def script_context(namespace: dict[str, Any], rule: str | tuple[str, ...]) -> Iterator[Any]:
    """Yield the ``snakemake`` object (real, or mocked from ``argv`` outside Snakemake) with logging set up.

    ``rule`` names the rule(s) that run the script; outside Snakemake a script shared by several rules takes
    the rule as its first argument. stderr and the ``logging`` root go to the rule's log file; torch threads
    follow ``threads``; every RNG is seeded from ``config["seed"]``.
    """
    rules = (rule,) if isinstance(rule, str) else tuple(rule)
    smk = namespace.get("snakemake")
    if smk is None:
        rule = sys.argv[1] if len(sys.argv) > 1 and sys.argv[1] in rules else rules[0]
        smk = mock_snakemake(rule, **parse_cli(sys.argv[1:], rule))
    else:
        rule = smk.rule
    log_path = smk.log[0] if len(smk.log) else None
    with contextlib.ExitStack() as stack:
        if log_path:
            Path(log_path).parent.mkdir(parents=True, exist_ok=True)
            stream = stack.enter_context(open(log_path, "a", buffering=1, encoding="utf-8"))
            stack.enter_context(contextlib.redirect_stderr(stream))
            logging.basicConfig(stream=stream, level=logging.INFO, force=True,
                                format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        set_threads(smk.threads)
        seed_everything(int(smk.config.get("seed", 0)))
        started = time.perf_counter()
        try:
            yield smk
        except Exception:
            logging.exception("rule %s failed", rule)
            raise
        # what a cluster profile's mem_mb / runtime should cover (a warm worker's fork counts its parent's pages)
        logging.info("rule %s done in %.0f s, peak RSS %.2f GiB", rule, time.perf_counter() - started,
                     resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)


def model_ref(smk: Any) -> "ModelRef":
    """The configured model: the toy directory when the rule has a ``model`` input, else ``model.id``."""
    from lmscalpel.models.loader import ModelRef

    local = getattr(smk.input, "model", None)
    return ModelRef.from_config(smk.config["model"], local_path=local)


def reference_model_ref(smk: Any) -> "ModelRef | None":
    """The model as shipped (the ``reference`` input, else ``model.id``) for rules with a coherence calibration
    input (``coherence``), else None."""
    from lmscalpel.models.loader import ModelRef

    if getattr(smk.input, "coherence", None) is None:
        return None
    return ModelRef.from_config(smk.config["model"], local_path=getattr(smk.input, "reference", None))
