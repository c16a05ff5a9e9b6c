"""What a wheel ships: every package and the package data (protocols, tolerances, published numbers)."""

from __future__ import annotations

import tomllib

from jembench import resources
from test_eval_helpers import REPO


def test_every_package_and_the_data_folders_are_listed_in_pyproject():
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    found = {".".join(p.parent.relative_to(REPO).parts) for top in ("jembench", "reference_models")
             for p in (REPO / top).rglob("__init__.py")}
    mapped = config["package-dir"]
    assert mapped == {"jembench.resources.protocols": "suites", "jembench.resources.published": "results/published"}
    assert set(config["packages"]) == found | set(mapped)
    assert "py.typed" in config["package-data"]["jembench"] and (REPO / "jembench" / "py.typed").is_file()


def test_package_data_is_found():
    protocols, published = resources.protocol_dir(), resources.published_dir()
    assert (protocols / "ood.toml").is_file() and resources.tolerances_file().is_file()
    assert len(list(published.glob("*.csv"))) >= 10
    assert protocols.resolve() == (REPO / "suites").resolve()  # in a checkout: the one copy in the repository
    assert resources.runs_dir() == REPO / "results" / "runs"
