"""The package's layout: no import circles (module-level or deferred imports; imports for type checkers only
do not count), and the diffusion core and the networks import nothing else of the package (the networks' CPU
kernels may use the user cache folder, a leaf module)."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "tsimpute"


def _imports() -> dict[str, set[str]]:
    """Every module's imports of other package modules, deferred (in-function) imports included."""
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        here = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        tree = ast.parse(path.read_text())
        for block in [n for n in ast.walk(tree) if isinstance(n, ast.If) and "TYPE_CHECKING" in ast.unparse(n.test)]:
            block.body = []
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                base = here[: len(here) - node.level + 1] if node.level else []
                target = ".".join(base + ([node.module] if node.module else [])) if node.level else node.module
                for alias in node.names:
                    for candidate in (f"{target}.{alias.name}", target):
                        if candidate in modules and candidate != name:
                            graph[name].add(candidate)
                            break
            elif isinstance(node, ast.Import):
                graph[name].update(a.name for a in node.names if a.name in modules and a.name != name)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_import_circles():
    graph = _imports()
    assert "tsimpute.imputer" in graph and graph["tsimpute.imputer"]  # the scan sees the package
    circles = [c for c in _cycles(graph) if not all(m.startswith("tsimpute.benchmark.") for m in c)]
    assert circles == []


def test_the_diffusion_core_and_the_networks_stand_alone():
    graph = _imports()
    for name, deps in graph.items():
        if name.startswith("tsimpute.diffusion"):
            assert all(d.startswith("tsimpute.diffusion") for d in deps), (name, deps)
        if name.startswith("tsimpute.models"):
            assert all(d.startswith("tsimpute.models") or d == "tsimpute.cache" for d in deps), (name, deps)
    assert graph["tsimpute.cache"] == set()  # a leaf


def test_the_scan_finds_a_circle_when_there_is_one():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
