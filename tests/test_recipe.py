"""A checkpoint's recipe (jembench/recipe.py): the trainer writes it, records carry it, and two trainings by the same
deterministic recipe give the same file — what lets ``check`` call a baseline stale (exit 4)."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch

from conftest import _train_tiny

from jembench import recipe
from jembench.cli import main
from jembench.records import load_record, validate_record

ITERS = 6


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Two trainings with the same settings and seed, one with another seed, one on another thread count (a tiny
    training runs on one thread whatever the budget, jembench.threads; JEMBENCH_THREADS sets it)."""
    root = tmp_path_factory.mktemp("recipe")
    threads = torch.get_num_threads()
    runs = {"a": _train_tiny("jem", root / "a", max_iters=ITERS), "b": _train_tiny("jem", root / "b", max_iters=ITERS),
            "seed1": _train_tiny("jem", root / "seed1", max_iters=ITERS, seed=1)}
    torch.set_num_threads(threads + 1)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("JEMBENCH_THREADS", str(threads + 1))
        try:
            runs["threads"] = _train_tiny("jem", root / "threads", max_iters=ITERS)
            env.delenv("JEMBENCH_THREADS")
            runs["budget"] = _train_tiny("jem", root / "budget", max_iters=ITERS)  # a larger budget, unused
        finally:
            torch.set_num_threads(threads)
    return runs


def test_same_deterministic_recipe_gives_the_same_checkpoint_file(trained):
    states = {k: torch.load(p, map_location="cpu", weights_only=True) for k, p in trained.items()}  # loads safely
    assert states["budget"]["extra"]["recipe"] == states["a"]["extra"]["recipe"]  # what it ran on, not the budget
    assert sha(trained["budget"]) == sha(trained["a"])
    found = {k: s["extra"]["recipe"] for k, s in states.items()}
    assert recipe.problem(found["a"]) is None and found["a"]["deterministic"] is True
    assert found["a"] == found["b"] and sha(trained["a"]) == sha(trained["b"])  # bit for bit, the file too
    assert found["seed1"]["config"] != found["a"]["config"] and found["seed1"]["seed"] == 1
    assert found["threads"]["threads"] == found["a"]["threads"] + 1
    assert found["threads"]["config"] == found["a"]["config"]  # same settings; the recipe differs in threads only
    assert not recipe.same_deterministic(found["a"], found["threads"])
    assert found["a"]["denormals"] == "keep"  # trained with denormals kept, whatever this process flushes
    assert recipe.config_hash({**states["a"]["config"], "name": "other", "log_every": 99}) == found["a"]["config"]


def test_eval_copies_the_recipe_into_records_and_records_validate_it(trained, tmp_path):
    out = tmp_path / "acc.json"
    assert main(["eval", str(trained["a"]), "--suite", "accuracy", "--preset", "tiny", "--out", str(out),
                 "--no-progress"]) == 0
    record = load_record(out)
    state = torch.load(trained["a"], weights_only=True)
    assert record["model"]["recipe"] == state["extra"]["recipe"]
    # the weights' own digest, which the file's hash is not (the file also holds names and paths)
    assert record["model"]["weights_sha256"] == state["extra"]["weights_digests"][0] != record["model"]["sha256"]
    bad = json.loads(out.read_text())
    bad["model"]["recipe"]["threads"] = "many"
    with pytest.raises(Exception, match="recipe 'threads'"):
        validate_record(bad, "acc.json")


def test_stale_names_a_baseline_of_the_same_recipe_with_other_weights():
    base = {"deterministic": True, "config": "c" * 16, "seed": 0, "torch": "2.14.1", "cpu": "AVX2",
            "machine": "x86_64", "threads": 1, "denormals": "keep"}

    def rec(weights: str, **change) -> dict:
        return {"model": {"name": "m", "sha256": "f" * 64, "weights_sha256": weights, "recipe": {**base, **change}}}

    assert recipe.stale(rec("x"), [rec("y")]) is not None
    assert recipe.stale(rec("x"), [rec("x")]) is None  # the same weights: up to date
    assert recipe.stale(rec("x"), [rec("y", threads=2)]) is None  # another thread count: no claim
    assert recipe.stale(rec("x"), [rec("y", cpu="AVX512")]) is None  # another instruction set: no claim
    assert recipe.stale(rec("x"), [rec("y", denormals="flush")]) is None  # another process setting: no claim
    assert recipe.stale(rec("x", deterministic=False), [rec("y", deterministic=False)]) is None
    assert recipe.stale({"model": {"name": "m", "weights_sha256": "x"}}, [rec("y")]) is None  # no recipe: no claim
