"""The shipped ``*-official`` protocols hold the official code's settings as transcribed (once, with citations) in
tests/official_settings.py — and that transcription is what the official repositories say, checked line by line
against their mirrors when present (skipped otherwise: CI has no mirror)."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest

from jembench.protocols import load_protocol
from official_settings import OFFICIAL, Cited, value

MIRRORS = Path(os.environ.get("JEMBENCH_OFFICIAL_MIRRORS", "/work/.mirror"))


def _git_dir(repo: str) -> Path:
    return MIRRORS / repo.replace("/", "+") / "repo"


def official_line(cited: Cited) -> str:
    """Line ``cited.line`` of ``cited.path`` at ``cited.rev`` in the mirror (git show, no work tree needed)."""
    out = subprocess.run(["git", "--git-dir", str(_git_dir(cited.repo)), "show", f"{cited.rev}:{cited.path}"],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    assert cited.line <= len(out), f"{cited.where()}: the file has {len(out)} lines"
    return out[cited.line - 1]


def parsed_value(cited: Cited, line: str):
    """The value the official line sets: ``argparse`` default (via ast) or a JSON entry."""
    if cited.kind == "argparse":
        call = ast.parse(line.strip()).body[0].value
        return next(ast.literal_eval(k.value) for k in call.keywords if k.arg == "default")
    if cited.kind == "json":
        return next(iter(json.loads("{" + line.strip().rstrip(",") + "}").values()))
    raise ValueError(cited.kind)


needs_mirrors = pytest.mark.skipif(not all(_git_dir(r).is_dir() for r in {c.repo for c in OFFICIAL.values()}),
                                   reason=f"official repositories not mirrored under {MIRRORS}")


@needs_mirrors
@pytest.mark.parametrize("key", sorted(OFFICIAL))
def test_the_transcribed_official_values_are_in_the_official_code(key):
    cited = OFFICIAL[key]
    line = official_line(cited)
    assert cited.text in line, f"{cited.where()} reads {line.strip()!r}, not {cited.text!r}"
    if cited.kind != "text":
        assert parsed_value(cited, line) == cited.value, cited.where()


def test_the_official_evaluation_protocols_hold_the_official_noise_and_mode():
    """σ and batch-norm mode of every shipped accuracy / calibration / OOD official protocol. JEM++ OOD ships twice:
    as the authors ran it (scripts/all_ood.sh: σ = 0, px and py only) and with eval_jempp.py's default σ."""
    expected = {
        "accuracy-jem-official": (value("jem.eval.sigma"), "train"),  # eval_wrn_ebm.py never calls f.eval()
        "ood-jem-official": (value("jem.eval.sigma"), "train"),
        "accuracy-jempp-official": (value("jempp.eval.sigma"), value("jempp.eval.f_eval")),
        "calibration-jempp-official": (value("jempp.eval.sigma"), value("jempp.eval.f_eval")),
        "ood-jempp-official": (value("jempp.all_ood.sigma"), value("jempp.eval.f_eval")),
        "ood-jempp-official-sigma03": (value("jempp.eval.sigma"), value("jempp.eval.f_eval")),
        "accuracy-sadajem-official": (value("sadajem.eval.sigma"), value("sadajem.eval.f_eval")),
        "calibration-sadajem-official": (value("sadajem.eval.sigma"), value("sadajem.eval.f_eval")),
        "ood-sadajem-official": (value("sadajem.all_ood.sigma"), value("sadajem.eval.f_eval")),
    }
    for name, (sigma, bn_mode) in expected.items():
        cfg = load_protocol(name).settings
        assert (cfg.input_noise, cfg.bn_mode) == (sigma, bn_mode), name
        if name.startswith("ood-"):
            code = name.split("-")[1]
            assert (cfg.interp_pairs, cfg.interp_batch, cfg.interp_lambda) == (
                "consecutive-batches", 100, value(f"{code}.interp")), name
    assert value("jempp.all_ood.no_pxgrad")  # the script's pxgrad block is commented out
    assert load_protocol("ood-jempp-official").settings.scores == ("log_px", "max_py")
    assert load_protocol("ood-jempp-official-sigma03").settings.scores == ("log_px", "max_py", "grad_norm")
    assert load_protocol("ood-sadajem-official").settings.scores == ("log_px", "max_py")


def test_the_official_generation_protocols_hold_the_official_selection_splits_and_reference():
    from jembench.metrics.sample_selection import Selection

    splits_rule = 0  # isc_splits = 0 is jembench's spelling of max(1, N // 5000)
    assert value("sadajem.gen.is_splits") == value("jempp.gen.is_splits") == "max(1, N // 5000)"
    sada = load_protocol("generation-sadajem-official").settings
    assert sada.buffer_selection == Selection(rule="per_class_top", is_ratio=value("sadajem.gen.is_ratio"),
                                              fid_ratio=value("sadajem.gen.fid_ratio"), chunk=100)
    assert (sada.sources, sada.reference_split, sada.isc_splits) == (("buffer",), "train+test", splits_rule)
    sada100 = load_protocol("generation-sadajem-official-cifar100").settings
    assert sada100.reference_split == value("sadajem.gen.cifar100_reference")
    for name, reference in (("generation-jempp-official", value("jempp.gen.cifar10_reference")),
                            ("generation-jempp-official-cifar100", value("jempp.gen.cifar100_reference"))):
        jempp = load_protocol(name).settings
        assert jempp.buffer_selection == Selection(rule="per_class_top", is_ratio=value("jempp.gen.ratio_readme"),
                                                   chunk=100), name
        assert (jempp.reference_split, jempp.isc_splits) == (reference, splits_rule), name
        assert jempp.sources == ("buffer",) and not jempp.isc_shuffle, name
    assert value("jempp.gen.cifar100_train_default")


def test_the_official_robustness_protocols_hold_the_official_attack_settings():
    jem = load_protocol("robustness-jem-official").settings
    batches = value("jem.attack.readme_linf")
    assert jem.n == (batches[1] - batches[0]) * value("jem.attack.batch_size") and jem.selection == "first"
    assert jem.refine.steps == (batches[2],) and jem.refine.bpda
    assert (jem.refine.eot_attack, jem.refine.eot_defense) == (value("jem.attack.n_dup"),) * 2
    assert jem.refine.input_noise == value("jem.attack.sigma")
    assert jem.refine.at(1).noise == value("jem.attack.sgld_sigma") and jem.refine.at(1).step_size == 1.0
    assert (jem.pgd.steps, jem.pgd.restarts, jem.pgd.keep) == (value("jem.attack.iterations"),
                                                               value("jem.attack.restarts"), "last")
    l2 = load_protocol("robustness-jem-official-l2").settings
    assert l2.refine.input_noise == value("jem.attack.readme_l2_sigma") and l2.pgd.norms == ("l2",)
    sada = load_protocol("robustness-sadajem-official").settings
    assert (sada.n, sada.batch_size, sada.input_seed) == (
        value("sadajem.attack.batches") * value("sadajem.attack.batch_size"), value("sadajem.attack.batch_size"),
        value("sadajem.attack.seed"))
    assert sada.refine.steps == (value("sadajem.attack.langevin_steps"),)
    assert sada.pgd.steps == value("sadajem.attack.steps")
    assert Fraction(sada.pgd.alpha).limit_denominator(1000) == Fraction(int(value("sadajem.attack.eta255")), 255)
    assert tuple(round(e * 255) for e in sada.pgd.linf_eps) == value("sadajem.attack.eps255")


def test_the_paper_presets_choose_best_pt_and_stop_as_the_official_training_code():
    """The split and input noise that choose best.pt, and the stopping rule, of each method's paper preset are the
    official code's (transcribed with their lines above): JEM validates on its hold-out through transform_test, which
    adds --sigma (.03 in the README command); JEM++'s transform_test adds none; SADA-JEM has no hold-out and picks
    best_valid_ckpt.pt on the test loader. ``paper`` recovers from divergence, ``paper-official`` stops."""
    from jembench.reference_models.config import resolve_config

    assert value("jem.train.valid_transform") == value("jempp.train.valid_transform") == "transform_test"
    assert value("jem.train.valid_noise") == "sigma"  # transform_test's last step adds args.sigma
    expected = {
        "jem": (value("jem.train.select_split"), value("jem.train.n_valid"), value("jem.train.sigma"),
                value("jem.train.stop"), 0.0),
        "jempp": (value("jempp.train.select_split"), value("jempp.train.n_valid"), value("jempp.train.valid_noise"),
                  value("jempp.train.stop"), 0.0),
        "sada_jem": (value("sadajem.train.select_split"), value("sadajem.train.n_valid"),
                     value("sadajem.train.valid_noise"), 0.0, value("sadajem.train.stop")),
    }
    for method, want in expected.items():
        for dataset in ("cifar10", "cifar100", "svhn"):
            cfg = resolve_config(method, "paper", {"dataset": dataset})
            got = (cfg.select_best, cfg.holdout, cfg.select_noise, cfg.loss_bound, cfg.gap_bound)
            assert got == want, (method, dataset)
            assert cfg.divergence == "recover"
            official = resolve_config(method, "paper-official", {"dataset": dataset})
            assert official.divergence == "stop"


@needs_mirrors
def test_every_citation_in_the_docs_and_official_protocols_resolves(capsys):
    """tools/check_citations.py over docs/parity.md and suites/*-official*.toml: every cited file exists at the cited
    commit (history-only files pinned to theirs) and every cited line exists; no citation left unresolved."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("check_citations",
                                                  Path(__file__).resolve().parent.parent / "tools" /
                                                  "check_citations.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    assert module.main(["--mirrors", str(MIRRORS)]) == 0, capsys.readouterr().out
    assert "0 errors, 0 unresolved" in capsys.readouterr().err
