"""The package's layering (DEVELOPERS.md, Layout): a module imports only its own package, the base modules or a
lower layer, and no two modules import each other, directly or around a cycle.

The import graph is read statically by ``lmscalpel.fingerprint`` (the reader behind ``code_fingerprint``):
imports inside functions count, and a name re-exported lazily by a package ``__init__`` counts as an import of the
submodule that defines it.
"""

from __future__ import annotations

from lmscalpel.fingerprint import PACKAGE, imported_modules, module_files, package_root

# Top-level module or subpackage of lmscalpel -> layer, lowest first (the one table of the layering). Layer 0 is
# the base: its modules may import each other. Packages of one layer above 0 do not import each other; shared code
# moves down instead.
LAYERS = {
    PACKAGE: 0, "io": 0, "registry": 0, "lazy": 0, "config": 0, "runtime": 0, "fingerprint": 0, "jobserver": 0,
    "checkpoint": 0,
    "toyworld": 1,
    "data": 2,
    "models": 3,
    "workflow": 4,
    "cache": 5,
    "sae": 6,
    "features": 7, "steering": 7, "pruning": 7, "safety": 7,
    "reasoning": 8, "unlearning": 8,
    "report": 9,
}
BASE_ONLY = {"report"}  # reads result files: nothing of the stages it reports on


def top_level(module: str) -> str:
    """``lmscalpel.steering.grid`` -> ``steering``; the package itself -> ``lmscalpel``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else PACKAGE


def ancestors(module: str) -> set[str]:
    parts = module.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules its imports run: what they name and those modules' packages, less the module's own
    packages (Python runs them before the module, whatever it imports)."""
    files = module_files(package_root())
    graph = {}
    for name in files:
        named = imported_modules(name, files)
        graph[name] = (named | {a for target in named for a in ancestors(target)}) - ancestors(name) - {name}
    return graph


def allowed(source: str, target: str) -> bool:
    here, there = top_level(source), top_level(target)
    if here == there:
        return True
    if here in BASE_ONLY:
        return LAYERS[there] == 0
    return LAYERS[there] < LAYERS[here] or LAYERS[here] == LAYERS[there] == 0


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_every_package_has_a_layer():
    unknown = sorted({top_level(name) for name in import_graph()} - set(LAYERS))
    assert not unknown, f"add {unknown} to LAYERS in tests/test_layers.py and to DEVELOPERS.md's layout"


def test_no_import_goes_up_or_sideways():
    graph = import_graph()
    upward = sorted(f"{source} -> {target}" for source, targets in graph.items() for target in targets
                    if not allowed(source, target))
    assert not upward, "imports against the layering:\n" + "\n".join(upward)


def test_no_import_cycle():
    found = cycles(import_graph())
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_the_checks_catch_what_they_are_for():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert not allowed("lmscalpel.toyworld.card", "lmscalpel.models.loader")
    assert not allowed("lmscalpel.safety.tune", "lmscalpel.steering.judges")
    assert not allowed("lmscalpel.report.claims", "lmscalpel.models.names")
    assert allowed("lmscalpel.runtime", "lmscalpel.io") and allowed("lmscalpel.reasoning.stage", "lmscalpel.sae")
