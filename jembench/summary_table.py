"""The one-row-per-model summary table: what ``jembench demo`` prints and the result tables of the documentation show.

Each suite names its headline numbers (``headline(record)`` in its module: accuracy, ECE, the mean AUROC per score,
IS / FID of fresh chains, clean and robust accuracy), a row collects them for one model, and a row whose
robustness record fails an attack sanity check carries ⚠ (:mod:`jembench.suites.robustness.sanity`). One cell
formatter (:func:`cell`) and one Markdown renderer (:func:`markdown`, tabulate's ``github`` format) serve the
demo's terminal table and the tables ``tools/docs_tables.py`` writes into docs/ from the committed records, so the
page shows what the command prints, digit for digit.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tabulate import tabulate

from . import escape
from .suites.robustness import sanity


def cell(value: Any) -> str:
    """A table cell: floats with two decimals from 1 up (accuracies, ECE, IS) and three below (AUROCs, small FIDs);
    anything else as it is."""
    if isinstance(value, float):
        return f"{value:.2f}" if abs(value) >= 1 else f"{value:.3f}"
    return str(value)


def add_record(row: dict[str, Any], record: dict[str, Any]) -> list[sanity.Caveat]:
    """Put ``record``'s headline cells (its suite's ``headline``) into ``row``; when the record fails an attack
    sanity check, mark the row's ``Model`` with ⚠ and return the failures (empty list otherwise)."""
    from .suites import get_suite

    row.update(get_suite(record["suite"]).headline(record))
    failed = sanity.caveats(record)
    if failed and not str(row["Model"]).endswith(sanity.MARK):
        row["Model"] = f"{row['Model']} {sanity.MARK}"
    return failed


def markdown(rows: Iterable[dict[str, Any]]) -> str:
    """The rows as a GitHub Markdown table: the columns in the order the rows first name them, ``-`` for a cell a
    row lacks, every text escaped for a Markdown cell (:func:`jembench.escape.markdown`: the ``|`` of
    ``p(y|x)``), the cells as :func:`cell` writes them (tabulate does not re-parse them: ``1.50`` stays ``1.50``)."""
    rows = list(rows)
    columns = list(dict.fromkeys(key for row in rows for key in row))
    body = [[escape.markdown(cell(row.get(c, "-"))) for c in columns] for row in rows]
    return tabulate(body, headers=[escape.markdown(c) for c in columns], tablefmt="github", disable_numparse=True)
