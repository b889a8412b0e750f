"""Fingerprints of the library code a stage runs, so that Snakemake reruns a rule when that code changes.

Why: Snakemake's ``code`` rerun trigger sees a rule's script file, not the package the script imports, so an edit
in ``src/lmscalpel/`` would keep old results. A rule passes ``code_fingerprint("pruning")`` as a param; the default
``params`` trigger then reruns exactly the rules whose code changed.

The code a stage runs is the import closure, read statically (``ast``, nothing is imported), of every module of
its subpackage(s) and of ``lmscalpel.workflow`` (every job script enters through ``script_context``): imports inside
functions count, a submodule import also runs its parent packages' ``__init__``, and a name re-exported lazily
(``_EXPORTS`` of a package ``__init__``, see ``lmscalpel.lazy``) resolves to the submodule that defines it. Shared
modules therefore count for every stage that reaches them: ``io``, ``runtime``, ``workflow``, ``jobserver`` (via
the package ``__init__``), ``models`` and ``data`` for nearly all, ``toyworld`` where the toy data format or its
ground truth is read, and ``pruning.activation`` (and what it runs) for unlearning's robustness attack.
"""

from __future__ import annotations

import ast
import functools
import hashlib
from pathlib import Path

PACKAGE = "lmscalpel"
ENTRY_MODULES = ("lmscalpel.workflow",)


def package_root() -> Path:
    """The directory of the ``lmscalpel`` package that is imported (the code jobs run)."""
    return Path(__file__).resolve().parent


@functools.lru_cache(maxsize=None)
def module_files(root: Path) -> dict[str, Path]:
    """Dotted module name -> file for every module under ``root`` (packages map to their ``__init__.py``)."""
    files = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        files[name] = path
    return files


def _lazy_exports(tree: ast.Module) -> dict[str, str]:
    """The ``_EXPORTS`` literal of a package ``__init__`` (public name -> submodule), or {}."""
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "_EXPORTS" for t in node.targets):
            return ast.literal_eval(node.value)
    return {}


def _parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _parsed(path: Path) -> ast.Module:
    return _parse(path, path.stat().st_mtime_ns)


@functools.lru_cache(maxsize=None)
def _parse(path: Path, mtime_ns: int) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _package_members(name: str, files: dict[str, Path]) -> set[str]:
    """What importing package ``name`` as a whole reaches: its ``__init__`` and every lazy export."""
    exports = _lazy_exports(_parsed(files[name])) if files[name].name == "__init__.py" else {}
    return {name, *(f"{name}.{sub}" for sub in exports.values())}


def direct_imports(name: str, files: dict[str, Path]) -> set[str]:
    """The lmscalpel modules that module ``name`` imports (anywhere in it), plus its parent packages."""
    return set(_parents(name)) | imported_modules(name, files)


def imported_modules(name: str, files: dict[str, Path]) -> set[str]:
    """The lmscalpel modules that the import statements of module ``name`` name (at module level or inside
    functions), a lazily re-exported name resolved to its submodule; without the parent packages that Python
    runs first (``tests/test_layers.py`` reads the import graph from this)."""
    root = files[PACKAGE].parent
    return set(_imported_modules(root, name, files[name].stat().st_mtime_ns))


@functools.lru_cache(maxsize=None)
def _imported_modules(root: Path, name: str, mtime_ns: int) -> frozenset[str]:
    files = module_files(root)
    path = files[name]
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(_parsed(path)):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
            found |= {t for t in targets if t in files}
            for target in targets:
                if target in files:
                    found |= _package_members(target, files)
            continue
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level:
            base = name.split(".") if is_package else name.split(".")[:-1]
            base = base[: len(base) - node.level + 1]
            source = ".".join(base + ([node.module] if node.module else []))
        else:
            source = node.module or ""
        if source not in files:
            continue
        exports = _lazy_exports(_parsed(files[source])) if files[source].name == "__init__.py" else {}
        for alias in node.names:
            if f"{source}.{alias.name}" in files:  # a submodule: its package runs first, as its parent
                found.add(f"{source}.{alias.name}")
                continue
            found.add(source)
            if alias.name in exports:
                found.add(f"{source}.{exports[alias.name]}")
            elif alias.name == "*":
                found |= _package_members(source, files)
    found.discard(name)
    return frozenset(found)


def import_closure(seeds: set[str], files: dict[str, Path]) -> set[str]:
    """Every module reachable from ``seeds`` through imports."""
    seen: set[str] = set()
    todo = list(seeds)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo += sorted(direct_imports(name, files) - seen)
    return seen


def stage_modules(*subpackages: str, root: Path | None = None) -> set[str]:
    """The modules that the jobs of ``subpackages`` (e.g. ``"pruning"``) can run."""
    files = module_files(root or package_root())
    seeds = set(ENTRY_MODULES)
    for sub in subpackages:
        package = f"{PACKAGE}.{sub}"
        members = {name for name in files if name == package or name.startswith(package + ".")}
        if not members:
            raise ValueError(f"code_fingerprint: no subpackage {package!r} under {root or package_root()}")
        seeds |= members
    return import_closure(seeds, files)


def _data_files(package_dir: Path) -> list[Path]:
    """Non-Python files a seed package ships (templates, styles), read at run time."""
    return sorted(p for p in package_dir.rglob("*") if p.is_file() and p.suffix not in (".py", ".pyc"))


@functools.lru_cache(maxsize=None)
def code_fingerprint(*subpackages: str, root: Path | None = None) -> str:
    """Short sha256 of the source of every module that the jobs of ``subpackages`` can run (and of the
    subpackages' data files): equal iff that code is byte-identical."""
    root = root or package_root()
    files = module_files(root)
    paths = {files[name] for name in stage_modules(*subpackages, root=root)}
    for sub in subpackages:
        paths |= set(_data_files(root / sub))
    return _digest(paths, root)


def source_fingerprint(*modules: str, root: Path | None = None) -> str:
    """Short sha256 of the source of ``modules`` and of every module they import: equal iff that code is
    byte-identical (what a cache of something those modules compute is keyed by)."""
    root = root or package_root()
    files = module_files(root)
    return _digest({files[name] for name in import_closure(set(modules), files)}, root)


def _digest(paths: set[Path], root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(path.relative_to(root.parent).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]
