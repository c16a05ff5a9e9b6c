"""The typed protocol schema: every suite's protocol resolves from its TOML, bad keys / types / ranges are one-line
errors naming the key and the file, and the hash covers the resolved settings (defaults included)."""

from __future__ import annotations

import dataclasses
import re

import pytest

from jembench import schema
from jembench.errors import JembenchError
from jembench.protocols import Protocol, available_protocols, load_protocol
from jembench.sampling import SGLDConfig
from jembench.suites import SUITE_MODULES, get_suite
from test_eval_helpers import make_wrn_checkpoint, run_cli

SUITES = list(SUITE_MODULES)


def _write(tmp_path, suite: str, body: str, stem: str = "test"):
    path = tmp_path / f"{suite}-{stem}.toml"
    path.write_text(f'suite = "{suite}"\n{body}\n', encoding="utf-8")
    return path


def _one_line_error(path, match: str) -> str:
    with pytest.raises(JembenchError, match=match) as info:
        load_protocol(str(path))
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    return message


@pytest.mark.parametrize("suite", SUITES)
def test_shipped_paper_protocol_is_the_dataclass_defaults(suite):
    paper = load_protocol(suite)
    assert paper.suite == suite and paper.settings == get_suite(suite).PROTOCOL()
    assert paper.table == {"suite": suite, **schema.to_dict(get_suite(suite).PROTOCOL())}
    tiny = load_protocol(f"{suite}-tiny")
    assert isinstance(tiny.settings, get_suite(suite).PROTOCOL)


# a misspelt key of each suite, at the top level or in a sub-table
MISSPELT = {"accuracy": ("nn = 3", "nn"), "calibration": ("n_bin = 10", "n_bin"), "ood": ("n_iin = 5", "n_iin"),
            "generation": ("[sgld]\nn_step = 5", "sgld.n_step"), "robustness": ("[pgd]\nrestart = 3", "pgd.restart")}


@pytest.mark.parametrize("suite", SUITES)
def test_misspelt_key_is_one_line_naming_key_and_file(tmp_path, suite):
    body, key = MISSPELT[suite]
    message = _one_line_error(_write(tmp_path, suite, body), f"unknown key '{key}'")
    assert "(known: " in message


@pytest.mark.parametrize("suite, body, match", [
    ("accuracy", "n = -1", r"n = -1 must be in \[0, 1000000\]"),
    ("accuracy", "input_noise = -0.5", r"input_noise = -0.5 must be in \[0, 10\]"),
    ("accuracy", 'n = "all"', "n = 'all' must be an integer"),
    ("calibration", "n_bins = 2.5", "n_bins = 2.5 must be an integer"),
    ("calibration", "input_noise = true", "input_noise = True must be a number"),
    ("ood", 'scores = "log_px"', "scores = 'log_px' must be a list"),
    ("ood", "n_out = -2", r"n_out = -2 must be in \[0, 1000000\]"),
    ("ood", 'sets = ["svhn", 3]', r"sets\[1\] = 3 must be a set name"),
    ("generation", "[sgld]\nnoise = -0.01", r"sgld.noise = -0.01 must be in \[0, 1000\]"),
    ("generation", "sgld = 3", r"sgld = 3 must be a table \(\[sgld\]\)"),
    ("generation", 'init = "gauss"', "init = 'gauss' must be one of 'uniform', 'informative'"),
    ("robustness", "[refine.sgld]\nnoise = -1.0", r"refine.sgld.noise = -1.0 must be in \[0, 1000\]"),
    ("robustness", "n = 0", r"n = 0 must be in \[1, 1000000\]"),
])
def test_wrong_types_and_ranges_are_one_line_errors(tmp_path, suite, body, match):
    _one_line_error(_write(tmp_path, suite, body), match)


def test_cli_reports_a_misspelt_key_in_one_line_with_exit_2(tmp_path):
    ckpt = make_wrn_checkpoint(tmp_path / "wrn.pt", buffer_n=None)
    path = _write(tmp_path, "calibration", "n_bin = 10")
    proc = run_cli("eval", ckpt, "--suite", "calibration", "--protocol", path, "--out", tmp_path / "r.json")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown key 'n_bin'" in lines[0] and str(path) in lines[0], proc.stderr
    assert not (tmp_path / "r.json").exists()


def test_hash_covers_resolved_settings_so_a_new_default_changes_it(tmp_path, monkeypatch):
    from jembench.suites.calibration import CalibrationProtocol

    sparse = _write(tmp_path, "calibration", "")  # every field from the dataclass defaults
    spelled = _write(tmp_path, "calibration", "n = 0\nn_bins = 20\ninput_noise = 0.0", stem="spelled")
    before = load_protocol(str(sparse))
    assert before.hash == load_protocol(str(spelled)).hash == load_protocol("calibration").hash  # text != hash
    n_bins = next(f for f in dataclasses.fields(CalibrationProtocol) if f.name == "n_bins")
    monkeypatch.setattr(n_bins, "default", 15)
    after = load_protocol(str(sparse))
    assert after.settings.n_bins == 15 and after.hash != before.hash


def test_replace_and_overrides_make_a_new_named_protocol():
    from jembench.evaluation import apply_overrides

    gen = load_protocol("generation-tiny")
    changed = apply_overrides(gen, n_samples=40, steps=4, init=None)
    assert changed.name == "generation-tiny+cli" and changed.hash != gen.hash
    assert (changed.settings.n_samples, changed.settings.sgld.n_steps) == (40, 4)
    assert changed.table["sgld"]["n_steps"] == 4 and changed.settings.sgld.noise == gen.settings.sgld.noise
    assert apply_overrides(gen, n_samples=None) is gen
    assert apply_overrides(load_protocol("accuracy"), steps=4).name == "accuracy"  # not a field of accuracy
    with pytest.raises(JembenchError, match=re.escape("sgld.n_steps = -1 must be in [0, 100000]")):
        apply_overrides(gen, steps=-1)


def test_one_sgld_settings_type_everywhere():
    from jembench.reference_models.config import resolve_config

    gen = load_protocol("generation").settings.sgld
    refine = load_protocol("robustness").settings.refine
    train = resolve_config("jempp", "paper", {"dataset": "cifar10"}).sgld
    assert all(isinstance(s, SGLDConfig) for s in (gen, refine.sgld, refine.at(10), train))
    assert train == SGLDConfig(n_steps=10, step_size=1.0, noise=0.0, grad_clamp=1.0, x_clamp=True)
    assert SGLDConfig(grad_clamp=None).grad_clamp == 0.0  # the older spelling of "no clamp"


def test_protocol_listing_and_lookup_errors(tmp_path):
    names = available_protocols()
    assert "check-tolerances" not in names and {"ood", "ood-tiny", "robustness"} <= set(names)
    with pytest.raises(JembenchError, match="not found.*one of: accuracy"):
        load_protocol("check-tolerances")
    with pytest.raises(JembenchError, match="is for suite 'ood', not 'accuracy'"):
        Protocol.from_table("accuracy", {"suite": "ood"})
    path = tmp_path / "nosuite.toml"
    path.write_text("n = 3\n", encoding="utf-8")
    with pytest.raises(JembenchError, match="does not say which suite"):
        load_protocol(str(path))
