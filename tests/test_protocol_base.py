"""Protocols built on another (``base = "..."``) and the demo protocol set (``--preset demo``): the demo runs the
tiny protocols, robustness with smaller budgets; a protocol equal to its base has its base's hash."""

from __future__ import annotations

import pytest

from jembench.errors import JembenchError
from jembench.protocols import load_protocol
from jembench.schema import to_dict
from jembench.suites import available_suites


@pytest.mark.parametrize("suite", ["accuracy", "calibration", "ood", "generation"])
def test_demo_protocols_are_the_tiny_ones(suite):
    demo, tiny = load_protocol(f"{suite}-demo"), load_protocol(f"{suite}-tiny")
    assert demo.name == f"{suite}-demo" and demo.table == tiny.table and demo.hash == tiny.hash


def test_every_suite_has_a_demo_protocol():
    assert all(load_protocol(f"{s}-demo").suite == s for s in available_suites())


def test_robustness_demo_differs_from_tiny_only_in_its_budgets():
    demo, tiny = to_dict(load_protocol("robustness-demo").settings), to_dict(load_protocol("robustness-tiny").settings)
    changed = {(k, sub) for k in demo for sub in (demo[k] if isinstance(demo[k], dict) else [None])
               if (demo[k].get(sub) if sub else demo[k]) != (tiny[k].get(sub) if sub else tiny[k])}
    assert changed == {("n", None), ("pgd", "steps"), ("pgd", "search_steps"), ("boundary", "steps"),
                       ("pointwise", "max_queries")}
    assert demo["n"] == 10 and demo["refine"]["steps"] == tiny["refine"]["steps"] == [0, 1, 10]  # every K


def test_base_merges_nested_tables_and_checks_the_chain(tmp_path):
    (tmp_path / "a.toml").write_text('suite = "robustness"\nbase = "robustness-tiny"\n[pgd]\nsteps = 2\n')
    (tmp_path / "b.toml").write_text('base = "a.toml"\nn = 4\n[pgd]\nrestarts = 3\n')  # suite from the chain
    b = load_protocol(tmp_path / "b.toml").settings
    assert (b.n, b.pgd.steps, b.pgd.restarts, b.pgd.norms) == (4, 2, 3, ("linf", "l2"))  # a's, b's, tiny's
    (tmp_path / "loop.toml").write_text('suite = "ood"\nbase = "loop2.toml"\n')
    (tmp_path / "loop2.toml").write_text('suite = "ood"\nbase = "loop.toml"\n')
    with pytest.raises(JembenchError, match="leads back to itself"):
        load_protocol(tmp_path / "loop.toml")
    (tmp_path / "other.toml").write_text('suite = "ood"\nbase = "accuracy-tiny"\n')
    with pytest.raises(JembenchError, match="is for suite 'ood' but its base 'accuracy-tiny' for 'accuracy'"):
        load_protocol(tmp_path / "other.toml")
    (tmp_path / "none.toml").write_text('suite = "ood"\nbase = "ood-nonexistent"\n')
    with pytest.raises(JembenchError, match="base 'ood-nonexistent' not found"):
        load_protocol(tmp_path / "none.toml")


def test_a_base_that_is_not_a_regular_file_is_named(tmp_path):
    """The base file passes the same gate as the protocol (jembench.untrusted): a FIFO is named, never opened
    (it would block), and a symlink loop is 'not found' / a cycle, not a traceback."""
    import os

    os.mkfifo(tmp_path / "fifo.toml")
    (tmp_path / "p.toml").write_text('suite = "ood"\nbase = "fifo.toml"\n')
    with pytest.raises(JembenchError, match="fifo.toml.*not a regular file"):
        load_protocol(tmp_path / "p.toml")
    os.symlink(tmp_path / "self.toml", tmp_path / "self.toml")
    (tmp_path / "q.toml").write_text('suite = "ood"\nbase = "self.toml"\n')
    with pytest.raises(JembenchError, match="self.toml"):
        load_protocol(tmp_path / "q.toml")
