"""The code's shape (issue 22 item 5): small modules, no import cycles, and the training loop's entry point read
top to bottom as named steps."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("jembench", "reference_models")
MAX_LINES = 600
#: cycles another change removes; drop an entry when it lands, so that the test holds the line from then on (the
#: leaderboard <-> render one went with render.emphasis and jembench.sections)
KNOWN_CYCLES: set[frozenset[str]] = set()


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            name = ".".join(path.relative_to(REPO).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Modules of ``modules`` that ``name`` imports anywhere (module level or inside functions: a lazy import is
    still a dependency), without its own package or subpackages (a package and its parts are one unit)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            parts = package.split(".")
            base = ".".join(parts[:len(parts) - (node.level - 1)]) if node.level else ""
            module = ".".join(p for p in (base, node.module or "") if p)
            targets |= {module, *(f"{module}.{a.name}" for a in node.names)}
        elif isinstance(node, ast.Import):
            targets |= {a.name for a in node.names}
    return {t for t in targets & set(modules)
            if t != name and not t.startswith(name + ".") and not name.startswith(t + ".")}


def _cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[set[str]] = []

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
            component = set()
            while True:
                w = stack.pop()
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(component)

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles():
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    assert not graph["jembench.importers"] & {"jembench.models"}  # checkpoint helpers sit below importers
    cycles = [c for c in _cycles(graph) if frozenset(c) not in KNOWN_CYCLES]
    assert not cycles


def test_no_module_over_600_lines():
    long = {name: n for name, path in _modules().items()
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long


def test_the_training_loop_reads_as_named_steps():
    from reference_models import train_loop

    source = inspect.getsource(train_loop._train)
    body = [line.strip() for line in source.splitlines()[1:] if line.strip()]
    assert len(body) <= 8 and [s for s in ("_start(", "_build(", "_open_records(", "_iterate(", "_finish(")
                                    if not any(s in line for line in body)] == []
    longest = max(len(inspect.getsource(f).splitlines()) for f in vars(train_loop).values()
                  if inspect.isfunction(f) and f.__module__ == train_loop.__name__)
    assert longest <= 60
