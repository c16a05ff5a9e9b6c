"""`jembench leaderboard`: paper-shaped tables, published and our rows side by side only under the protocol the
published numbers need, protocols never mixed."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

from test_eval_helpers import published_needing
from test_eval_helpers import write_record_json as write

import pandas as pd
import pytest

from jembench import leaderboard as lb
from jembench.errors import JembenchError
from jembench.records import load_records
from jembench.protocols import load_protocol
from jembench.published import load_published
from jembench.records import make_record
from jembench.render import render
from jembench.sampling_error import auroc_standard_error as hanley_mcneil_se

REPO = Path(__file__).resolve().parent.parent
SADA_T1 = "SADA-JEM (Yang et al., CVPR 2023), Table 1 · CIFAR-10"

ACC = load_protocol("accuracy")  # the real protocol file in suites/ (SADA-JEM's accuracies need it)
# the same suite with another setting (500 test images): a different protocol hash
ACC_TINY = ACC.replace({"n": 500}, name="accuracy-n500")
GEN = load_protocol("generation")  # shipped, but not the protocol SADA-JEM's IS / FID need
OOD = load_protocol("ood")
MODEL = {"name": "sada-c10", "method": "sada_jem", "dataset": "cifar10"}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """Records of one CIFAR-10 model: two seeds under the paper protocol, one under the tiny protocol,
    generation and OOD; plus a digits model and a training config.json that is not a record."""
    d = tmp_path_factory.mktemp("runs")
    write(d / "sada", "acc-s0.json", make_record(suite="accuracy", model=MODEL, dataset="cifar10", protocol=ACC,
                                                 metrics={"accuracy": 95.0, "nll": 0.2, "n": 10000}, seed=0))
    write(d / "sada", "acc-s1.json", make_record(suite="accuracy", model=MODEL, dataset="cifar10", protocol=ACC,
                                                 metrics={"accuracy": 95.4, "nll": 0.2, "n": 10000}, seed=1))
    write(d / "sada", "acc-tiny.json", make_record(suite="accuracy", model=MODEL, dataset="cifar10",
                                                   protocol=ACC_TINY, metrics={"accuracy": 90.0, "n": 500}))
    write(d / "sada", "gen.json", make_record(suite="generation", model=MODEL, dataset="cifar10", protocol=GEN,
                                              metrics={"is/buffer": 8.5, "fid/buffer": 10.25}))
    write(d / "sada", "ood.json", make_record(suite="ood", model=MODEL, dataset="cifar10", protocol=OOD,
                                              metrics={"auroc/svhn/log_px": 0.99, "auroc/uniform/log_px": 1.0},
                                              details={"n_in": 10000, "sets": {"svhn": {"n": 26032},
                                                                               "uniform": {"n": 10000}}}))
    write(d / "digits", "acc.json", make_record(suite="accuracy", model={"name": "jem-digits", "method": "jem",
                                                                         "dataset": "digits"},
                                                dataset="digits", protocol=ACC_TINY, metrics={"accuracy": 91.0}))
    (d / "sada" / "config.json").write_text('{"lr": 0.1}', encoding="utf-8")
    return d


def run_many(*commands: list[str]) -> list[subprocess.CompletedProcess]:
    """Run several ``python -m jembench ...`` commands concurrently (each pays the CLI's import time once)."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    procs = [subprocess.Popen([sys.executable, "-m", "jembench", *c], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, cwd=REPO, env=env) for c in commands]
    out = []
    for cmd, p in zip(commands, procs):
        stdout, stderr = p.communicate(timeout=300)
        out.append(subprocess.CompletedProcess(cmd, p.returncode, stdout, stderr))
    return out


def md_row(text: str, model: str, section: str | None = None) -> list[str]:
    """The cells of the first Markdown table row whose model cell is ``model`` (inside ``section`` if given)."""
    if section is not None:
        text = text[text.index(section):]
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and model in cells:
            return cells
    raise AssertionError(f"no row {model!r} in\n{text[:3000]}")


@pytest.fixture(scope="module")
def cli_results(run_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    # SADA-JEM's accuracies need accuracy-sadajem-official; this copy of the published numbers needs the shipped
    # `accuracy` instead, which the records below were measured under
    pub = str(published_needing(out, {"accuracy-sadajem-official": "accuracy"}))
    results = run_many(
        ["leaderboard", str(run_dir), "--table", "hybrid", "--published", pub],
        ["leaderboard", str(run_dir), "--table", "hybrid", "--format", "latex", "--out", str(out / "hybrid.tex"),
         "--published", pub],
    )
    return dict(zip(["md", "latex"], results)), out


def test_cli_hybrid_prints_sada_table1_rows_plus_ours(cli_results):
    res = cli_results[0]["md"]
    assert res.returncode == 0, res.stderr
    text = res.stdout
    assert SADA_T1 in text
    section = text[text.index(SADA_T1):]
    section = section[:section.index("###")] if "###" in section else section
    # every SADA-JEM Table 1 row, in the paper's order
    # (◇ quoted from another codebase, ⁿ unreleased code: JEM's IS / FID)
    order = ["SADA-JEM (K=5)", "SADA-JEM (K=10)", "SADA-JEM (K=20)", "IGEBM (K=60)◇", "JEM (K=20)†ⁿ", "JEM++ (M=5)†",
             "JEM++ (M=10)", "JEM++ (M=20)", "JEAT◇", "CF-EBM (K=50)◇", "ImCD (K=40)◇", "DiffuRecov (K=30)◇",
             "VAEBM (K=6)◇", "VERA◇", "Softmax", "Softmax + SAM", "SNGAN◇", "StyleGAN2-ADA◇"]
    positions = [section.index(f"| {name} ") for name in order]
    assert positions == sorted(positions)
    assert md_row(section, "SADA-JEM (K=5)")[2:5] == ["95.5", "8.77", "9.41"]
    assert md_row(section, "Softmax + SAM")[2] == "**97.2**"  # best accuracy in bold, as in the paper
    assert md_row(section, "StyleGAN2-ADA◇")[4] == "**2.92**"  # FID: lower is better
    assert md_row(section, "JEM (K=20)†ⁿ")[3] == "8.76°"  # conditional-ensemble IS is marked
    # quoted rows say so and name the codebase; unreleased ones the closest protocol
    assert md_row(section, "IGEBM (K=60)◇")[5] == ("SADA-JEM'23 Table 1 · protocol none (quoted from "
                                                   "openai/ebm_code_release)")
    assert md_row(section, "JEM (K=20)†ⁿ")[5] == ("SADA-JEM'23 Table 1 · protocol Acc %: accuracy-jem-official; IS, "
                                                  "FID: none (closest generation)")
    assert "◇ quoted: produced by another codebase (named in the source); no jembench protocol reproduces it" in section
    # each published row says which protocol its numbers need
    assert md_row(section, "SADA-JEM (K=5)")[5] == ("SADA-JEM'23 Table 1 · protocol Acc %: accuracy; IS, FID: "
                                                    "generation-sadajem-official")
    assert md_row(section, "Softmax + SAM")[5] == "SADA-JEM'23 Table 1 · protocol accuracy"
    # our rows only where the record's protocol is the one the column needs (SADA-JEM's accuracy: `accuracy`);
    # the two seeds under one protocol are averaged
    ours = [line for line in section.splitlines() if line.startswith("|") and "(ours)" in line]
    assert len(ours) == 1 and ours[0].startswith("| jembench ")  # our row group, after the paper's groups
    cells = md_row(section, "*sada-c10 (ours)*")
    # mean ± standard deviation of the two records (their t-interval is in a note under the table)
    assert cells[2:5] == ["95.20 ± 0.28", "-", "-"]
    assert cells[5] == f"ours: accuracy@{ACC.hash[:8]} (n = 10000; mean of 2)"  # the sizes behind the errors
    assert (f"sada-c10 (ours): IS ↑, FID ↓ measured under generation@{GEN.hash[:8]}; this table needs "
            f"generation-jempp-official, generation-sadajem-official — shown") in section
    assert "90.00" not in section  # accuracy-n500 is not the protocol SADA-JEM's accuracies need
    assert "† training unstable and regularly diverged" in section
    # the rest: sections of their own, titled with the protocol they were measured under
    gen = text[text.index(f"jembench runs · CIFAR-10 · protocol generation@{GEN.hash[:8]}"):]
    assert md_row(gen, "*sada-c10 (ours)*")[1:3] == ["8.50", "10.25"]
    tiny = text[text.index(f"jembench runs · CIFAR-10 · protocol accuracy-n500@{ACC_TINY.hash[:8]}"):]
    assert md_row(tiny, "*sada-c10 (ours)*")[1] == "90.00 ± 1.34"  # Wilson s.e. of 90 % of n = 500
    assert "jem-digits (ours)" in text  # digits has no published table: an ours-only section


def test_cli_latex_out_file_and_known_row(cli_results):
    res, out = cli_results[0]["latex"], cli_results[1]
    assert res.returncode == 0, res.stderr
    tex = (out / "hybrid.tex").read_text(encoding="utf-8")
    assert not list(out.glob(".hybrid.tex.*"))  # atomic write left no temp file
    assert r"\begin{tabular}" in tex and r"Acc \% $\uparrow$" in tex and r"FID $\downarrow$" in tex
    line = next(line for line in tex.splitlines() if "SADA-JEM (K=5)" in line)
    assert [c.strip() for c in line.rstrip("\\ ").split("&")][1:5] == ["SADA-JEM (K=5)", "95.5", "8.77",
                                                                     r"\underline{9.41}"]  # 2nd-best FID
    assert r"\textbf{97.2}" in tex and r"JEM (K=20)$^\dagger$" in tex
    assert r"sada-c10 (ours)" in tex


def test_malformed_record_is_exit_2_naming_it(tmp_path, capsys):
    from jembench.cli import main

    bad = write(tmp_path, "bad.json", {"schema": "jembench-record/1", "suite": "accuracy", "model": MODEL,
                                       "dataset": "cifar10", "protocol": {"hash": "x"}, "metrics": {"accuracy": "95"}})
    assert main(["leaderboard", str(bad), "--table", "hybrid"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "bad.json" in lines[0] and "not a number" in lines[0]
    assert main(["leaderboard", "--no-records", "--out", str(tmp_path)]) == 2  # a folder is not a file
    assert "is a folder" in capsys.readouterr().err


def test_csv_has_numbers_and_dataset_filter(capsys):
    from jembench.cli import main

    assert main(["leaderboard", "--no-records", "--table", "hybrid", "--format", "csv", "--dataset", "cifar100"]) == 0
    df = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert set(df["dataset"]) == {"cifar100"}
    row = df[df["model"] == "SADA-JEM (K=20)"].iloc[0]
    assert (row["accuracy"], row["is"], row["fid"]) == (77.3, 10.78, 19.9)
    assert df["accuracy"].dtype == "float64"


def test_protocol_mismatch_is_never_merged(tmp_path):
    """Same model, same suite, two protocols: two rows and a note; same protocol: one averaged row."""
    write(tmp_path, "a.json", make_record(suite="accuracy", model=MODEL, dataset="cifar10", protocol=ACC,
                                          metrics={"accuracy": 80.0}))
    write(tmp_path, "b.json", make_record(suite="accuracy", model=MODEL, dataset="cifar10", protocol=ACC_TINY,
                                          metrics={"accuracy": 60.0}))
    sections = lb.build("hybrid", None, load_records([tmp_path]))
    assert len(sections) == 2  # one section per protocol, each titled with it
    assert [s.title.rsplit("· ", 1)[1] for s in sections] == [f"protocol accuracy-n500@{ACC_TINY.hash[:8]}",
                                                               f"protocol accuracy@{ACC.hash[:8]}"]
    assert [[r.cells["accuracy"].value for r in s.rows] for s in sections] == [[60.0], [80.0]]  # not 70.0
    assert all(any("2 different protocols" in n and "not averaged" in n for n in s.notes) for s in sections)
    md = render(sections, "md")
    assert "**80.00**" not in md  # no best-value emphasis across different protocols
    write(tmp_path, "c.json", make_record(suite="accuracy", model=MODEL, dataset="cifar10", protocol=ACC_TINY,
                                          metrics={"accuracy": 62.0}))
    rows = [r for s in lb.build("hybrid", None, load_records([tmp_path])) for r in s.rows]
    assert sorted(r.cells["accuracy"].value for r in rows) == [61.0, 80.0]  # same hash: averaged


def test_our_rows_join_a_published_table_only_under_its_protocol(tmp_path):
    """Name and packaged-file hash must both match: a record under SADA-JEM's generation protocol sits in its
    Table 1; one under an edited copy of that protocol file (same name, other hash) does not."""
    pub = load_published(published_needing(tmp_path))
    runs = tmp_path / "runs"
    write(runs, "acc.json", make_record(suite="accuracy", model=MODEL, dataset="cifar10", protocol=ACC,
                                        metrics={"accuracy": 95.0}))
    write(runs, "gen.json", make_record(suite="generation", model=MODEL, dataset="cifar10", protocol=GEN,
                                        metrics={"is/buffer": 8.5, "fid/buffer": 10.25}))
    edited = GEN.replace({"n_samples": 123}, name="generation")  # same name, not the packaged file
    other = {**MODEL, "name": "edited"}
    write(runs, "edited.json", make_record(suite="generation", model=other, dataset="cifar10", protocol=edited,
                                           metrics={"is/buffer": 9.9, "fid/buffer": 1.0}))
    sections = lb.build("hybrid", pub, load_records([runs]), paper="sada-jem-poster-yang-2023", dataset="cifar10")
    table1 = next(s for s in sections if s.table == "Table 1")
    ours = [r for r in table1.rows if r.ours]
    assert [r.model for r in ours] == ["sada-c10 (ours)"]
    assert {k: c.value for k, c in ours[0].cells.items()} == {"accuracy": 95.0, "is": 8.5, "fid": 10.25}
    assert any(n.startswith("edited (ours): IS ↑, FID ↓ measured under generation@") for n in table1.notes)
    runs_only = [s for s in sections if s.paper is None]
    assert len(runs_only) == 1 and runs_only[0].title.endswith(f"protocol generation@{edited.hash[:8]}")
    assert [r.model for r in runs_only[0].rows] == ["edited (ours)"]


def test_ood_rows_land_in_their_score_block_and_md_latex_html_agree(run_dir, tmp_path):
    assert not any(s.paper and any(r.ours for r in s.rows)  # the shipped rows need ood-sadajem-official
                   for s in lb.build("ood", load_published(), load_records([run_dir])))
    pub = load_published(published_needing(tmp_path))
    sections = lb.build("ood", pub, load_records([run_dir]), paper="sada-jem-poster-yang-2023")
    assert len(sections) == 2  # SADA-JEM Table 3, and our Uniform numbers (not in that table) on their own
    s = sections[0]
    assert [c.key for c in s.columns] == ["svhn", "interp", "cifar100", "celeba"]
    assert [c.key for c in sections[1].columns] == ["uniform"] and sections[1].paper is None
    log_block = [r.model for r in s.rows if r.block == "log_px"]
    assert log_block[-1] == "sada-c10 (ours)" and log_block[0] == "WideResNet"
    md = render(sections, "md")
    # ours beats 0.98 on SVHN, significantly at its sizes (Hanley-McNeil, 10000 vs 26032 images): bold, ± its s.e.
    se = hanley_mcneil_se(0.99, 10000, 26032)
    cells = md_row(md, "sada-c10 (ours)".join("**"))
    assert cells[2] == f"**0.990 ± {se:.3f}**"
    assert cells[6] == f"ours: ood@{OOD.hash[:8]} (n_in = 10000, n_out = 10000–26032)"  # the record's sizes
    assert md_row(md, "SADA-JEM (K=20)")[2:6] == ["0.98", "0.83", "**0.92**", "**0.95**"]
    tex = render(sections, "latex")
    assert r"$\log p(\mathbf{x})$" in tex and r"\underline{0.98}" in tex
    page = render(sections, "html")
    assert page.startswith("<!DOCTYPE html>") and '<span class="ours">sada-c10 (ours)</span>' in page
    assert f"<strong>0.990 ± {se:.3f}</strong>" in page


def test_load_records_skips_non_records_but_rejects_broken_json(run_dir, tmp_path):
    refs = load_records([run_dir])
    assert len(refs) == 6 and all(r.path.name != "config.json" for r in refs)
    (tmp_path / "broken.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(JembenchError, match="broken.json is not valid JSON"):
        load_records([tmp_path])
    with pytest.raises(JembenchError, match="does not exist"):
        load_records([tmp_path / "missing"])


def test_robustness_table_names_the_protocol_of_each_published_row(tmp_path):
    """JEM App. F's IGEBM crossovers are quoted (IGEBM's codebase; no suite writes a crossover ε); our PGD curves
    (no crossover numbers) get their own section per norm, titled with the protocol they were measured under."""
    rob = load_protocol("robustness")
    write(tmp_path, "rob.json", make_record(suite="robustness", model=MODEL, dataset="cifar10", protocol=rob,
                                            metrics={"clean_acc/k0": 95.0, "robust_acc/linf/k0/eps=0.0313725": 40.0}))
    sections = lb.build("robustness", load_published(), load_records([tmp_path]))
    crossover = sections[0]
    assert crossover.paper == "jem-grathwohl-2020" and not any(r.ours for r in crossover.rows)
    assert {r.source for r in crossover.rows} == {"JEM'20 App. F · protocol none (quoted from openai/ebm_code_release)"}
    assert all(r.flags == ["quoted"] for r in crossover.rows)
    ours = [s for s in sections if s.paper is None]
    assert len(ours) == 1
    assert ours[0].title.endswith(f"L∞ PGD, robust accuracy % · protocol robustness@{rob.hash[:8]}")
    assert {k: c.value for k, c in ours[0].rows[0].cells.items()} == {"clean": 95.0, "eps=0.0313725": 40.0}
