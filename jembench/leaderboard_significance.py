"""Which of our leaderboard numbers are not significantly different from the best of ours, and the seed spread of
multi-seed rows.

Within each column (and, in OOD tables, each score block) of a leaderboard section, our rows measured under one
protocol are compared with the best of them (by the column's direction) using the test
:func:`jembench.comparison.difference` picks — paired (McNemar exact, DeLong, paired bootstrap) when the two
records' per-input evidence names the same inputs, unpaired otherwise. A cell whose two-sided p-value exceeds
``alpha`` is marked ``≈`` ("not significantly different from the best of our rows"), so a reader sees which
differences between models are within the noise of the test set. Cells that average several records (seeds)
are compared by Welch's t-test on the per-record values (``scipy.stats.ttest_ind``), and show mean ± standard
deviation with the 95 % t-interval of the mean in a note under the table. Published numbers take no part:
they carry no per-input evidence.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from .errors import JembenchError

if TYPE_CHECKING:
    from .comparison import Side
    from .sections import Cell, Section

SIMILAR = "≈"
ALPHA = 0.05


def mark_indistinguishable(section: Section, alpha: float = ALPHA) -> None:
    """Mark (``≈``) our cells not significantly different from the best of ours in their column; note the seed
    spread of multi-seed cells."""
    sides: dict[str, Side] = {}
    marked = False
    for col in section.columns:
        if col.direction not in ("higher", "lower"):
            continue
        groups: dict[tuple[str, str | None], list[Cell]] = {}
        for r in section.rows:
            cell = r.cells.get(col.key)
            if r.ours and cell is not None and math.isfinite(cell.value):
                block = r.block if section.kind == "ood" else ""
                groups.setdefault((block, cell.protocol), []).append(cell)
        for cells in groups.values():
            if len(cells) < 2:
                continue
            best = (max if col.direction == "higher" else min)(cells, key=lambda c: c.value)
            for cell in cells:
                if cell is not best and _p_value(best, cell, sides) > alpha:
                    cell.mark += SIMILAR
                    marked = True
    if marked:
        section.notes.append(f"{SIMILAR} not significantly different from the best of our rows in its column "
                             f"(two-sided p > {alpha:g}: McNemar exact, DeLong or paired bootstrap on the same "
                             f"inputs, the unpaired test otherwise; Welch's t over seeds for averaged rows)")
    _seed_notes(section)


def _p_value(best: Cell, other: Cell, sides: dict[str, Side]) -> float:
    """Two-sided p of the difference between two of our cells (NaN when no test applies)."""
    from scipy import stats

    if len(best.paths) > 1 or len(other.paths) > 1:
        if min(len(best.values), len(other.values)) < 2:
            return math.nan
        return float(stats.ttest_ind(best.values, other.values, equal_var=False).pvalue)
    from .comparison import Side, difference
    from .records import load_records

    def side(path: str) -> Side:
        if path not in sides:
            sides[path] = Side(load_records([path])[0])
        found: Side = sides[path]
        return found

    try:
        result, _ = difference(side(best.paths[0]), side(other.paths[0]), best.metric)
    except (JembenchError, KeyError):
        return math.nan
    return math.nan if result is None else result.p


def _seed_notes(section: Section) -> None:
    from .stats.multiple import t_interval

    for r in section.rows:
        for key, cell in r.cells.items():
            if not r.ours or len(cell.values) < 2:
                continue
            s = t_interval(cell.values)
            d = cell.decimals
            section.notes.append(f"{r.model}, {key}: mean ± std over {s.k} records {s.mean:.{d}f} ± {s.std:.{d}f}; "
                                 f"95 % t-interval of the mean {s.ci[0]:.{d}f} to {s.ci[1]:.{d}f}")
