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
    """A protocol per row: a shipped protocol file or one still being written on another branch (pending), of a
    suite that writes the row's metric; or none, flagged, with the closest protocol in the note."""
    from jembench.published import PENDING_PROTOCOLS, closest_protocol, known_protocols, protocol_suite

    known = known_protocols()
    for row in pub.itertuples():
        name = row.protocol or closest_protocol(row.note)
        assert name in known, (row.source_file, row.line, row.protocol)
        assert bool(row.protocol) != ("no_official_protocol" in flag_list(row.flags)), (row.source_file, row.line)
        suite = protocol_suite(name)
        assert suite == {"hybrid": "accuracy" if row.metric == "accuracy" else "generation", "ood": "ood",
                         "calibration": "calibration", "robustness": "robustness",
                         "ablation": "accuracy" if row.metric == "accuracy" else "generation"}[row.leaderboard]
    assert PENDING_PROTOCOLS <= set(pub["protocol"]) | {closest_protocol(n) for n in pub["note"]}


def test_pending_protocols_are_not_shipped_yet():
    """Fails once a pending protocol file ships: then remove it from published.PENDING_PROTOCOLS, so that every
    name the published rows need is checked against a real file."""
    from jembench.published import PENDING_PROTOCOLS, shipped_protocols

    assert not PENDING_PROTOCOLS & shipped_protocols(), "remove the shipped names from PENDING_PROTOCOLS"
    # a tolerance file is not a protocol a published number can need (check-tolerances-tiny once passed as one)
    assert {"ood-jem-official", "accuracy-tiny"} <= shipped_protocols()
    assert not {n for n in shipped_protocols() if n.startswith("check-tolerances")}


def test_which_protocol_reproduces_which_number(pub):
    def protocol(paper, table, row, metric):
        hit = pub[(pub["paper"] == paper) & (pub["table"] == table) & (pub["row"] == row) & (pub["metric"] == metric)]
        assert len(hit) == 1, (paper, table, row, metric)
        return hit.iloc[0]["protocol"], hit.iloc[0]["note"]

    jem, sada = "jem-grathwohl-2020", "sada-jem-poster-yang-2023"
    assert protocol(jem, "Table 1", "JEM (Ours)", "accuracy")[0] == "accuracy-jem-official"
    assert protocol(jem, "Table 1", "JEM (Ours)", "is/conditional")[0] == "generation-jem-paper"
    assert protocol(jem, "Table 3", "JEM (Ours)", "auroc/svhn/grad_norm")[0] == "ood-jem-official"
    none, note = protocol(jem, "Table 7", "JEM (Ours)", "auroc/uniform/log_px")  # no official code has Uniform
    assert none == "" and note.endswith("closest protocol: ood-jem-official")
    assert protocol(jem, "Table 7", "JEM (Ours)", "auroc/svhn/log_px")[0] == "ood-jem-official"
    assert protocol(sada, "Table 1", "SADA-JEM (K=5)", "accuracy")[0] == "accuracy-sadajem-official"
    assert protocol(sada, "Table 1", "JEM++ (M=10) [48]", "accuracy")[0] == "accuracy-jempp-official"
    assert protocol(jem, "App. F", "IGEBM vs JEM", "crossover_eps255/l2/k10/vs=jem")[0] == "robustness-jem-official-l2"
    assert protocol(sada, "Table 1", "SADA-JEM (K=5)", "fid/buffer")[0] == "generation-sadajem-official"
    assert protocol(sada, "Table 2", "SADA-JEM (K=5)", "fid/buffer")[0] == "generation-sadajem-official-cifar100"
    # rows SADA-JEM copied from the JEM paper keep JEM's protocols; JEM++ rows come from the JEM++ code
    assert protocol(sada, "Table 1", "JEM (K=20)* [17]", "accuracy")[0] == "accuracy-jem-official"
    assert protocol(sada, "Table 3", "JEM (K=20) [17]", "auroc/svhn/log_px")[0] == "ood-jem-official"
    assert protocol(sada, "Table 3", "JEM++ (M=20) [48]", "auroc/svhn/log_px")[0] == "ood-jempp-official"
    assert protocol(sada, "Table 1", "JEM++ (M=10) [48]", "is/buffer")[0] == "generation-jempp-official"
    assert protocol(sada, "Table 3", "SADA-JEM (K=5)", "auroc/svhn/log_px")[0] == "ood-sadajem-official"


@pytest.mark.parametrize("new,message", [
    ("generation-nonsense", "protocol 'generation-nonsense' is not a shipped protocol file"),
    ("ood", "protocol 'ood' is for suite 'ood', which does not write metric 'fid/buffer'"),
    ("", "empty protocol; name the jembench protocol"),
])
def test_loader_rejects_bad_protocols(tmp_path, new, message):
    folder = _copy(tmp_path)
    path = folder / "sada-jem-poster-yang-2023-table1.csv"
    old = "SADA-JEM (K=5),sada_jem,cifar10,5,fid/buffer,9.41,,generation-sadajem-official,"
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, old.replace(",generation-sadajem-official,", f",{new},")), encoding="utf-8")
    with pytest.raises(JembenchError, match=re.escape(message)) as err:
        load_published(folder)
    assert "sada-jem-poster-yang-2023-table1.csv:4" in str(err.value)


def test_loader_rejects_a_flagged_row_without_its_closest_protocol(tmp_path):
    folder = _copy(tmp_path)
    path = folder / "jem-grathwohl-2020-table7.csv"
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("closest protocol: ood-jem-official", "closest: ood-jem-official", 1),
                    encoding="utf-8")
    with pytest.raises(JembenchError, match="needs 'closest protocol: NAME' in the note"):
        load_published(folder)
