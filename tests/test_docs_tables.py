"""The documentation's result tables and paper figures are generated (tools/docs_tables.py, ``make doc-tables``):
the committed pages must be what the committed records and results/published give, and the generator must follow a
record that changes."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
from pathlib import Path

import pytest

from jembench import summary_table
from jembench.errors import JembenchError

REPO = Path(__file__).resolve().parent.parent


def _tool():
    spec = importlib.util.spec_from_file_location("docs_tables", REPO / "tools" / "docs_tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


docs_tables = _tool()


def test_committed_pages_are_what_make_doc_tables_writes():
    stale = docs_tables.outdated()
    assert not stale, (f"{', '.join(stale)}: the generated tables or paper figures differ from what the committed "
                       f"records and results/published give; run make doc-tables (python tools/docs_tables.py)")


def test_the_result_tables_and_the_paper_figures_of_the_docs_are_generated():
    """The tables of measured numbers that come from committed records stay inside generated regions, and each
    "paper reports" figure of the CIFAR-10 page is a generated citation."""
    results = (REPO / "docs" / "results.md").read_text(encoding="utf-8")
    cifar = (REPO / "docs" / "results-cifar10.md").read_text(encoding="utf-8")
    assert "<!-- BEGIN generated: demo-table -->" in results
    assert "<!-- BEGIN generated: cifar10-table -->" in cifar
    assert cifar.count("<!-- published:") >= 2
    for text in (results, cifar):  # no table row of a model outside the generated regions
        assert not re.search(r"^\| *(Softmax|JEM|SADA)", docs_tables.BLOCK.sub("", text), flags=re.M | re.I)


def _workspace(tmp_path: Path) -> Path:
    """A checkout-like root with the demo page and the committed demo records (records only)."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text("# x\n", encoding="utf-8")
    shutil.copyfile(REPO / "docs" / "results.md", tmp_path / "docs" / "results.md")
    shutil.copytree(REPO / "results" / "runs" / "demo", tmp_path / "results" / "runs" / "demo",
                    ignore=shutil.ignore_patterns("*.png", "*.pdf"))
    return tmp_path


def test_a_changed_record_changes_the_table_and_the_check_names_the_command(tmp_path, capsys):
    root = _workspace(tmp_path)
    assert docs_tables.main(["--check", "--root", str(root)]) == 0
    record_path = root / "results" / "runs" / "demo" / "jem" / "accuracy.json"
    record = json.loads(record_path.read_text())
    record["metrics"]["accuracy"] = 50.0  # 180 of the 360 test digits
    record_path.write_text(json.dumps(record))
    assert docs_tables.main(["--check", "--root", str(root)]) == 1
    assert "docs/results.md" in capsys.readouterr().err and "make doc-tables" in docs_tables.COMMAND
    assert docs_tables.main(["--root", str(root)]) == 0
    page = (root / "docs" / "results.md").read_text()
    jem_row = next(line for line in page.splitlines() if line.startswith("| JEM "))
    assert jem_row.split("|")[2].strip() == "50.00"
    assert docs_tables.main(["--check", "--root", str(root)]) == 0


def test_a_region_without_its_end_or_of_an_unknown_name_is_an_error(tmp_path):
    with pytest.raises(JembenchError, match="no matching"):
        docs_tables.rewrite("<!-- BEGIN generated: demo-table -->\n| a |\n", tmp_path)
    with pytest.raises(JembenchError, match="unknown generated region 'nope'"):
        docs_tables.rewrite("<!-- BEGIN generated: nope -->\nx\n<!-- END generated: nope -->", tmp_path)


def test_published_figures_are_cited_with_their_paper_and_table():
    """JEM Table 3 prints .67 for JEM's log p(x) on SVHN and the SADA-JEM poster's Table 3 .91 for SADA-JEM
    (K=5) (../shared/papers); the citation names each number's paper and table."""
    assert docs_tables.published_figure("jem-grathwohl-2020 | Table 3 | JEM (Ours) | auroc/svhn/log_px") == \
        "0.67 (JEM'20 Table 3)"
    assert docs_tables.published_figure(
        "sada-jem-poster-yang-2023 | Table 3 | SADA-JEM (K=5) | auroc/svhn/log_px") == "0.91 (SADA-JEM'23 Table 3)"
    assert docs_tables.published_figure("sada-jem-poster-yang-2023 | Table 1 | Softmax | accuracy") == \
        "96.2 (SADA-JEM'23 Table 1)"
    with pytest.raises(JembenchError, match="matches 2 rows"):  # CIFAR-10 and SVHN: the dataset must be named
        docs_tables.published_figure("jem-grathwohl-2020 | §5 | WRN-28-10 | accuracy")
    assert docs_tables.published_figure("jem-grathwohl-2020 | §5 | WRN-28-10 | accuracy | svhn") == \
        "97.7 (JEM'20 §5)"
    with pytest.raises(JembenchError, match="matches 0 rows"):
        docs_tables.published_figure("jem-grathwohl-2020 | Table 3 | JEM | auroc/svhn/log_px")


def test_summary_cells_keep_their_decimals_and_escape_the_markdown_cell_separator():
    assert [summary_table.cell(v) for v in (97.5, 1.5, 0.0534, 100.0, "6,000")] == [
        "97.50", "1.50", "0.053", "100.00", "6,000"]
    table = summary_table.markdown([{"Model": "A", "AUROC max_y p(y|x)": 0.9}, {"Model": "B", "x": 2.0}])
    header, rule, *body = table.splitlines()
    assert r"p(y\|x)" in header and header.count(" | ") == 2  # three columns: the | inside a label is escaped
    assert [c.strip() for c in body[1].strip("|").split("|")] == ["B", "-", "2.00"]


def test_record_figures_of_the_prose_are_a_number_or_the_range_over_the_named_methods():
    runs = REPO / "results" / "runs" / "cifar10-cpu"
    ece = {m: json.loads((runs / m / "last-calibration.json").read_text())["metrics"]["ece"]
           for m in ("jem", "jempp", "sada_jem")}
    assert docs_tables.records_figure("cifar10-cpu | calibration | ece | jem | 1", REPO) == f"{ece['jem']:.1f}"
    low, high = min(ece["jempp"], ece["sada_jem"]), max(ece["jempp"], ece["sada_jem"])
    assert docs_tables.records_figure("cifar10-cpu | calibration | ece | jempp, sada_jem | 2", REPO) == \
        f"{low:.2f}–{high:.2f}"
    with pytest.raises(JembenchError, match="has no calibration record with nope"):
        docs_tables.records_figure("cifar10-cpu | calibration | nope | jem | 1", REPO)
    with pytest.raises(JembenchError, match="write runs"):
        docs_tables.records_figure("cifar10-cpu | calibration | ece", REPO)
