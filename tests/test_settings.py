"""One settings schema (issue 22): the CLI flags and the API keywords come from one declaration and agree; every
API argument is checked at the boundary (issue 21 item 5); a bad argument is reported before torch is imported
(issue 27 item 7); the training config's nested SGLD settings, the one preset resolver, the one partial-result
store and the torch-free robustness protocol."""

from __future__ import annotations

import argparse
import inspect
import json
import os
import subprocess
import sys
import typing
from pathlib import Path

import pytest

import jembench
from jembench import options, schema
from jembench.cli import build_parser
from jembench.errors import JembenchError
from jembench.eval_options import EvalOptions, options_from_arguments, options_from_keywords, plan
from jembench.partials import PartialStore, files
from jembench.training import config_options, run_options
from jembench.reference_models.config import LEGACY_KEYS, TrainConfig, resolve_config

REPO = Path(__file__).resolve().parent.parent
#: options of the parser that are not options of the call: the parser's own and the command's positional "what"
NOT_OPTIONS = {"help", "debug", "verbosity", "_run", "command"}


def _subparser(command: str) -> argparse.ArgumentParser:
    parser = build_parser([command])
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[command]


def _flags(command: str) -> dict[str, argparse.Action]:
    """dest -> action of every optional flag of ``jembench COMMAND``."""
    return {a.dest: a for a in _subparser(command)._actions if a.option_strings and a.dest not in NOT_OPTIONS}


def _keywords(function) -> dict[str, inspect.Parameter]:
    return dict(inspect.signature(function).parameters)


# ------------------------------------------------------------------------------------- CLI ≡ API
def test_every_eval_flag_is_an_evaluate_keyword_with_the_same_default_and_vice_versa():
    flags, keywords = _flags("eval"), _keywords(jembench.evaluate)
    cli_only = {"model", "suite"}  # the what: --model / CKPT… is evaluate's model, --suite (repeatable) its suite
    assert set(flags) - cli_only == set(keywords) - {"model", "suite"}
    for name, action in flags.items():
        if name not in cli_only:
            assert action.default == keywords[name].default, name
            assert keywords[name].kind is inspect.Parameter.KEYWORD_ONLY
    assert keywords["suite"].default == "accuracy" and _subparser("eval").parse_args(["x.pt"]).suite is None
    assert {o.name for o in options.options(EvalOptions)} == set(keywords) - {"model", "suite"}  # one declaration


def test_every_train_flag_is_a_train_keyword_with_the_same_default_and_vice_versa():
    flags, keywords = _flags("train"), _keywords(jembench.train)
    assert set(flags) == set(keywords) - {"method"}
    for name, action in flags.items():
        assert action.default == keywords[name].default, name
    assert keywords["preset"].default == "tiny" and keywords["sgld_steps"].default is None  # from the preset
    assert {"sgld_steps", "sgld_step_size", "sgld_noise", "sgld_grad_clamp", "sgld_x_clamp"} <= set(keywords)


def _sample(opt: options.Option):
    """A valid non-default value of an option, written as a command-line word list and as a Python value."""
    kind, _ = schema.optional(opt.kind)
    choices = opt.field.metadata.get("choices")
    if opt.name in ("preset",):
        return ["tiny"], "tiny"
    if opt.name == "protocol":
        return ["ood-tiny"], "ood-tiny"
    if opt.name in ("buffer", "weights", "inception_weights", "out", "data_root"):
        return ["some/file.pt"], "some/file.pt"
    if opt.name == "resume":
        return ["runs/x"], "runs/x"
    if opt.name == "ensemble":
        return [], True
    if opt.name == "device":
        return ["cuda:1"], "cuda:1"
    if kind is bool:
        return [], not opt.default if opt.default is not None else True
    if choices:
        return [str(choices[-1])], choices[-1]
    if typing.get_origin(kind) is tuple:
        if opt.field.metadata.get("length") == 2:
            return ["a.pt", "b.pt"], ["a.pt", "b.pt"]
        return ["0.25", "0.5"], [0.25, 0.5]
    if kind is int:
        return ["3"], 3
    if kind is float:
        return ["0.5"], 0.5
    return ["text"], "text"


def _cli_words(opt: options.Option, words: list[str], value) -> list[str]:
    kind, _ = schema.optional(opt.kind)
    if kind is bool:  # --x for True, --no-x for False
        return [opt.flag] if value else ["--no-" + opt.flag[2:]]
    return [opt.flag, *words]


@pytest.mark.parametrize("opt", options.options(EvalOptions), ids=lambda o: o.name)
def test_an_eval_flag_and_its_keyword_give_the_same_options(opt):
    words, value = _sample(opt)
    args = _subparser("eval").parse_args(["x.pt", *_cli_words(opt, words, value)])
    from_cli, from_api = options_from_arguments(args), options_from_keywords({opt.name: value})
    assert from_cli == from_api != EvalOptions()


@pytest.mark.parametrize("opt", run_options() + config_options(), ids=lambda o: o.name)
def test_a_train_flag_and_its_keyword_give_the_same_change(opt):
    words, value = _sample(opt)
    args = _subparser("train").parse_args(["jem", *_cli_words(opt, words, value)])
    from_cli = {o.path: getattr(args, o.name) for o in run_options() + config_options()
                if getattr(args, o.name) != o.default or o.name == opt.name}
    from_cli = {k: v for k, v in from_cli.items() if v is not None}
    from_api = options.keyword_changes({opt.name: value}, run_options() + config_options(), "jembench.train")
    assert {k: (list(v) if isinstance(v, tuple) else v) for k, v in from_cli.items()} == from_api


# ---------------------------------------------------------------------------- API boundary checks
BAD_EVALUATE = [
    ({"suite": ["accuracy"]}, r"suite=\['accuracy'\] must be one suite name"),
    ({"batch_size": "8"}, "batch_size='8' must be an integer"),
    ({"batch_size": 0}, "batch_size=0 must be >= 1"),
    ({"buffer": 3}, "buffer=3 must be a tensor"),
    ({"device": "meta"}, "device='meta' is a device without data"),
    ({"device": 0}, "device=0 must be a torch device name"),
    ({"seed": -1}, r"seed=-1 must be in \[0, 2\*\*63\)"),
    ({"seed": 1.5}, "seed=1.5 must be an integer"),
    ({"workers": 1000}, r"workers=1000 must be in \[0, 64\]"),
    ({"preset": "huge"}, "preset='huge' must be one of 'paper'"),
    ({"protocol": 3}, "protocol=3 must be a protocol name"),
    ({"informative_stats": ["mean.pt"]}, r"informative_stats=\['mean.pt'\] must be 2 values"),
    ({"bn_mode": "sideways"}, "bn_mode='sideways' must be one of 'eval', 'train'"),
    ({"ensemble": "yes"}, "ensemble='yes' must be True / False or a list"),
    ({"compile": 1}, "compile=1 must be true or false"),
    ({"out": 7}, "out=7 must be a path"),
    ({"n_samples": 0}, "n_samples=0 must be >= 1"),
    ({"batchsize": 8}, "unknown keyword 'batchsize'; did you mean batch_size"),
    ({"suite": "nosuch"}, "unknown suite 'nosuch'"),
    ({"suite": "robustness", "preset": "jempp-official"}, "suite 'robustness' has no preset 'jempp-official'"),
    ({"model": 42}, "model=42 must be a checkpoint path, a torch.nn.Module"),
    ({"model": "absent.pt"}, "checkpoint absent.pt does not exist"),
]


@pytest.mark.parametrize("kwargs, message", BAD_EVALUATE, ids=[m for _, m in BAD_EVALUATE])
def test_evaluate_checks_every_argument_at_the_boundary(tiny_jem_checkpoint, tmp_path, kwargs, message):
    kwargs = dict(kwargs)
    model = kwargs.pop("model", tiny_jem_checkpoint)
    suite = kwargs.pop("suite", "accuracy")
    with pytest.raises(JembenchError, match=message):
        jembench.evaluate(model, suite, out=tmp_path / "r.json", **kwargs) if "out" not in kwargs else \
            jembench.evaluate(model, suite, **kwargs)
    assert not (tmp_path / "r.json").exists()


def test_evaluate_takes_a_buffer_file_where_a_tensor_is_expected(tiny_jem_checkpoint, tmp_path):
    """``buffer`` (and ``--buffer``) is a tensor or the file holding one; a file without a tensor is an error."""
    import torch

    torch.save({"not": "images"}, tmp_path / "b.pt")
    with pytest.raises(JembenchError, match="holds no tensor"):
        jembench.evaluate(tiny_jem_checkpoint, "accuracy", buffer=tmp_path / "b.pt", out=tmp_path / "r.json",
                          preset="tiny")


BAD_TRAIN = [
    ({"batch_size": "8"}, "batch_size='8' must be an integer"),
    ({"method": ["jem"]}, r"unknown method \['jem'\]"),
    ({"preset": "huge"}, "preset='huge' must be one of 'tiny'"),
    ({"sgld_steps": -1}, r"sgld_steps=-1 must be in \[0, 100000\]"),
    ({"reinit_freq": 2}, r"reinit_freq=2 must be in \[0, 1\]"),
    ({"device": "meta"}, "device='meta' is a device without data"),
    ({"resume": 3}, "resume=3 must be the run folder to continue"),
    ({"resume": "no/such/run"}, "cannot resume: no/such/run/last.pt does not exist"),
    ({"lr": float("nan")}, "lr=nan must be a finite number"),
    ({"decay_epochs": 5}, "decay_epochs=5 must be a list"),
    ({"sgld_stepz": 3}, "unknown keyword 'sgld_stepz'; did you mean sgld_steps"),
    ({"sgld_bn_updates": True}, "sgld_bn_updates needs --sgld-train-mode"),
]


@pytest.mark.parametrize("kwargs, message", BAD_TRAIN, ids=[m for _, m in BAD_TRAIN])
def test_train_checks_every_argument_at_the_boundary(tmp_path, kwargs, message):
    kwargs = dict(kwargs)
    method = kwargs.pop("method", "jem")
    with pytest.raises(JembenchError, match=message):
        jembench.train(method, out=tmp_path / "run", **kwargs)
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------------------- fast feedback
FAST = [
    (["eval", "x.pt", "--suite", "nosuch"], "unknown suite 'nosuch'"),
    (["eval", "absent.pt"], "checkpoint absent.pt does not exist"),
    (["eval", "absent.pt", "--batch-size", "0"], "--batch-size 0 must be >= 1"),
    (["eval", "absent.pt", "--device", "meta"], "--device meta is a device without data"),
    (["train", "jem", "--lr", "-1"], "--lr -1.0 must be > 0"),
    (["train", "jem", "--sgld-steps", "-2"], "--sgld-steps -2 must be in [0, 100000]"),
    (["train", "jem", "--resume", "no/such/run"], "cannot resume"),
    (["train", "sada_jem", "--preset", "paper-k7"], "invalid choice: 'paper-k7'"),
    (["train", "softmax", "--preset", "paper-k5"], "method 'softmax' has no preset 'paper-k5'"),
]


@pytest.mark.parametrize("argv, message", FAST, ids=[m for _, m in FAST])
def test_bad_arguments_are_reported_before_torch_is_imported(argv, message, tmp_path):
    """The schema, the option objects and the parser are torch-free: a misspelt suite, a missing checkpoint or a
    bad value ends with exit 2 while ``torch`` is still absent from ``sys.modules`` (what makes it take well
    under a second instead of 4-60 s; ``python -m benchmarks --only startup`` measures it)."""
    code = ("import sys; from jembench.cli import main; rc = main(sys.argv[1:]); "
            "print('torch-imported' if 'torch' in sys.modules else 'torch-free', rc)")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, cwd=tmp_path,
                          env=env, timeout=120)
    assert proc.stdout.split() == ["torch-free", "2"] or (proc.returncode == 2 and not proc.stdout), proc
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_the_settings_and_the_robustness_protocol_import_no_torch():
    code = ("import sys\n"
            "import jembench.eval_options, jembench.training, jembench.options, jembench.reference_models.config\n"
            "from jembench.suites import robustness\n"
            "from jembench.protocols import load_protocol\n"
            "p = load_protocol('robustness-tiny')\n"
            "import json\n"
            "record = json.load(open('results/runs/demo/jem/robustness.json'))\n"
            "table = robustness.format_table(record)\n"
            "assert 'Clean %' in table and p.suite == 'robustness'\n"
            "print('torch' in sys.modules)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.stdout.strip() == "False", proc.stderr


# ------------------------------------------------------------------------------- the training config
def test_sgld_is_nested_and_flat_configs_of_earlier_versions_are_read():
    cfg = resolve_config("jempp", "paper-k20", {"dataset": "svhn", "sgld_noise": 0.001})
    assert (cfg.sgld.n_steps, cfg.sgld.noise, cfg.sgld.grad_clamp, cfg.sgld.x_clamp, cfg.flip) == (
        20, 0.001, 1.0, True, False)
    stored = cfg.to_dict()
    assert stored["sgld"] == cfg.sgld.to_dict() and not any(k in stored for k in LEGACY_KEYS)
    flat = {k: v for k, v in stored.items() if k != "sgld"}
    flat.update({old: stored["sgld"][new] for old, new in LEGACY_KEYS.items()})
    assert TrainConfig.from_dict(flat) == TrainConfig.from_dict(stored) == cfg
    assert cfg.replace(sgld_steps=40).sgld.n_steps == 40  # a keyword edits the nested settings


def test_one_preset_resolver_serves_every_method():
    from jembench.reference_models import available_methods, get_method, presets

    for method in available_methods():
        module = get_method(method)
        assert not hasattr(module, "preset")  # the resolver is presets.resolve, not a copy per method
        for name in module.PRESETS:
            table = presets.resolve(method, name, "cifar10")
            assert resolve_config(method, name, {"dataset": "cifar10"}) == TrainConfig.from_dict(
                {**table, "dataset": "cifar10", "method": method})
    with pytest.raises(JembenchError, match="no preset 'paper-k5'; use one of tiny, cpu, paper"):
        presets.resolve("jem", "paper-k5", "cifar10")


# -------------------------------------------------------------------------------- the record path
def test_one_rule_names_every_record():
    one = plan([], ["accuracy"], EvalOptions())
    cases = [
        ([Path("runs/a/last.pt")], ["ood"], {}, "runs/a/eval/ood.json"),
        ([Path("runs/a/last.pt")], ["ood"], {"out": Path("r.json")}, "r.json"),
        ([Path("runs/a/last.pt")], ["ood"], {"out": Path("dir")}, "dir/last-ood.json"),
        ([Path("a/x.pt"), Path("b/y.pt")], ["ood"], {"out": Path("r.json")}, "r.json/y-ood.json"),
        ([Path("a/x.pt")], ["ood", "accuracy"], {"out": Path("d")}, "d/x-accuracy.json"),
    ]
    for models, suites, changes, expected in cases:
        p = plan([], suites, EvalOptions(**changes))
        p = type(p)(tuple(models), tuple(suites), p.options)
        assert str(p.record_path(len(models) - 1, suites[-1])) == expected

    class Net:
        def forward(self, x):  # a module's name is its class's, or the name given
            return x

    p = type(one)((Net(),), ("ood",), EvalOptions())
    assert str(p.record_path(0, "ood")) == "runs/net/eval/ood.json"
    p = type(one)((Net(),), ("ood",), EvalOptions(name="mine"))
    assert str(p.record_path(0, "ood")) == "runs/mine/eval/ood.json"


# -------------------------------------------------------------------------------- the partial store
def test_partial_store_reads_only_its_own_good_units(tmp_path, capsys):
    record = tmp_path / "r[1].json"
    store = PartialStore(record, "abc", {"seed": 1}, valid=lambda unit, r: isinstance(r, dict) and "x" in r)
    store.save("k0/pgd/b0", {"x": 1})
    store.save("k0/pgd/b1", {"y": 2})  # rejected by the suite's check
    assert store.path("k0/pgd/b0").name == "r[1].partial.abc.k0_pgd_b0.json"
    other = PartialStore(record, "abc", {"seed": 2})  # another seed: never used, and said so
    assert other.load("k0/pgd/b0") is None and "ignoring" in capsys.readouterr().err
    store.path("k0/pgd/b2").write_text("{not json")
    os.mkfifo(store.path("k0/pgd/b3"))  # a FIFO in a unit's place is never opened (it would hang)
    assert store.load_all(["k0/pgd/b0", "k0/pgd/b1", "k0/pgd/b2", "k0/pgd/b3", "k0/pgd/b4"]) == {
        "k0/pgd/b0": {"x": 1}}
    err = capsys.readouterr().err
    assert "is damaged" in err and "does not hold a result" in err
    lookalike = tmp_path / "r1.partial.abc.k0_pgd_b0.json"
    lookalike.write_text("{}")
    assert [p.name for p in files(record, "abc")] == ["r[1].partial.abc.k0_pgd_b0.json",
                                                      "r[1].partial.abc.k0_pgd_b1.json",
                                                      "r[1].partial.abc.k0_pgd_b2.json"]
    assert json.loads(store.path("k0/pgd/b0").read_text())["key"] == {"protocol_hash": "abc", "seed": 1,
                                                                      "unit": "k0/pgd/b0"}
