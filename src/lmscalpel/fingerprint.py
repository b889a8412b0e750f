"""Fingerprints of the library code a job runs, so that Snakemake reruns a rule when that code changes.

Why: Snakemake's ``code`` rerun trigger sees a rule's script file, not the package the script imports, so an edit
in ``src/lmscalpel/`` would keep old results. A rule passes ``code_fingerprint("<script>")`` (``common.smk``: the
:func:`script_fingerprint` of ``workflow/scripts/<script>.py``) as a param; the default ``params`` trigger then
reruns exactly the rules whose code changed.

Which code counts, read statically (``ast``, nothing is imported): the import closure of the rule's script. Imports
inside functions count (they can run), a submodule import also runs its parent packages' ``__init__``, and a name
re-exported lazily (``_EXPORTS`` of a package ``__init__``, see ``lmscalpel.lazy``) resolves to the submodule that
defines it. A module that no import of the script reaches does not count, wherever it lives: an edit in
``pruning/table.py`` reruns the pruning table (and what reads it), not the pruning cells. A stage's plan module
(``<stage>/plan.py``) counts only for the jobs that import it: what it decides for Snakemake (jobs, paths, the
config keys a rule takes) shows in each job's inputs, outputs and params, which Snakemake compares itself.

What of that code counts: each module's syntax tree without docstrings (nor any other bare string statement) and
without line numbers, so an edit of a comment, a docstring or the layout changes nothing; and the data files
(templates, YAML) of the packages reached, as bytes. Nothing in the package reads a docstring (``__doc__``); a module
that did would need its docstrings kept. The tree is dumped as the running Python parses it, so another Python
version may change every fingerprint once.
"""

from __future__ import annotations

import ast
import functools
import hashlib
from pathlib import Path
from typing import Iterator

PACKAGE = "lmscalpel"


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


def _stamp(path: Path) -> tuple[int, int]:
    """What the caches of a file's tree are keyed by: its modification time and size (as Python's bytecode cache)."""
    stat = path.stat()
    return stat.st_mtime_ns, stat.st_size


def _parsed(path: Path) -> ast.Module:
    return _parse(path, _stamp(path))


@functools.lru_cache(maxsize=None)
def _parse(path: Path, stamp: tuple[int, int]) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _statements(body: list[ast.AST]) -> Iterator[ast.AST]:
    """Every statement in ``body``, nested ones (in functions, classes, branches, handlers) included: where an
    import can be, without visiting the expressions, most of a tree."""
    for node in body:
        yield node
        for field in ("body", "orelse", "finalbody", "handlers", "cases"):
            yield from _statements(getattr(node, field, ()))


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
    return set(_imported_modules(root, name, _stamp(files[name])))


@functools.lru_cache(maxsize=None)
def _imported_modules(root: Path, name: str, stamp: tuple[int, int]) -> frozenset[str]:
    files = module_files(root)
    path = files[name]
    base = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    return frozenset(_imports(_parsed(path), base, files) - {name})


def _imports(tree: ast.Module, base: list[str], files: dict[str, Path]) -> set[str]:
    """The lmscalpel modules the import statements of ``tree`` name; ``base``: the package that relative imports
    start from."""
    found: set[str] = set()
    for node in _statements(tree.body):
        if isinstance(node, ast.Import):
            for target in (alias.name for alias in node.names):
                if target in files:
                    found |= _package_members(target, files)
            continue
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level:
            source = ".".join(base[: len(base) - node.level + 1] + ([node.module] if node.module else []))
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
    return found


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


def script_modules(script: Path, root: Path | None = None) -> set[str]:
    """The lmscalpel modules that the job script ``script`` (``workflow/scripts/<name>.py``) can run."""
    files = module_files(root or package_root())
    tree = ast.parse(Path(script).read_text(encoding="utf-8"), filename=str(script))
    return import_closure(_imports(tree, [], files), files)


def script_fingerprint(script: Path, root: Path | None = None) -> str:
    """Short sha256 of what changes the behaviour of the code that ``script`` can run (see the module docstring):
    equal iff those modules' syntax trees, docstrings aside, and their packages' data files are the same."""
    root = root or package_root()
    files = module_files(root)
    modules = script_modules(script, root)
    digest = hashlib.sha256()
    for name in sorted(modules):
        digest.update(f"{name}\0{_module_digest(files[name])}\0".encode())
    for path in sorted(p for name in modules if files[name].name == "__init__.py" for p in _data_files(files[name])):
        _add_file(digest, path, root)
    return digest.hexdigest()[:16]


def _module_digest(path: Path) -> str:
    return _behaviour_digest(path, _stamp(path))


@functools.lru_cache(maxsize=None)
def _behaviour_digest(path: Path, stamp: tuple[int, int]) -> str:
    return hashlib.sha256(_dump(_parse(path, stamp)).encode()).hexdigest()


def _dump(node: object) -> str:
    """``node`` as text without positions and without bare string statements (docstrings): what runs."""
    if isinstance(node, ast.AST):
        return f"{type(node).__name__}({','.join(_dump(getattr(node, f, None)) for f in node._fields)})"
    if isinstance(node, list):
        return f"[{','.join(_dump(item) for item in node if not _is_bare_string(item))}]"
    return repr(node)


def _is_bare_string(node: object) -> bool:
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)


@functools.lru_cache(maxsize=None)
def _data_files(init: Path) -> tuple[Path, ...]:
    """Non-Python files of the package whose ``__init__`` is ``init`` (templates, YAML, read at run time), not
    those of its subpackages."""
    package = init.parent
    return tuple(p for p in package.rglob("*") if p.is_file() and p.suffix not in (".py", ".pyc")
                 and _package_of(p) == package)


def _package_of(path: Path) -> Path:
    """The innermost package directory (one with an ``__init__.py``) that holds ``path``."""
    return next(d for d in path.parents if (d / "__init__.py").exists())


def source_fingerprint(*modules: str, root: Path | None = None) -> str:
    """Short sha256 of the source of ``modules`` and of every module they import: equal iff that code is
    byte-identical (what a cache of something those modules compute is keyed by)."""
    root = root or package_root()
    files = module_files(root)
    digest = hashlib.sha256()
    for path in sorted(files[name] for name in import_closure(set(modules), files)):
        _add_file(digest, path, root)
    return digest.hexdigest()[:16]


def _add_file(digest, path: Path, root: Path) -> None:
    """Feed ``path`` (its name below ``root``'s parent and its bytes) to ``digest``."""
    digest.update(path.relative_to(root.parent).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
