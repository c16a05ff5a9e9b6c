"""What a leaderboard table is, as data: sections of rows of cells under columns (torch-free, no logic).

:mod:`jembench.leaderboard` builds them from published numbers and records, :mod:`jembench.leaderboard_significance`
marks our cells that the data cannot tell apart from the best of ours, and :mod:`jembench.render` draws them — each
imports these types from here, so none of them imports another to name them.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Cell:
    value: float
    decimals: int
    metric: str
    mark: str = ""  # e.g. "°" for another sample source
    protocol: str | None = None  # ours: protocol hash of the records it averages; None for published numbers
    needs: str | None = None  # published: the protocol the number needs ("" = none reproduces it); None for ours
    suite: str = ""  # ours: the suite of the records it averages
    values: tuple[float, ...] = ()  # ours: each averaged record's value (several: seeds; mean ± std shown)
    paths: tuple[str, ...] = ()  # ours: the records it averages (their evidence feeds the significance marks)
    se: float | None = None  # ours, one record: its standard error (z = 1) at the record's sizes; None: none derived
    emphasis: int = 0  # 1 = best (bold), 2 = second best (underlined): set by jembench.leaderboard_significance


@dataclass
class Row:
    block: str  # group (hybrid), score (ood); "" if none
    model: str
    ours: bool
    source: str
    flags: list[str] = field(default_factory=list)
    cells: dict[str, Cell] = field(default_factory=dict)
    protocols: dict[str, str] = field(default_factory=dict)  # ours: suite -> protocol hash
    protocol_labels: dict[str, str] = field(default_factory=dict)  # ours: suite -> "name@hash8" for people
    protocol_names: dict[str, str] = field(default_factory=dict)  # ours: suite -> protocol name(s), "/"-joined
    column_labels: dict[str, str] = field(default_factory=dict)  # ours: column -> the label the records store
    caveats: list[str] = field(default_factory=list)  # ours: failed attack sanity checks (marked, noted)


@dataclass
class Column:
    key: str
    label: str  # as printed (unicode arrows)
    direction: str  # higher | lower | none


@dataclass
class Section:
    kind: str
    title: str
    dataset: str
    paper: str | None
    table: str | None
    block_label: str | None  # header of the block column (Group / Score), None = no block column
    columns: list[Column]
    rows: list[Row]
    notes: list[str] = field(default_factory=list)
