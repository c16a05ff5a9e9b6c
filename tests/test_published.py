"""The published numbers: every table row checked against the paper text, and the loader rejects bad CSVs."""

from __future__ import annotations

import math
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from jembench.errors import JembenchError
from jembench.published import COLUMNS, FLAGS, flag_list, load_published
from jembench.resources import published_dir

REPO = Path(__file__).resolve().parent.parent
PAPERS = REPO.parent / "shared" / "papers"

# How to find each table in the extracted paper text: an anchor line, whether the table lies after (+1) or
# before (-1) it, and the printed column order.
TABLES = {
    ("jem-grathwohl-2020", "Table 1"): ("Class\tModel\tAccuracy%", +1, ["Accuracy% ↑", "IS ↑", "FID ↓"]),
    ("jem-grathwohl-2020", "Table 3"): ("Table 3: OOD Detection Results", -1, ["SVHN", "Interp", "CIFAR100",
                                                                             "CelebA"]),
    ("jem-grathwohl-2020", "Table 7"): ("Table 7: OOD Detection Results", -1, ["SVHN", "Uniform", "Constant",
                                                                             "Interp", "CIFAR100", "CelebA"]),
    ("sada-jem-poster-yang-2023", "Table 1"): ("Table 1. Results on CIFAR10", +1, ["Acc % ↑", "IS ↑", "FID ↓"]),
    ("sada-jem-poster-yang-2023", "Table 2"): ("Table 2.\tResults on CIFAR100", +1, ["Acc % ↑", "IS ↑", "FID ↓"]),
    ("sada-jem-poster-yang-2023", "Table 3"): ("Table 3. OOD detection results", -1, ["SVHN", "Interp", "CIFAR100",
                                                                              "CelebA"]),
    ("sada-jem-poster-yang-2023", "Ablation"): ("Ablation\tAcc", +1, ["Acc % ↑", "FID ↓"]),
}
# row labels the CSV spells in plain text where the extraction kept LaTeX (HTML tags are stripped)
ALIASES = {"JEM p(x|y) factored": r"JEM $p(\mathbf{x} y)$ factored", "VERA (α=100)* [18]": "VERA (α =100)* [18]"}
EXPECTED_ROWS = {"jem-grathwohl-2020-table1.csv": 20, "jem-grathwohl-2020-table3.csv": 48,
                 "jem-grathwohl-2020-table7.csv": 72, "jem-grathwohl-2020-calibration.csv": 5,
                 "jem-grathwohl-2020-robustness.csv": 4, "jem-grathwohl-2020-text-hybrid.csv": 7,
                 "sada-jem-poster-yang-2023-table1.csv": 43, "sada-jem-poster-yang-2023-table2.csv": 33,
                 "sada-jem-poster-yang-2023-table3.csv": 62, "sada-jem-poster-yang-2023-ablation.csv": 13}

needs_papers = pytest.mark.skipif(not PAPERS.is_dir(), reason=f"paper texts not found at {PAPERS}")


@pytest.fixture(scope="module")
def pub() -> pd.DataFrame:
    return load_published()


def _table_block(text: str, anchor: str, direction: int) -> list[str]:
    """The contiguous tab-separated lines next to ``anchor`` (blank lines inside the table are skipped)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if anchor in line)
    block, i, gap = [], start + direction, 0
    while 0 <= i < len(lines) and gap <= 3:
        if "\t" in lines[i]:
            block.append(lines[i])
            gap = 0
        elif lines[i].strip():
            gap += 1  # a group label line such as "Other EBMs" or "Single Hy brid Model"
        else:
            gap += 0.5
        i += direction
    return block if direction > 0 else block[::-1]


def _cell(text: str) -> str:
    return re.sub(r"<[^>]+>", "", text).strip()


def test_files_columns_and_row_counts(pub):
    counts = pub.groupby("source_file").size().to_dict()
    assert counts == EXPECTED_ROWS
    assert list(pub.columns[:len(COLUMNS)]) == COLUMNS
    assert pub["value"].dtype == "float64"  # numbers, never strings
    assert set(pub["leaderboard"]) == {"hybrid", "ood", "calibration", "robustness", "ablation"}
    assert all(f in FLAGS for flags in pub["flags"] for f in flag_list(flags))


@needs_papers
@pytest.mark.parametrize("paper_table", sorted(TABLES), ids=lambda t: f"{t[0]}:{t[1]}")
def test_table_rows_match_paper_text(pub, paper_table):
    """Every number of a transcribed table equals the cell of the same printed row and column in the paper."""
    paper, table = paper_table
    anchor, direction, columns = TABLES[paper_table]
    block = _table_block((PAPERS / f"{paper}.md").read_text(encoding="utf-8"), anchor, direction)
    rows = pub[(pub["paper"] == paper) & (pub["table"] == table)].sort_values("order")
    assert len(rows) > 0
    cursor = 0
    checked = 0
    for (group, printed), cells in rows.groupby(["group", "row"], sort=False):
        label = ALIASES.get(printed, printed)
        while cursor < len(block) and label not in [_cell(c) for c in block[cursor].split("\t")]:
            cursor += 1
        assert cursor < len(block), f"{paper} {table}: row {printed!r} ({group}) not found in order in the paper"
        parts = [_cell(c) for c in block[cursor].split("\t")]
        values = [c for c in parts[parts.index(label) + 1:] if c]
        assert len(values) == len(columns), f"{printed}: {values} vs columns {columns}"
        for row in cells.itertuples():
            printed_value = values[columns.index(row.column)]
            if "printed_nan" in flag_list(row.flags):
                assert printed_value == "NaN" and math.isnan(row.value)
            else:
                assert float(printed_value) == pytest.approx(row.value), f"{printed} / {row.column}"
            checked += 1
        cursor += 1
    assert checked == len(rows)


@needs_papers
def test_text_numbers_appear_in_the_paper(pub):
    """Numbers from running text (calibration, App. F, §5) are printed in the JEM paper as we transcribed them."""
    text = (PAPERS / "jem-grathwohl-2020.md").read_text(encoding="utf-8")
    rows = pub[pub["column"].isin(["text", "L∞ ε", "L2 ε"])]
    assert len(rows) == 16
    for row in rows.itertuples():
        value = 100 - row.value if "from_error_rate" in flag_list(row.flags) else row.value
        printed = f"{value:.{row.decimals}f}"
        if row.leaderboard == "robustness":
            assert f"\\epsilon = {printed}$" in text, row.row
        else:
            assert re.search(rf"{re.escape(printed)}(%| to| on)", text), (row.row, printed)


def test_known_rows_and_flags(pub):
    """Spot checks a reviewer would do by eye, including the footnote flags."""
    def one(paper, table, row, metric):
        hit = pub[(pub["paper"] == paper) & (pub["table"] == table) & (pub["row"] == row) & (pub["metric"] == metric)]
        assert len(hit) == 1, (paper, table, row, metric)
        return hit.iloc[0]

    r = one("sada-jem-poster-yang-2023", "Table 1", "SADA-JEM (K=5)", "fid/buffer")
    assert (r.value, r.sgld_steps, r.method, r.dataset) == (9.41, 5, "sada_jem", "cifar10")
    assert one("sada-jem-poster-yang-2023", "Table 1", "Softmax", "accuracy").value == 96.2
    assert one("sada-jem-poster-yang-2023", "Table 1", "Softmax + SAM", "accuracy").value == 97.2
    assert "unstable" in one("sada-jem-poster-yang-2023", "Table 1", "JEM++ (M=5)* [48]", "accuracy")["flags"]
    assert "ran_official_code" in one("sada-jem-poster-yang-2023", "Table 2", "JEM (K=20)* [17]", "is/buffer")["flags"]
    assert one("jem-grathwohl-2020", "Table 1", "JEM (Ours)", "is/conditional").value == 8.76
    assert one("jem-grathwohl-2020", "Table 7", "JEM (Ours)", "auroc/constant/max_py").value == 0.84
    assert one("jem-grathwohl-2020", "Table 3", "JEM (Ours)", "auroc/svhn/grad_norm").value == 0.83
    assert one("jem-grathwohl-2020", "Table 1", "Glow", "fid/buffer")["flags"] == "copied_secondary"
    assert one("sada-jem-poster-yang-2023", "Table 1", "IGEBM (K=60) [10]", "is/buffer").decimals == 2  # "8.30"


def _copy(tmp_path: Path) -> Path:
    folder = tmp_path / "published"
    shutil.copytree(published_dir(), folder)
    return folder


@pytest.mark.parametrize("old,new,message", [
    ("SADA-JEM (K=5),sada_jem,cifar10,5,fid/buffer,9.41,", "SADA-JEM (K=5),sada_jem,cifar10,5,fid/buffer,9.41x,",
     "value '9.41x' is not a number"),
    ("SADA-JEM (K=5),sada_jem,cifar10,5,fid/buffer,9.41,", "SADA-JEM (K=5),sada_jem,cifar10,5,fid/buffer,9.41,typo",
     "unknown flag 'typo'"),
    ("SADA-JEM (K=5),sada_jem,cifar10,5,fid/buffer,9.41,", "SADA-JEM (K=5),sada_jem,cifar10,5,FID,9.41,",
     "metric 'FID' is not a record metric key"),
    ("SADA-JEM (K=5),sada_jem,cifar10,5,fid/buffer,9.41,", "SADA-JEM (K=5),sada_jem,cifar10,5,fid/buffer,,",
     "empty value"),
])
def test_loader_rejects_bad_rows_naming_file_and_line(tmp_path, old, new, message):
    folder = _copy(tmp_path)
    path = folder / "sada-jem-poster-yang-2023-table1.csv"
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new), encoding="utf-8")
    with pytest.raises(JembenchError, match=re.escape(message)) as err:
        load_published(folder)
    assert "sada-jem-poster-yang-2023-table1.csv:4" in str(err.value)  # header is line 1; K=5 FID is the 3rd data row


def test_loader_rejects_duplicates_and_bad_headers(tmp_path):
    folder = _copy(tmp_path)
    shutil.copy(folder / "sada-jem-poster-yang-2023-table1.csv", folder / "zz-copy.csv")
    with pytest.raises(JembenchError, match="keep one row per number"):
        load_published(folder)
    (folder / "zz-copy.csv").write_text("model,value\nx,1\n", encoding="utf-8")
    with pytest.raises(JembenchError, match="expected exactly leaderboard,paper"):
        load_published(folder)
    with pytest.raises(JembenchError, match="does not exist"):
        load_published(tmp_path / "nowhere")


def test_every_row_names_a_known_protocol_of_its_suite(pub):
    """A reproduced row names a shipped protocol file of a suite that writes its metric; an unreleased one names
    none and gives the closest in its note; a quoted one names none."""
    from jembench.published import closest_protocol, protocol_suite, shipped_protocols

    known = shipped_protocols()
    # a tolerance file is not a protocol a published number can need (check-tolerances-tiny once passed as one)
    assert {"ood-jem-official", "accuracy-tiny"} <= known and not {n for n in known if n.startswith("check-")}
    for row in pub.itertuples():
        where = (row.source_file, row.line)
        assert bool(row.protocol) == (row.provenance == "reproduced"), where
        name = row.protocol or closest_protocol(row.note)
        if row.provenance == "quoted":
            assert name is None, where  # no protocol, not even a closest one: another codebase made the number
            continue
        assert name in known, where
        board = {"hybrid": "accuracy" if row.metric == "accuracy" else "generation", "ood": "ood",
                 "calibration": "accuracy", "robustness": "robustness",
                 "ablation": "accuracy" if row.metric == "accuracy" else "generation"}[row.leaderboard]
        assert protocol_suite(name) == board, where


#: methods whose numbers another codebase produced (JEM App. B / E.1, Table 6; the SADA-JEM poster's references)
OTHER_CODEBASES = {"glow", "glow_cond", "igebm", "residual_flow", "sngan", "ncsn", "jeat", "cf_ebm", "imcd",
                   "diffurecov", "vaebm", "vera", "stylegan2_ada", "biggan"}


def test_every_row_says_where_its_number_came_from(pub):
    """provenance: reproduced (the paper's released code, transcribed by the row's protocol; produced_by = that
    repository), unreleased (the authors' unreleased code) or quoted (another codebase, named in produced_by)."""
    from jembench.published import official_code

    assert pub.groupby("provenance").size().to_dict() == {"quoted": 143, "reproduced": 144, "unreleased": 20}
    quoted = pub[pub["provenance"] == "quoted"]
    # every number of another codebase's model is quoted; the 126 that used to carry a jembench protocol
    assert set(quoted["method"]) == OTHER_CODEBASES | {"softmax"}  # + JEM's quoted ResNet-110 (74.8)
    assert set(quoted.loc[quoted["method"] == "softmax", "model"]) == {"ResNet-110"}
    assert not (pub["method"].isin(OTHER_CODEBASES) & (pub["provenance"] != "quoted")).any()
    assert (pub["produced_by"].str.strip() != "").all()
    reproduced = pub[pub["provenance"] == "reproduced"]
    assert set(reproduced["produced_by"]) == {"wgrathwohl/JEM", "sndnyang/JEMPP", "sndnyang/SADAJEM"}
    assert all(official_code(p) == b for p, b in zip(reproduced["protocol"], reproduced["produced_by"]))
    # JEM App. E.1: IGEBM's scores came from its own codebase, Glow's from y0ast/Glow-PyTorch
    assert set(pub.loc[pub["method"] == "igebm", "produced_by"]) == {"openai/ebm_code_release"}
    assert set(pub.loc[(pub["method"].isin(["glow", "glow_cond"])) & (pub["leaderboard"] == "ood"),
                       "produced_by"]) == {"y0ast/Glow-PyTorch"}


def test_one_number_has_one_provenance_and_protocol_everywhere(pub, tmp_path):
    """JEM's CIFAR-100 accuracy 72.2 (JEM §5.1, §5.2, SADA-JEM Table 2) is no protocol's: the JEM eval script builds
    only 10-class models. Every number printed in several places carries the same provenance and protocol; the
    loader rejects a folder where it does not."""
    from jembench.published import closest_protocol

    jem100 = pub[(pub["method"] == "jem") & (pub["dataset"] == "cifar100") & (pub["metric"] == "accuracy")]
    assert len(jem100) == 3 and set(jem100["value"]) == {72.2}
    assert set(jem100["provenance"]) == {"unreleased"} and set(jem100["protocol"]) == {""}
    assert {closest_protocol(n) for n in jem100["note"]} == {"accuracy-jempp-official"}
    assert all("eval_wrn_ebm.py:58" in n for n in jem100["note"])
    for _, g in pub.groupby(["method", "dataset", "metric", "value"]):
        assert len(g[["provenance", "protocol", "produced_by"]].drop_duplicates()) == 1, g[["source_file", "line"]]
    folder = _copy(tmp_path)
    path = folder / "sada-jem-poster-yang-2023-table2.csv"
    text = path.read_text(encoding="utf-8")
    row = next(line for line in text.splitlines()
               if line.startswith("hybrid,sada-jem-poster-yang-2023,Table 2,JEM (K=20)"))
    edited = row.split(",,unreleased,")[0] + ",accuracy-jem-official,reproduced,wgrathwohl/JEM,"  # note dropped
    path.write_text(text.replace(row, edited), encoding="utf-8")
    with pytest.raises(JembenchError, match=r"published number 72.2 \(jem, accuracy on cifar100\) has different "
                                            r"provenance or protocols in .*one number has one provenance"):
        load_published(folder)


def test_metrics_no_suite_writes_are_never_reproduced(pub, tmp_path):
    """JEM App. F's IGEBM crossover ε (read off Fig. 11; IGEBM with 10 refinement steps) is written by no suite,
    so no protocol reproduces it: the rows are quoted, and a reproduced one is rejected."""
    cross = pub[pub["metric"].str.startswith("crossover_eps255/")]
    assert len(cross) == 4 and set(cross["provenance"]) == {"quoted"} and set(cross["protocol"]) == {""}
    folder = _copy(tmp_path)
    path = folder / "jem-grathwohl-2020-robustness.csv"
    text = path.read_text(encoding="utf-8")
    old = ",12,,,quoted,openai/ebm_code_release,"
    assert old in text
    path.write_text(text.replace(old, ",12,,robustness-jem-official,reproduced,wgrathwohl/JEM,"), encoding="utf-8")
    with pytest.raises(JembenchError, match="no suite writes metric 'crossover_eps255/linf/k10/vs=jem', so no "
                                            "protocol reproduces it"):
        load_published(folder)


def test_cifar100_fid_rows_need_the_cifar100_train_reference_and_jempp_is_the_authors_rule(pub):
    """Every reproduced CIFAR-100 FID needs a protocol whose reference is the CIFAR-100 train split (what SADA-JEM's
    and JEM++'s code read, Task/eval_buffer.py); SADA-JEM Table 2's starred JEM++ IS / FID come from SADA-JEM's
    evaluation (JEM++'s released code computes no IS), like its starred JEM row; every official generation protocol
    splits IS as the authors' code did, max(1, N // 5000)."""
    from jembench.protocols import load_protocol

    fid100 = pub[(pub["dataset"] == "cifar100") & pub["metric"].str.startswith("fid/") & (pub["protocol"] != "")]
    assert len(fid100) == 7
    assert {load_protocol(p).settings.reference_split for p in set(fid100["protocol"])} == {"train"}
    jempp = pub[(pub["table"] == "Table 2") & (pub["method"] == "jempp") & (pub["metric"] != "accuracy")]
    assert len(jempp) == 6 and set(jempp["protocol"]) == {"generation-sadajem-official-cifar100"}
    for name in ("generation-jempp-official", "generation-jempp-official-cifar100", "generation-sadajem-official",
                 "generation-sadajem-official-cifar100"):
        assert load_protocol(name).settings.isc_splits == 0, name  # 0 = max(1, N // 5000)
    assert load_protocol("generation-jempp-official-cifar100").settings.reference_split == "train"


def test_which_protocol_reproduces_which_number(pub):
    def protocol(paper, table, row, metric):
        hit = pub[(pub["paper"] == paper) & (pub["table"] == table) & (pub["row"] == row) & (pub["metric"] == metric)]
        assert len(hit) == 1, (paper, table, row, metric)
        return hit.iloc[0]["protocol"], hit.iloc[0]["note"]

    jem, sada = "jem-grathwohl-2020", "sada-jem-poster-yang-2023"
    assert protocol(jem, "Table 1", "JEM (Ours)", "accuracy")[0] == "accuracy-jem-official"
    none, note = protocol(jem, "Table 1", "JEM (Ours)", "is/conditional")  # D&M's IS code, not released JEM code
    assert none == "" and note.endswith("closest protocol: generation")
    assert protocol(jem, "Table 3", "JEM (Ours)", "auroc/svhn/grad_norm")[0] == "ood-jem-official"
    none, note = protocol(jem, "Table 7", "JEM (Ours)", "auroc/uniform/log_px")  # no official code has Uniform
    assert none == "" and note.endswith("closest protocol: ood-jem-official")
    assert protocol(jem, "Table 7", "JEM (Ours)", "auroc/svhn/log_px")[0] == "ood-jem-official"
    assert protocol(sada, "Table 1", "SADA-JEM (K=5)", "accuracy")[0] == "accuracy-sadajem-official"
    assert protocol(sada, "Table 1", "JEM++ (M=10) [48]", "accuracy")[0] == "accuracy-jempp-official"
    assert protocol(sada, "Table 1", "SADA-JEM (K=5)", "fid/buffer")[0] == "generation-sadajem-official"
    assert protocol(sada, "Table 2", "SADA-JEM (K=5)", "fid/buffer")[0] == "generation-sadajem-official-cifar100"
    # rows SADA-JEM copied from the JEM paper keep JEM's protocols; JEM++ rows come from the JEM++ code
    assert protocol(sada, "Table 1", "JEM (K=20)* [17]", "accuracy")[0] == "accuracy-jem-official"
    assert protocol(sada, "Table 3", "JEM (K=20) [17]", "auroc/svhn/log_px")[0] == "ood-jem-official"
    assert protocol(sada, "Table 3", "JEM++ (M=20) [48]", "auroc/svhn/log_px")[0] == "ood-jempp-official"
    assert protocol(sada, "Table 1", "JEM++ (M=10) [48]", "is/buffer")[0] == "generation-jempp-official"
    assert protocol(sada, "Table 3", "SADA-JEM (K=5)", "auroc/svhn/log_px")[0] == "ood-sadajem-official"


@pytest.mark.parametrize("new,message", [
    ("generation-nonsense,reproduced,sndnyang/SADAJEM",
     "protocol 'generation-nonsense' is not a shipped protocol file"),
    ("ood,reproduced,sndnyang/SADAJEM", "protocol 'ood' is for suite 'ood', which does not write metric 'fid/buffer'"),
    (",reproduced,sndnyang/SADAJEM", "empty protocol; a reproduced row names the jembench protocol"),
    ("generation-sadajem-official,reproduced,sndnyang/JEMPP",
     "protocol 'generation-sadajem-official' transcribes sndnyang/SADAJEM, but produced_by is 'sndnyang/JEMPP'"),
    ("generation-sadajem-official,quoted,StyleGAN2-ADA", "provenance quoted and protocol 'generation-sadajem-official' "
                                                         "contradict each other"),
    ("generation-sadajem-official,borrowed,sndnyang/SADAJEM", "provenance 'borrowed' is not one of reproduced"),
    ("generation-sadajem-official,reproduced,", "empty produced_by"),
])
def test_loader_rejects_bad_protocols(tmp_path, new, message):
    folder = _copy(tmp_path)
    path = folder / "sada-jem-poster-yang-2023-table1.csv"
    old = "SADA-JEM (K=5),sada_jem,cifar10,5,fid/buffer,9.41,,generation-sadajem-official,reproduced,sndnyang/SADAJEM,"
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, old.split(",,")[0] + f",,{new},"), encoding="utf-8")
    with pytest.raises(JembenchError, match=re.escape(message)) as err:
        load_published(folder)
    assert "sada-jem-poster-yang-2023-table1.csv:4" in str(err.value)


def test_loader_rejects_an_unreleased_row_without_its_closest_protocol_and_provenance_flags(tmp_path):
    folder = _copy(tmp_path)
    path = folder / "jem-grathwohl-2020-table7.csv"
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("closest protocol: ood-jem-official", "closest: ood-jem-official", 1),
                    encoding="utf-8")
    with pytest.raises(JembenchError, match="provenance unreleased needs 'closest protocol: NAME' in the note"):
        load_published(folder)
    path.write_text(text.replace(",1.0,,,unreleased,", ",1.0,quoted,,unreleased,", 1), encoding="utf-8")
    with pytest.raises(JembenchError, match="unknown flag 'quoted'.*provenance is its own column"):
        load_published(folder)
