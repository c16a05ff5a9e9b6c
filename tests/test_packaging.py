"""What a wheel ships: every package and the package data (protocols, tolerances, published numbers)."""

from __future__ import annotations

import tomllib

from jembench import resources
from test_eval_helpers import REPO


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


def test_every_package_and_the_data_folders_are_listed_in_pyproject():
    config = _pyproject()["tool"]["setuptools"]
    mapped = config["package-dir"]
    assert mapped == {"jembench.resources.protocols": "suites", "jembench.resources.published": "results/published",
                      "jembench.reference_models": "reference_models"}
    # the packages under jembench/ (rglob does not enter the symlink jembench/reference_models) and under each
    # mapped folder, by the name they are installed under
    found = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "jembench").rglob("__init__.py")}
    for package, folder in mapped.items():
        found |= {".".join((package, *p.parent.relative_to(REPO / folder).parts))
                  for p in (REPO / folder).rglob("__init__.py")}
    assert set(config["packages"]) == found | set(mapped)
    assert not [p for p in config["packages"] if not p.startswith("jembench")]  # one top-level package
    assert "py.typed" in config["package-data"]["jembench"] and (REPO / "jembench" / "py.typed").is_file()


def test_the_architecture_entry_point_names_jembench_reference_models():
    """pyproject's entry point (read from the file: the installed metadata of a shared environment may be another
    checkout's; tests/test_wheel.py checks the built wheel's) resolves to the registered ``wrn`` builder."""
    import importlib

    from jembench.models import _ARCHITECTURES

    (name, target), = _pyproject()["project"]["entry-points"]["jembench.architectures"].items()
    module, _, attr = target.partition(":")
    assert (name, module) == ("wrn", "jembench.reference_models.wideresnet")
    assert getattr(importlib.import_module(module), attr) is _ARCHITECTURES["wrn"]


def test_package_data_is_found():
    protocols, published = resources.protocol_dir(), resources.published_dir()
    assert (protocols / "ood.toml").is_file() and resources.tolerances_file().is_file()
    assert len(list(published.glob("*.csv"))) >= 10
    assert protocols.resolve() == (REPO / "suites").resolve()  # in a checkout: the one copy in the repository
    assert resources.runs_dir() == REPO / "results" / "runs"
    assert resources.tolerance_files() == {"check-tolerances": protocols / "check-tolerances.toml",
                                           "check-tolerances-tiny": protocols / "check-tolerances-tiny.toml"}
    assert resources.tolerance_files()["check-tolerances"] == resources.tolerances_file()
