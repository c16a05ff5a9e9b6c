"""Committed baselines are what today's code produces (issue 27 item 1: "committed baselines go stale").

* ``results/runs/demo/<method>`` (``make results``) and the seed baseline ``results/runs/demo-seeds/jem/seed-N``
  (``make baseline-seeds``) were evaluated from checkpoints that are not committed, but each record names its
  weights (``model.weights_sha256``) and the deterministic recipe that trained them (``model.recipe``,
  :mod:`jembench.recipe`: settings and seed, torch, CPU instruction set, thread count, denormals). Training on a CPU
  is deterministic, so the same recipe here must give the same weights, bit for bit. The session's
  ``demo_jem_checkpoint`` (the demo's JEM: the whole tiny preset, seed 0, one thread) is that training, so the JEM
  records of both baselines are checked against it at no extra training time; ``test-slow`` trains the demo's other
  four methods again. Settings that changed since a record was made (the recipe's ``config`` hash) are a stale
  baseline, on any machine; another torch, CPU instruction set or thread count claims nothing (skipped, saying
  which) — on this kind of machine (2-core x86-64, AVX-512, torch 2.14.1, as CI) they run.
* ``results/runs/cifar10-cpu/<method>``: the checkpoints themselves are committed (``last.pt``), so every record of
  them must name that file (``model.sha256``); ``make test-real`` (tests/test_real_data.py) evaluates them again on
  the shared CIFAR-10 copy and requires the committed numbers.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from conftest import REPO, _train_tiny

from jembench import recipe
from jembench.commands.demo import METHODS
from jembench.records import RecordRef, load_records

DEMO = REPO / "results" / "runs" / "demo"
SEED0 = REPO / "results" / "runs" / "demo-seeds" / "jem" / "seed-0"
CPU_RUNS = REPO / "results" / "runs" / "cifar10-cpu"
CPU_CI_RUNS = REPO / "results" / "runs" / "cifar10-cpu-ci"
#: recipe fields no test can set: a record trained with others was trained on another platform
PLATFORM = ("torch", "cpu", "machine")


def _records(folder: Path) -> list[RecordRef]:
    refs = load_records([folder])
    assert refs, f"{folder} holds no records"
    return refs


def _trained(checkpoint: Path) -> tuple[dict, str]:
    """The recipe a checkpoint was trained by and the digest of its weights."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    return state["extra"]["recipe"], recipe.weights_digest(state["model_state"])


def assert_fresh(refs: list[RecordRef], mine: dict, weights: str, fix: str) -> None:
    """Every record names the weights that the recipe ``mine`` trained now (``weights``), unless its recipe was
    another platform's or thread count's (skip); a record without a recipe, or made with other settings, fails
    naming ``fix``."""
    for ref in refs:
        model = ref.record["model"]
        theirs = model.get("recipe")
        assert theirs is not None and "weights_sha256" in model, (
            f"{ref.path} names no training recipe or weights digest (made by code older than jembench/recipe.py): "
            f"nothing says whether today's code trains its model; regenerate it: {fix}")
        assert recipe.problem(theirs) is None, f"{ref.path}: {recipe.problem(theirs)}; regenerate it: {fix}"
        assert (theirs["config"], theirs["seed"]) == (mine["config"], mine["seed"]), (
            f"{ref.path} was trained with other settings (recipe config {theirs['config']}, seed {theirs['seed']}) "
            f"than today's code uses for it (config {mine['config']}, seed {mine['seed']}): a preset or training "
            f"default changed since the committed baseline was made, so it is stale; regenerate it: {fix}")
        other = [k for k in (*PLATFORM, "threads", "denormals", "deterministic") if theirs[k] != mine[k]]
        if other:
            pytest.skip(f"{ref.path} was trained by {recipe.describe(theirs)}; this run by {recipe.describe(mine)} "
                        f"(differs in {', '.join(other)}): the same weights are not expected, nothing is claimed")
        assert model["weights_sha256"] == weights, (
            f"{ref.path}: weights {model['weights_sha256'][:12]} are not what today's code trains by the same "
            f"deterministic recipe ({recipe.describe(mine)}): {weights[:12]} — the training code changed since the "
            f"committed baseline was made, so it is stale; regenerate it: {fix}")


@pytest.fixture(scope="module")
def demo_jem(demo_jem_checkpoint) -> tuple[dict, str]:
    return _trained(demo_jem_checkpoint)


def test_the_demo_jem_records_name_the_weights_todays_code_trains(demo_jem):
    assert_fresh(_records(DEMO / "jem"), *demo_jem, fix="make results")


def test_the_seed_baselines_seed_0_names_the_weights_todays_code_trains(demo_jem):
    refs = _records(SEED0)
    assert {r.record["model"]["recipe"]["seed"] for r in refs} == {0}
    assert_fresh(refs, *demo_jem, fix="make baseline-seeds (python -m benchmarks.seed_baseline --seeds 0 --force)")


def test_the_check_fails_when_a_committed_baseline_is_stale(demo_jem):
    """The premise of the two tests above: other weights under the same recipe, another config, or a record
    without a recipe fail with the fix named; another thread count is a skip, not a pass."""
    mine, weights = demo_jem
    ref = _records(DEMO / "jem")[0]
    model = ref.record["model"]
    same = RecordRef(ref.path, {**ref.record, "model": {**model, "recipe": dict(mine), "weights_sha256": weights}})
    assert_fresh([same], mine, weights, "make results")
    with pytest.raises(AssertionError, match="are not what today's code trains.*make results"):
        assert_fresh([same], mine, "0" * 64, "make results")
    with pytest.raises(AssertionError, match="other settings.*stale.*make results"):
        assert_fresh([same], {**mine, "config": "0" * 16}, weights, "make results")
    bare = RecordRef(ref.path, {**ref.record, "model": {k: v for k, v in model.items() if k != "recipe"}})
    with pytest.raises(AssertionError, match="names no training recipe.*make results"):
        assert_fresh([bare], mine, weights, "make results")
    with pytest.raises(pytest.skip.Exception, match="differs in threads"):
        assert_fresh([same], {**mine, "threads": mine["threads"] + 1}, weights, "make results")


@pytest.mark.slow
@pytest.mark.parametrize("method", [m for m in METHODS if m != "jem"])
def test_the_demo_records_of_every_method_name_the_weights_todays_code_trains(method, tmp_path):
    """The demo's other methods trained again as ``jembench demo`` trains them (tiny preset, seed 0), on the
    thread count their records name (a minute or two each)."""
    refs = _records(DEMO / method)
    theirs = refs[0].record["model"].get("recipe") or {}
    threads = torch.get_num_threads()
    torch.set_num_threads(int(theirs.get("threads", threads)))
    try:
        checkpoint = _train_tiny(method, tmp_path / method)
    finally:
        torch.set_num_threads(threads)
    assert_fresh(refs, *_trained(checkpoint), fix="make results")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("method", sorted(p.name for p in CPU_RUNS.iterdir() if (p / "last.pt").is_file()))
def test_the_cifar10_records_name_the_committed_checkpoint(method):
    """A checkpoint exported again (or edited) without evaluating it again leaves records of another file."""
    sha = _sha256(CPU_RUNS / method / "last.pt")
    refs = load_records([CPU_RUNS / method]) + load_records([CPU_CI_RUNS / method])
    assert len(refs) >= 6  # accuracy, calibration, ood, generation, robustness + the ood-ci record
    for ref in refs:
        assert ref.record["model"]["sha256"] == sha, (
            f"{ref.path} was evaluated from checkpoint {ref.record['model']['sha256'][:12]}, not the committed "
            f"{CPU_RUNS / method / 'last.pt'} ({sha[:12]}): evaluate it again (make reference-eval)")
