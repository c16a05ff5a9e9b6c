"""The robustness suite end to end: protocol checks, record, curves, partial results + resume, torchrun, plots."""

from __future__ import annotations

import json
import math
import os
import signal
import statistics
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jembench.cli import main as cli_main
from jembench.errors import JembenchError
from jembench.protocols import Protocol, load_protocol
from jembench.records import load_record
from jembench.sampling import SGLDConfig
from jembench.suites import robustness
from jembench.suites.robustness import units as robustness_units

REPO = Path(__file__).resolve().parent.parent

# small enough for a CPU test, but every path: 2 blocks, a stochastic K (EOT + verification), both norms with
# grid + search, boundary and pointwise from top-2 starting points
PROTOCOL = """
suite = "robustness"
n = 6
input_seed = 0
batch_size = 3
[refine]
steps = [0, 1]
eot_attack = 2
eot_defense = 3
[refine.sgld]
step_size = 1.0
noise = 0.01
[pgd]
norms = ["linf", "l2"]
steps = 3
restarts = 2
step_size = 0.6
search_steps = 1
linf_eps = [0, "4/255", "16/255", "128/255"]
l2_eps = [0, 0.5, 4.0]
[boundary]
steps = 20
[pointwise]
l2_binary_search = false
[start]
pool = 60
candidates = 3
"""

# one thread per process, as torchrun gives its workers: the attacks' small batches run faster so on 2 shared
# cores, and the single-process reference does the same arithmetic as each torchrun worker
ENV = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}


def _eval_cmd(ckpt: Path, protocol: Path, out: Path) -> list[str]:
    return ["-m", "jembench", "eval", str(ckpt), "--suite", "robustness", "--protocol", str(protocol),
            "--out", str(out)]


def _comparable(record: dict) -> tuple[dict, dict]:
    return record["metrics"], record["details"]


@pytest.fixture(scope="module")
def protocol_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("protocol") / "robustness-test.toml"
    path.write_text(PROTOCOL, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def reference(tiny_softmax_checkpoint, protocol_file, tmp_path_factory):
    """One uninterrupted single-process run: (record path, record, stderr)."""
    out = tmp_path_factory.mktemp("reference") / "robustness.json"
    done = subprocess.run([sys.executable, *_eval_cmd(tiny_softmax_checkpoint, protocol_file, out)], cwd=REPO,
                          env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return out, load_record(out), done.stdout


# ----------------------------------------------------------------------------------------------- protocol
def _shipped(name: str):
    return load_protocol(REPO / "suites" / f"{name}.toml", suite="robustness").settings


def test_shipped_protocols_parse_with_the_paper_settings():
    paper = _shipped("robustness")
    assert paper == robustness.RobustnessProtocol()  # the paper file spells out the defaults
    assert (paper.n, paper.pgd.restarts, paper.pgd.steps, paper.refine.steps) == (300, 20, 100, (0, 1, 10))
    assert (paper.refine.eot_attack, paper.refine.eot_defense) == (15, 150)
    assert 8 / 255 in paper.pgd.linf_eps and 0.5 in paper.pgd.l2_eps
    assert paper.refine.at(10) == SGLDConfig(n_steps=10, step_size=1.0, noise=0.01)
    tiny = _shipped("robustness-tiny")
    assert tiny.n < paper.n and tiny.pgd.restarts < paper.pgd.restarts


def test_official_protocols_hold_foolbox_2s_search_defaults():
    """foolbox 2's ``RandomStartProjectedGradientDescentAttack.__call__`` defaults (ε₀ 0.3, stepsize 0.01,
    binary_search k = 20; L2BasicIterativeAttack: stepsize 0.05), which JEM's attack_model.py leaves untouched. The
    settings read from the official repositories (n, refinement, restarts, SADA-JEM's PGD) are compared with the
    official code's values in tests/test_official_settings.py."""
    jem, l2 = _shipped("robustness-jem-official"), _shipped("robustness-jem-official-l2")
    assert (jem.pgd.search, jem.pgd.search_steps, jem.pgd.search_start, jem.pgd.search_growth) == \
        ("foolbox2", 20, 0.3, 1.5)
    assert jem.pgd.step_size == pytest.approx(0.01 / 0.3) and l2.pgd.step_size == pytest.approx(0.05 / 0.3)
    assert jem.refine.at(1) == SGLDConfig(n_steps=1, step_size=1.0, noise=0.01)
    sada = _shipped("robustness-sadajem-official")
    assert (sada.selection, sada.pgd.search, sada.pgd.success, sada.pgd.restarts) == \
        ("sadajem-loader", "grid", "any_iterate", 1)
    assert not any(p.boundary.enabled or p.pointwise.enabled for p in (jem, l2, sada))
    cpu = _shipped("robustness-cpu")
    assert cpu.boundary.max_queries > 0 and cpu.pointwise.max_queries > 0  # a CPU unit is never unbounded


@pytest.mark.parametrize("toml, message", [
    ("[pgd]\nrestart = 3", "unknown key 'pgd.restart'"),
    ("[pgd]\nlinf_eps = [0, \"8/0\"]", "pgd.linf_eps[1]"),
    ("[pgd]\nlinf_eps = [0, -0.1]", "must be a finite number >= 0"),
    ("[pgd]\nsteps = \"100\"", "pgd.steps = '100' must be an integer"),
    ("[refine]\nsteps = []", "refine.steps must be a non-empty list"),
    ("[refine]\neot_mode = \"gradients\"", "L∞ only"),
    ("[refine.sgld]\nnoise = -0.1", "refine.sgld.noise = -0.1 must be in [0, 1000]"),
    ("[refine.sgld]\nn_steps = 3", "unknown key 'refine.sgld.n_steps'"),
    ("n = -1", "n = -1 must be in [1, 1000000]"),
    ("colour = 1", "unknown key 'colour'"),
    ("[pgd]\nenabled = false\n[boundary]\nenabled = false\n[pointwise]\nenabled = false", "every attack"),
    ("[pgd]\nsearch = \"foolbox2\"", "set pgd.success = 'any_iterate'"),
    ("[pgd]\nkeep = \"last\"", "use it with pgd.search = 'foolbox2'"),
    ("[pgd]\nstep_size = \"1/0\"", "pgd.step_size = '1/0' is not a number"),
    ("selection = \"shuffled\"", "selection = 'shuffled' must be one of"),
    ("[boundary]\nmax_queries = -1", "boundary.max_queries = -1 must be in [0, 1000000000]"),
    ("[refine]\ninput_noise = -0.1", "refine.input_noise = -0.1 must be in [0, 10]"),
])
def test_bad_protocol_fields_are_one_line_errors(toml, message):
    with pytest.raises(JembenchError, match=message.replace("(", r"\(").replace("[", r"\[")) as info:
        Protocol.from_table("robustness", __import__("tomllib").loads(toml), path="bad.toml")
    assert "\n" not in str(info.value)


def test_eps_fractions_and_metric_keys():
    assert robustness.parse_eps("8/255") == pytest.approx(8 / 255)
    assert f"{8 / 255:g}" == "0.0313725"  # the eps in metric keys (records.py: %g, [0, 1] units)


# --------------------------------------------------------------------------------------------- the record
def test_record_has_the_metric_keys_curves_and_figures(reference):
    path, record, stdout = reference
    m, d = _comparable(record)
    for k in (0, 1):
        assert f"clean_acc/k{k}" in m
        for norm, grid in (("linf", [0, 4 / 255, 16 / 255, 128 / 255]), ("l2", [0, 0.5, 4.0])):
            accs = [m[f"robust_acc/{norm}/k{k}/eps={eps:g}"] for eps in grid]
            assert accs[0] == m[f"clean_acc/k{k}"]  # ε = 0 is the clean accuracy
            assert all(a >= b for a, b in zip(accs, accs[1:]))  # never rises with ε
            assert accs[-1] < accs[0]  # and the attack does something
            assert len(d["pgd"][norm][f"k{k}"]["min_eps"]) == 6
        assert d["forward_passes"][f"pgd/linf/k{k}"] > 0 and d["forward_passes"][f"boundary/k{k}"] > 0
        for attack, field in (("boundary", "l2"), ("pointwise", "l0")):
            # the median counts the attacked inputs only (clean-correct with a start point), and says how many
            entry, clean = d[attack][f"k{k}"], d["clean"][f"k{k}"]
            attacked = [v for v, c, s in zip(entry[field], clean, entry["no_start_inputs"]) if c and not s]
            assert entry["attacked"] == len(attacked)
            median = m[f"{attack}/attacked_median_{field}/k{k}"]
            if len(attacked) >= 6:
                assert median == statistics.median([math.inf if v is None else v for v in attacked])
            else:
                assert math.isnan(median) and f"n/a ({len(attacked)} attacked)" in stdout
        assert d["sanity"]["checks"] and isinstance(d["sanity"]["failed"], list)
    # refinement costs K + 1 network passes per query
    assert d["forward_passes"]["pgd/linf/k1"] > d["forward_passes"]["pgd/linf/k0"]
    assert record["figures"] == ["robustness_pgd.png", "robustness_gradient_free.png"]
    for name in record["figures"]:
        assert (path.parent / name).stat().st_size > 1000
    assert not list(path.parent.glob("*.partial*"))  # the partial results are gone once the record is complete
    assert "| softmax" in stdout and "L∞ 16/255 %" in stdout  # the table was printed
    head = robustness.headline(record)
    assert head["Clean % K=1"] == m["clean_acc/k1"] and any("L∞" in key for key in head)


def test_interrupted_run_resumes_from_partial_results(reference, tiny_softmax_checkpoint, protocol_file, tmp_path):
    out = tmp_path / "robustness.json"
    digest = reference[1]["protocol"]["hash"]

    def saved_units() -> list[Path]:  # one file per finished unit, named by record, protocol and unit
        return sorted(tmp_path.glob(f"robustness.partial.{digest}.k*.json"))

    proc = subprocess.Popen([sys.executable, *_eval_cmd(tiny_softmax_checkpoint, protocol_file, out)], cwd=REPO,
                            env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:  # kill it (SIGKILL: no chance to clean up) once a few units are saved
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None:
            if len(saved_units()) >= 3:
                break
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    saved = saved_units()
    assert not out.exists() and len(saved) >= 3, "the run finished before it could be interrupted"
    first = json.loads(saved[0].read_text())
    assert first["key"]["protocol_hash"] == digest and saved[0].name.endswith(first["key"]["unit"].replace("/", "_")
                                                                              + ".json")
    # a unit file under this protocol's name whose key says another checkpoint must be ignored and recomputed
    foreign = saved[-1]
    foreign.write_text(json.dumps({"key": dict(json.loads(foreign.read_text())["key"], checkpoint_sha256="0" * 64),
                                   "result": {}}))
    done = subprocess.run([sys.executable, *_eval_cmd(tiny_softmax_checkpoint, protocol_file, out)], cwd=REPO,
                          env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"{len(saved) - 1} of 16 units already done" in done.stderr
    assert "ignoring" in done.stderr and str(foreign) in done.stderr
    assert _comparable(load_record(out)) == _comparable(reference[1])  # as if never interrupted
    assert not saved_units()


SMALL = """
suite = "robustness"
n = 4
batch_size = 2
[refine]
steps = [0]
eot_attack = 1
eot_defense = 1
[pgd]
norms = ["linf"]
steps = 2
restarts = 1
step_size = 0.6
search_steps = 0
linf_eps = [0, "16/255"]
[boundary]
enabled = false
[pointwise]
max_queries = 25
l2_binary_search = false
[start]
pool = 60
candidates = 3
"""


def test_partial_results_are_per_protocol_and_survive_glob_characters(tiny_softmax_checkpoint, tmp_path,
                                                                      monkeypatch, capsys):
    """A record path with glob characters (r[1].json) is only ever used by exact name, and a second protocol run
    to the same record keeps the first one's partial work (issue 15)."""
    from jembench.evaluation import evaluate

    first, second = tmp_path / "a.toml", tmp_path / "b.toml"
    first.write_text(SMALL, encoding="utf-8")
    second.write_text(SMALL.replace("n = 4", "n = 2"), encoding="utf-8")
    digest = load_protocol(first).hash
    out = tmp_path / "r[1].json"
    decoy = tmp_path / f"r1.partial.{digest}.k0_pgd-linf_b0.json"  # what glob("r[1].partial…") would match
    decoy.write_text("{}", encoding="utf-8")
    real_run_unit = robustness_units.run_unit
    calls = []

    def crash_after_two(*args, **kwargs):  # fault injection: the process dies after two units
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(1)
        return real_run_unit(*args, **kwargs)

    def partials() -> list[str]:
        return sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(f"r[1].partial.{digest}."))

    monkeypatch.setattr(robustness_units, "run_unit", crash_after_two)
    with pytest.raises(KeyboardInterrupt):
        evaluate(tiny_softmax_checkpoint, "robustness", protocol=first, out=out)
    monkeypatch.setattr(robustness_units, "run_unit", real_run_unit)
    assert partials() == [f"r[1].partial.{digest}.k0_pgd-linf_b0.json", f"r[1].partial.{digest}.k0_pgd-linf_b1.json"]
    assert not out.exists()
    evaluate(tiny_softmax_checkpoint, "robustness", protocol=second, out=out)  # another protocol, same record
    assert len(partials()) == 2 and decoy.exists()  # neither the first protocol's work nor a lookalike was touched
    capsys.readouterr()
    record = evaluate(tiny_softmax_checkpoint, "robustness", protocol=first, out=out)
    err = capsys.readouterr().err
    assert "2 of 4 units already done" in err and "ignoring" not in err  # the decoy was never read
    assert not partials() and decoy.exists()
    fresh = evaluate(tiny_softmax_checkpoint, "robustness", protocol=first, out=tmp_path / "fresh.json")
    assert _comparable(record) == _comparable(fresh)
    # the budget: pointwise stops at 25 queries per input and says so, per input
    entry = record["details"]["pointwise"]["k0"]
    attacked = [q for q in entry["queries"] if q is not None]
    assert attacked and all(q <= 25 for q in attacked)
    assert entry["budget_stopped"] == sum(s == "queries" for s in entry["stopped"]) > 0
    assert len(entry["no_start_inputs"]) == entry["n"] == 4
    assert set(record["details"]["sampling_error"]) == {k for k in record["metrics"] if "_acc/" in k}


def test_two_torchrun_processes_give_the_single_process_record(reference, tiny_softmax_checkpoint, protocol_file,
                                                                tmp_path):
    out = tmp_path / "robustness.json"
    with socket.socket() as sock:  # a free port for the rendezvous
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                           f"--master_port={port}", *_eval_cmd(tiny_softmax_checkpoint, protocol_file, out)],
                          cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "[rank 1]" in done.stderr  # both ranks did work
    assert _comparable(load_record(out)) == _comparable(reference[1])
    assert not list(tmp_path.glob("*.partial*"))


# ---------------------------------------------------------------------------------------------- plotting
def test_robustness_plot_draws_several_records_on_one_figure(reference, tmp_path, capsys):
    path, record, _ = reference
    other = tmp_path / "other.json"
    other.write_text(json.dumps(dict(record, model=dict(record["model"], name="copy"))))
    fig = tmp_path / "fig.png"
    assert cli_main(["robustness-plot", str(path), str(other), "-o", str(fig), "--labels", "softmax",
                     "JEM"]) == 0
    assert fig.stat().st_size > 1000
    accuracy = tmp_path / "accuracy.json"
    accuracy.write_text(json.dumps(dict(record, suite="accuracy")))
    assert cli_main(["robustness-plot", str(accuracy), "-o", str(tmp_path / "x.png")]) == 2
    assert "robustness records" in capsys.readouterr().err


def test_record_carries_per_input_evidence_that_reproduces_its_accuracies(reference):
    """The sidecar holds, per attacked input, the clean and robust flags behind every clean / robust accuracy and
    the minimal ε; compared with itself the record gives zero differences and McNemar p = 1."""
    from jembench import evidence
    from jembench.comparison import compare

    path, record, _ = reference
    arrays = evidence.load(record, path)
    keys = [k for k in record["metrics"] if k.startswith(("clean_acc/", "robust_acc/"))]
    assert keys and all(100 * arrays[k].mean() == pytest.approx(record["metrics"][k]) for k in keys)
    assert arrays["min_eps/linf/k0"].shape == (6,) and record["evidence"]["streams"]["attacked"]["n"] == 6
    rows = [r for r in compare(path, path).rows if r.result is not None]
    assert len(rows) == len(keys) and all(r.diff == 0 and r.result.p == 1 and r.result.paired for r in rows)


def test_grid_search_evidence_comes_from_each_eps_own_flags():
    """A grid run's robust accuracy at ε is its own run's flags (``robust_at``), not min ε: the evidence takes
    them from there, and the attacked inputs' identity from the images the suite attacks."""
    from jembench.protocols import load_protocol
    from jembench.suites.context import EvalContext
    from jembench.suites.robustness_evidence import robustness_evidence

    proto = load_protocol("robustness-tiny")
    n = proto.settings.n
    clean = [i % 2 == 0 for i in range(n)]
    at = [i % 4 == 0 for i in range(n)]
    record = {"metrics": {"clean_acc/k0": 50.0, "robust_acc/linf/k0/eps=0": 50.0, "robust_acc/linf/k0/eps=0.1": 25.0},
              "details": {"labels": [0] * n, "clean": {"k0": clean},
                          "pgd": {"linf": {"k0": {"eps": [0.0, 0.1], "min_eps": [0.0] * n, "search": "grid",
                                                  "robust_at": [at]}}}}}
    ev = robustness_evidence(record, proto, EvalContext(dataset="digits"))
    assert ev.arrays["robust_acc/linf/k0/eps=0.1"].tolist() == at  # not min_eps > 0.1 (all False)
    assert ev.arrays["robust_acc/linf/k0/eps=0"].tolist() == clean
    assert ev.streams["attacked"]["n"] == n and len(ev.streams["attacked"]["inputs_sha256"]) == 64
