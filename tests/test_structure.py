"""The code's shape (issue 22 item 5): small modules, no import cycles, the training loop's entry point read
top to bottom as named steps, and the reference trainers imported only as ``jembench.reference_models`` (issue 27
item 8: the wheel ships no top-level ``reference_models``)."""

from __future__ import annotations

import ast
import inspect
import os
import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
#: module prefix -> folder: the repository's reference_models/ is the subpackage jembench.reference_models (pyproject's
#: package-dir; the symlink jembench/reference_models, which rglob does not follow, in a checkout)
PACKAGES = {"jembench": "jembench", "jembench.reference_models": "reference_models"}
#: where the code that imports jembench lives (the structure test for the top-level name scans them all)
CODE_DIRS = ("jembench", "reference_models", "tests", "benchmarks", "tools")
MAX_LINES = 600
#: cycles another change removes; drop an entry when it lands, so that the test holds the line from then on (the
#: leaderboard <-> render one went with render.emphasis and jembench.sections)
KNOWN_CYCLES: set[frozenset[str]] = set()


def _modules() -> dict[str, Path]:
    found = {}
    for package, folder in PACKAGES.items():
        for path in (REPO / folder).rglob("*.py"):
            name = ".".join((package, *path.relative_to(REPO / folder).with_suffix("").parts))
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
    from jembench.reference_models import train_loop

    source = inspect.getsource(train_loop._train)
    body = [line.strip() for line in source.splitlines()[1:] if line.strip()]
    assert len(body) <= 8 and [s for s in ("_start(", "_build(", "_open_records(", "_iterate(", "_finish(")
                                    if not any(s in line for line in body)] == []
    longest = max(len(inspect.getsource(f).splitlines()) for f in vars(train_loop).values()
                  if inspect.isfunction(f) and f.__module__ == train_loop.__name__)
    assert longest <= 60


def _top_level_reference_models(source: str) -> list[str]:
    """Where ``source`` names the top-level ``reference_models`` package: absolute imports (``import
    reference_models...``, ``from reference_models... import``) and strings naming a module of it
    (``importlib.import_module`` targets, ``module:function`` specs such as entry points)."""
    top = "reference" + "_models"  # spelled apart so that this file's own strings are not a hit
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] == top]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == top:
            found.append(f"from {node.module}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and re.fullmatch(top + r"(\.\w+)*(:\w+)?", node.value) and node.value != top:
            found.append(repr(node.value))
    return found


def test_the_detector_finds_each_way_of_naming_the_top_level_package():
    top = "reference" + "_models"
    for hit in (f"import {top}", f"import {top}.jem as j", f"from {top} import jem", f"from {top}.sam import SAM",
                f"import os, {top}.config", f"spec = '{top}.train_loop:draw_samples'",
                f"importlib.import_module('{top}.jem')"):
        assert _top_level_reference_models(hit), hit
    for fine in (f"from jembench.{top} import jem", f"import jembench.{top}.sam", "from . import presets",
                 "from .config import TrainConfig", f"'jembench.{top}.wideresnet:wide_resnet'",
                 f"'{top}/train_loop.py:train_step'", f"x = '{top}'"):
        assert not _top_level_reference_models(fine), fine


def test_nothing_imports_the_top_level_reference_models_package():
    """The wheel installs the reference trainers only as ``jembench.reference_models``; a checkout also has the
    folder on ``sys.path`` (``PYTHONPATH=.``), where an import of the top-level name would work here and fail for
    every user of the wheel (and would load a second copy of every module beside ``jembench.reference_models``)."""
    hits = {f"{path.relative_to(REPO)}: {hit}" for folder in CODE_DIRS for path in (REPO / folder).rglob("*.py")
            for hit in _top_level_reference_models(path.read_text(encoding="utf-8"))}
    assert not hits, "import jembench.reference_models instead of the top-level name:\n" + "\n".join(sorted(hits))


def test_the_checkout_links_jembench_reference_models_to_the_folder():
    """A checkout imports ``jembench.reference_models`` through a committed relative symlink (so it keeps working
    wherever the checkout is moved or copied) onto the one copy of the code, ``reference_models/``."""
    link = REPO / "jembench" / "reference_models"
    assert link.is_symlink() and os.readlink(link) == os.path.join("..", "reference_models")
    assert link.resolve() == (REPO / "reference_models").resolve()
    import jembench.reference_models.wideresnet as wrn

    assert Path(wrn.__file__).resolve() == REPO / "reference_models" / "wideresnet.py"
    if (REPO / ".git").exists():  # committed as a symlink (mode 120000), not as a copy
        staged = subprocess.run(["git", "ls-files", "-s", "jembench/reference_models"], cwd=REPO, text=True,
                                capture_output=True, check=True).stdout
        assert staged.startswith("120000 "), staged
