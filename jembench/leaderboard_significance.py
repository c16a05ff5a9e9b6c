"""Which of our leaderboard numbers are not significantly different from the best of ours, which differences may
be emphasized at all, and the seed spread of multi-seed rows.

Within each column (and, in OOD tables, each score block) of a leaderboard section, our rows measured under one
protocol are compared with the best of them (by the column's direction) using the test
:func:`jembench.comparison.difference` picks — paired (McNemar exact, DeLong, paired bootstrap) when the two
records' per-input evidence names the same inputs, unpaired otherwise. A cell whose two-sided p-value exceeds
``alpha`` is marked ``≈`` ("not significantly different from the best of our rows"), so a reader sees which
differences between models are within the noise of the test set. Cells that average several records (seeds)
are compared by Welch's t-test on the per-record values (``scipy.stats.ttest_ind``), and show mean ± standard
deviation with the 95 % t-interval of the mean in a note under the table.

Emphasis (:func:`settle_emphasis`) follows the same tests: the best value of a column is bold only when it differs
significantly from the next value (the runner-up) and no cell of ours below it is marked ``≈`` (so bold never
contradicts ``≈``); the second best is underlined only when the best is bold and it differs significantly from the
value after it; otherwise the top is a tie and nothing is emphasized. Pairs are decided by what the data allow:
two of ours by the tests above; one of ours and a published number (the table's protocol, hence the same test
sets) by the unpaired test at our record's sizes — two-proportion score test for accuracies, Hanley–McNeil for
AUROCs, none (no emphasis) for the rest — or, for a mean over seeds, the one-sample t-test of the seeds' values
against the number; two published numbers as the paper prints them (no evidence, often no n: the paper's own
reading stands).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from . import metric_keys
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
    from .comparison import difference

    try:
        result, _ = difference(_side(best.paths[0], sides), _side(other.paths[0], sides), best.metric)
    except (JembenchError, KeyError):
        return math.nan
    return math.nan if result is None else result.p


def settle_emphasis(section: Section, alpha: float = ALPHA) -> None:
    """Set each cell's ``emphasis`` (1 bold = best, 2 underlined = second best) per column and score block,
    following the column's direction, only where the difference to the values below is significant (module
    docstring). Our cells take part only when every one of them in the column was measured under the same
    protocol: ranking numbers from different protocols against each other would be exactly the mixing we refuse.
    Values are compared as printed (rounded to their decimals), so equal-looking numbers rank equal (a tie)."""
    sides: dict[str, Side] = {}
    cache: dict[tuple[int, int], bool | None] = {}

    def differs(a: Cell, b: Cell) -> bool | None:
        pair = (id(a), id(b)) if id(a) < id(b) else (id(b), id(a))
        if pair not in cache:
            cache[pair] = _significant(a, b, sides, alpha)
        return cache[pair]

    tied: list[str] = []  # columns whose best is not significantly better than the next
    untested: list[str] = []  # columns where no test applies between the best and the next
    for col in section.columns:
        if col.direction not in ("higher", "lower"):
            continue
        protocols = {r.cells[col.key].protocol for r in section.rows if r.ours and col.key in r.cells}
        groups: dict[str, list[tuple[float, Cell]]] = {}
        for r in section.rows:
            cell = r.cells.get(col.key)
            if cell is None or not math.isfinite(cell.value) or (r.ours and len(protocols) > 1):
                continue
            groups.setdefault(r.block if section.kind == "ood" else "", []).append(
                (round(cell.value, cell.decimals), cell))
        for block, items in groups.items():
            ranked = sorted({v for v, _ in items}, reverse=col.direction == "higher")
            if len(ranked) < 2:
                continue
            tiers = [[c for v, c in items if v == value] for value in ranked]
            top = [differs(a, b) for a in tiers[0] for b in tiers[1]]
            # the best of ours sits in the top tier when any of ours does: a ≈ further down says it ties with it
            similar = any(c.protocol is not None for c in tiers[0]) and any(
                SIMILAR in c.mark for tier in tiers[1:] for c in tier)
            if similar or not all(top):
                (untested if None in top else tied).append(col.label + (f" ({_block_label(block)})" if block else ""))
                continue
            for c in tiers[0]:
                c.emphasis = 1
            if len(tiers) < 3 or all(differs(a, b) for a in tiers[1] for b in tiers[2]):
                for c in tiers[1]:
                    c.emphasis = 2
    if not any(r.ours for r in section.rows):
        return
    rule = ("bold and underline mark only significant differences (between published numbers, as the papers "
            "print them)")
    if tied:
        section.notes.append(f"no bold in {', '.join(dict.fromkeys(tied))}: the best value is not significantly "
                             f"better than the next (two-sided p > {alpha:g}), a tie; {rule}")
    if untested:
        section.notes.append(f"no bold in {', '.join(dict.fromkeys(untested))}: no test can tell the best value "
                             f"from the next (no per-input evidence or sampling error for it); {rule}")


def _block_label(block: str) -> str:
    from .metrics.ood_scores import SCORES

    score = SCORES.get(block)
    return score.label if score is not None else block


def _significant(a: Cell, b: Cell, sides: dict[str, Side], alpha: float) -> bool | None:
    """Whether two cells of one column differ significantly (module docstring); None when no test applies."""
    ours_a, ours_b = a.protocol is not None, b.protocol is not None
    if not ours_a and not ours_b:
        return True  # two published numbers: the paper's own reading
    if ours_a and ours_b:
        first, second = (a, b) if a.value >= b.value else (b, a)
        p = _p_value(first, second, sides)
    else:
        ours, published = (a, b) if ours_a else (b, a)
        p = _p_published(ours, published, sides)
    return None if not math.isfinite(p) else p <= alpha


def _p_published(ours: Cell, published: Cell, sides: dict[str, Side]) -> float:
    """Two-sided p of one of our cells against a published number measured under the same protocol: one record at
    its sizes by the two-proportion score test (accuracies) or Hanley–McNeil (AUROCs), NaN for other metrics; a
    mean over several records (seeds) by the one-sample t-test of their values against the number."""
    if len(ours.paths) > 1:
        from scipy import stats

        if len(ours.values) < 2:
            return math.nan
        return float(stats.ttest_1samp(ours.values, published.value).pvalue)
    spec = metric_keys.spec(ours.metric)
    if len(ours.paths) != 1 or spec is None or spec.se == "fixed":
        return math.nan
    from .sampling_error import sizes
    from .stats import delong, proportions

    found = sizes(_side(ours.paths[0], sides).record, ours.metric)
    if found is None:
        return math.nan
    if spec.se == "binomial":
        n, scale = found[0], 100.0 if spec.percent else 1.0
        return proportions.two_proportions(round(published.value / scale * n), n, round(ours.value / scale * n),
                                           n).p
    pair = (found[0], found[1])
    return delong.hanley_mcneil(published.value, pair, ours.value, pair).p


def _side(path: str, sides: dict[str, Side]) -> Side:
    from .comparison import Side
    from .records import load_records

    if path not in sides:
        sides[path] = Side(load_records([path])[0])
    return sides[path]


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
