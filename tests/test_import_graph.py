"""The package's import graph, read from its source: no import circle among its modules (imports inside functions
counted), and each room imports only the rooms below it.

The rooms, bottom to top (README "Where things are"): the shared pieces (errors, outdir, accounting, published,
tracking, _torch_check), data, training, store, sweep, laws (and planner, which plans from a law), analysis, report,
and the front doors (commands, cli, reproduce, the package's own __init__). A module may import its own room and
any room below it, never one above.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "scalinglab"

ROOMS = [
    {"errors", "outdir", "accounting", "published", "tracking", "_torch_check"},
    {"data"},
    {"training"},
    {"store"},
    {"sweep"},
    {"laws", "planner"},
    {"analysis"},
    {"report"},
    {"commands", "cli", "reproduce", ""},  # "": the package's __init__ (its API, resolved on first use)
]


def modules(src: Path, package: str) -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (file, is a package's __init__)."""
    found = {}
    for path in sorted((src / package).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        found[".".join(parts[:-1] if is_pkg else parts)] = (path, is_pkg)
    return found


def import_graph(src: Path, package: str) -> dict[str, set[str]]:
    """module -> the package's modules it imports anywhere in its source (module level, functions, branches),
    absolute or relative. `from a import b` is an edge to the module a.b where b is one, else to a."""
    mods = modules(src, package)
    graph = {}
    for name, (path, is_pkg) in mods.items():
        here = name if is_pkg else name.rpartition(".")[0]
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                edges |= {a.name for a in node.names if a.name in mods}
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = here.split(".")[: len(here.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                for a in node.names:
                    if f"{target}.{a.name}" in mods:
                        edges.add(f"{target}.{a.name}")
                    elif target in mods:
                        edges.add(target)
        edges.discard(name)
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each as one circle through it."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(_circle(graph, set(comp)))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _circle(graph: dict[str, set[str]], comp: set[str]) -> list[str]:
    """One circle inside a strongly connected component, from its first module back to it (breadth-first)."""
    start = min(comp)
    prev, todo = {start: None}, [start]
    while todo:
        v = todo.pop(0)
        for w in sorted(graph[v] & comp):
            if w == start:
                path = [v]
                while prev[path[-1]] is not None:
                    path.append(prev[path[-1]])
                return path[::-1] + [start]
            if w not in prev:
                prev[w] = v
                todo.append(w)
    raise AssertionError("not a strongly connected component")  # pragma: no cover


def room(module: str, package: str = PACKAGE) -> int:
    top = module.removeprefix(package).lstrip(".").split(".")[0]
    for level, names in enumerate(ROOMS):
        if top in names:
            return level
    raise AssertionError(f"{module}: in no room of ROOMS; give it one (tests/test_import_graph.py)")


def upward(graph: dict[str, set[str]]) -> list[str]:
    return [f"{a} -> {b}" for a in sorted(graph) for b in sorted(graph[a]) if room(b) > room(a)]


# ------------------------------------------------------------------------------------------------------ the checker


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_checker_finds_a_circle_through_a_function_level_and_a_relative_import(tmp_path):
    src = _write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "from pkg.b import f\n",
        "pkg/sub/__init__.py": "",
        "pkg/b.py": "def f():\n    from .sub import c\n",
        "pkg/sub/c.py": "def g():\n    from .. import a\n",
        "pkg/d.py": "import pkg.a\n",  # imports into the circle, not part of it
    })  # fmt: skip
    graph = import_graph(src, "pkg")
    assert graph["pkg.b"] == {"pkg.sub.c"} and graph["pkg.sub.c"] == {"pkg.a"}
    assert cycles(graph) == [["pkg.a", "pkg.b", "pkg.sub.c", "pkg.a"]]


def test_checker_passes_a_tree_without_circles(tmp_path):
    src = _write(tmp_path, {
        "pkg/__init__.py": "from pkg import a\n",
        "pkg/a.py": "from . import b\nfrom .b import f\n",
        "pkg/b.py": "import os\ndef f():\n    import pkg.c\n",
        "pkg/c.py": "",
    })  # fmt: skip
    graph = import_graph(src, "pkg")
    assert graph == {"pkg": {"pkg.a"}, "pkg.a": {"pkg.b"}, "pkg.b": {"pkg.c"}, "pkg.c": set()}
    assert cycles(graph) == []


def test_layering_rule_flags_an_upward_import():
    assert upward({"scalinglab.analysis.study": {"scalinglab.report.html", "scalinglab.laws.fit"}}) == [
        "scalinglab.analysis.study -> scalinglab.report.html"]
    assert upward({"scalinglab.report.html": {"scalinglab.analysis"}}) == []


# ------------------------------------------------------------------------------------------------------ the package


@pytest.fixture(scope="module")
def package_graph() -> dict[str, set[str]]:
    graph = import_graph(SRC, PACKAGE)
    assert len(graph) > 50 and "scalinglab.training.trainer" in graph  # the real tree was read
    return graph


def test_no_import_circle_in_the_package(package_graph):
    found = cycles(package_graph)
    assert not found, "import circles: " + "; ".join(" -> ".join(c) for c in found)


def test_each_room_imports_only_rooms_below_it(package_graph):
    wrong = upward(package_graph)
    assert not wrong, "imports of a higher room: " + ", ".join(wrong)
