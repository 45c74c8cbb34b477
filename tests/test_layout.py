"""The house's layering, read from the source with ``ast`` (every import, function-level
ones included): no import cycle anywhere; the app reads tables through bench.views and
bench.results only; methods see bench.api and bench.plugins only; each package of bench/
imports only the layers below it (docs/ARCHITECTURE.md draws them); nothing imports
another module's private (``_``) name."""
from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bench", "methods", "app")

# What each part of bench/ may import from bench/ (besides itself), leaves first: the
# registries and helpers, then the tables (results), the method API, the axes (archs,
# attacks, corruptions, data, hardware), plugins, views (read tables only), the grid.
LAYERS = {
    "bench.registry": set(),
    "bench.faults": set(),
    "bench.allocator": set(),
    "bench.errors": set(),
    "bench.schedules": set(),
    "bench.measures": set(),
    "bench.formats": set(),
    "bench.sandbox": set(),
    "bench.results": {"bench.faults"},
    "bench._method": {"bench.results"},
    "bench._method_registry": {"bench._method", "bench.registry"},
    "bench._sgd": {"bench._method", "bench.schedules"},
    # from_robustbench serves robustbench's `autoattack` imports through the alias, a leaf
    "bench.archs": {"bench.registry", "bench.interop.autoattack_alias"},
    "bench.attacks": {"bench.registry"},
    "bench.corruptions": {"bench.registry"},
    "bench.data": {"bench.registry"},
    "bench.hardware": {"bench.registry"},
    "bench.latency": {"bench.hardware", "bench.results"},
    "bench.api": {"bench._method", "bench._method_registry", "bench._sgd", "bench.schedules",
                  "bench.archs"},
    "bench.plugins": {"bench._method", "bench._method_registry", "bench.registry",
                      "bench.errors", "methods"},
    "bench.views": {"bench.results", "bench.formats"},
    "bench.grid": {"bench.api", "bench.plugins", "bench.registry", "bench.archs",
                   "bench.attacks", "bench.corruptions", "bench.data", "bench.hardware",
                   "bench.results", "bench.errors"},
}
# Above these, in order: work (the cell bodies), execute (schedules and runs them), interop
# and speed (use both), cli (everything). Each may import anything in LAYERS and the upper
# parts left of it, except that work and execute never import views: they write tables,
# views read them.
UPPER = ["bench.work", "bench.execute", "bench.interop", "bench.speed", "bench.cli"]
NO_VIEWS = ("bench.work", "bench.execute")


def modules() -> dict[str, Path]:
    found = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


MODULES = modules()


def owner(name: str) -> str | None:
    """The project module that ``name`` (a dotted import target) lives in."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports(module: str) -> list[tuple[str, str | None, int]]:
    """(target module, imported name or None, line) for every import in ``module``."""
    path = MODULES[module]
    tree = ast.parse(path.read_text())
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, None, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(up + ([base] if base else []))
            for a in node.names:
                full = f"{base}.{a.name}"
                out.append((full if full in MODULES else base, None if full in MODULES
                            else a.name, node.lineno))
    return out


def graph() -> dict[str, set[str]]:
    edges = defaultdict(set)
    for m in MODULES:
        for target, _, _ in imports(m):
            o = owner(target)
            if o is not None and o != m:
                edges[m].add(o)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(MODULES):
        if v not in index:
            visit(v)
    return out


def layer_of(module: str) -> str | None:
    for name in sorted([*LAYERS, *UPPER], key=len, reverse=True):
        if module == name or module.startswith(name + "."):
            return name
    return None


def in_part(module: str, part: str) -> bool:
    return module == part or module.startswith(part + ".")


def test_no_import_cycles():
    assert cycles(graph()) == []


def test_app_reads_through_views_and_results_only():
    # (and bench.formats, the leaf that says how numbers read, shared with the CLI)
    bad = [f"{m} imports {t} (line {ln})" for m in MODULES if in_part(m, "app")
           for t, _, ln in imports(m)
           if (o := owner(t)) and not in_part(o, "app")
           and not any(in_part(o, p) for p in ("bench.views", "bench.results", "bench.formats"))]
    assert bad == []


def test_methods_see_the_public_api_only():
    bad = [f"{m} imports {t} (line {ln})" for m in MODULES if in_part(m, "methods")
           for t, _, ln in imports(m)
           if (o := owner(t)) and not in_part(o, "methods")
           and o not in ("bench.api", "bench.plugins")]
    assert bad == []


def allowed(mine: str, module: str) -> bool:
    """May a module of layer ``mine`` import ``module``?"""
    if mine in LAYERS:
        return any(in_part(module, a) for a in LAYERS[mine])
    theirs = layer_of(module)
    if theirs == "bench.views" and mine in NO_VIEWS:
        return False
    if theirs in LAYERS:
        return True
    return theirs in UPPER and UPPER.index(theirs) < UPPER.index(mine)


def test_each_layer_imports_only_below_it():
    bad = []
    for m in MODULES:
        mine = layer_of(m)
        if not in_part(m, "bench") or m == "bench" or m == "bench.cli.__main__":
            continue
        assert mine is not None, f"{m} belongs to no layer: add it to LAYERS or UPPER"
        for t, _, ln in imports(m):
            o = owner(t)
            if o is None or o == "bench" or in_part(o, mine):
                continue
            if not allowed(mine, o):
                bad.append(f"{m} ({mine}) imports {o} ({layer_of(o)}), line {ln}")
    assert bad == []


def test_no_module_imports_another_modules_private_names():
    bad = []
    for m in MODULES:
        package = m if MODULES[m].name == "__init__.py" else m.rpartition(".")[0]
        for t, name, ln in imports(m):
            o = owner(t)
            if o is None:
                continue
            if name is not None and name.startswith("_") and not name.startswith("__"):
                bad.append(f"{m} imports {name} from {o}, line {ln}")
            # a private module is private to its package
            leaf = o.rpartition(".")[2]
            if leaf.startswith("_") and not leaf.startswith("__") \
                    and not in_part(m, o.rpartition(".")[0]) and o.rpartition(".")[0] != package:
                bad.append(f"{m} imports the private module {o}, line {ln}")
    assert bad == []


@pytest.mark.parametrize("planted", [
    {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}},
])
def test_the_cycle_finder_finds_a_planted_cycle(planted, monkeypatch):
    monkeypatch.setitem(globals(), "MODULES", {k: None for k in planted})
    assert cycles(planted) == [["a", "b", "c"]]
