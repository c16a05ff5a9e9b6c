"""The papers' numbers: ``results/published/*.csv`` (one row per number; shipped as package data, see
:mod:`jembench.resources`) loaded and validated with pandas.

Why a CSV per paper table with a source on every row: a reviewer can check any number against the paper in a
diff, and the leaderboard can rebuild each table's shape (row order = file order). The columns, the metric-key
mapping and the footnote flags are described in ``results/published/README.md``; this module is the one place
that enforces them, so a typo in a CSV is an error naming the file, the line and the fix — never a silently
missing or mis-sorted number.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from . import catalog, metric_keys
from .errors import JembenchError
from .resources import published_dir

COLUMNS = ["leaderboard", "paper", "table", "row", "column", "group", "model", "method", "dataset", "sgld_steps",
           "metric", "value", "flags", "note"]

#: leaderboard tables a published row can belong to (``jembench leaderboard --table``).
BOARDS = ("hybrid", "ood", "calibration", "robustness", "ablation")

#: paper keys (the file stems in ../shared/papers) and how a table caption cites them.
PAPERS = {
    "jem-grathwohl-2020": "JEM (Grathwohl et al., ICLR 2020)",
    "sada-jem-poster-yang-2023": "SADA-JEM (Yang et al., CVPR 2023)",
}
PAPER_SHORT = {"jem-grathwohl-2020": "JEM'20", "sada-jem-poster-yang-2023": "SADA-JEM'23"}

#: footnote flags: name -> (symbol shown beside the model, what it means).
FLAGS = {
    "unstable": ("†", "training unstable and regularly diverged (SADA-JEM footnote)"),
    "ran_official_code": ("*", ("no official IS/FID reported; produced by the SADA-JEM authors running the "
                                "official code with default settings")),
    "copied_secondary": ("‡", "number copied from Chen et al. (2019), not the original paper (JEM Table 6)"),
    "printed_nan": ("¶", "printed as NaN in the paper (numerical stability issues); no value"),
    "labels_4000": ("§", "trained with 4,000 labelled CIFAR-10 examples (JEM App. D)"),
    "from_error_rate": ("ᵉ", "printed as an error rate; value = 100 − error"),
    "setting_inferred": ("ⁱ", "dataset/setting not printed; inferred (see the row's note)"),
    "marker_unexplained": ("*", "the paper marks the row with * but gives no footnote for it"),
}

#: flags whose rows `jembench check` never picks automatically as the reference (their setting differs).
NOT_A_REFERENCE = frozenset({"labels_4000", "setting_inferred", "printed_nan", "marker_unexplained"})

def metric_is_known(metric: str) -> bool:
    """Whether ``metric`` is a record metric key (:mod:`jembench.metric_keys`) or a published crossover ε."""
    return metric_keys.is_known(metric)


def flag_list(flags: str) -> list[str]:
    """``"a;b"`` → ``["a", "b"]`` (empty string → ``[]``)."""
    return [f for f in str(flags).split(";") if f]


def _decimals(text: str) -> int:
    return len(text.split(".", 1)[1]) if "." in text else 0


def _load_one(path: Path) -> pd.DataFrame:
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise JembenchError(f"published file {path} is not a readable CSV ({exc}); fix the file") from None
    if list(df.columns) != COLUMNS:
        raise JembenchError(f"published file {path} has columns {list(df.columns)}; expected exactly "
                            f"{','.join(COLUMNS)} (see results/published/README.md)")
    problems = []
    values, decimals, steps = [], [], []
    for i, row in df.iterrows():
        where = f"{path.name}:{i + 2}"  # header is line 1
        flags = flag_list(row["flags"])
        for flag in flags:
            if flag not in FLAGS:
                problems.append(f"{where}: unknown flag {flag!r} (known: {', '.join(FLAGS)})")
        if row["leaderboard"] not in BOARDS:
            problems.append(f"{where}: leaderboard {row['leaderboard']!r} is not one of {', '.join(BOARDS)}")
        if row["paper"] not in PAPERS:
            problems.append(f"{where}: paper {row['paper']!r} is not one of {', '.join(PAPERS)}")
        if row["dataset"] not in catalog.dataset_names():
            problems.append(f"{where}: dataset {row['dataset']!r} is not one of {', '.join(catalog.dataset_names())}")
        if not metric_is_known(row["metric"]):
            problems.append(f"{where}: metric {row['metric']!r} is not a record metric key (jembench/metric_keys.py)")
        for key in ("table", "row", "column", "model", "method"):
            if not row[key].strip():
                problems.append(f"{where}: empty {key!r}")
        text = row["value"].strip()
        if text == "":
            if "printed_nan" not in flags:
                problems.append(f"{where}: empty value; only rows flagged printed_nan may have none")
            values.append(float("nan"))
            decimals.append(0)
        else:
            try:
                values.append(float(text))
            except ValueError:
                problems.append(f"{where}: value {text!r} is not a number")
                values.append(float("nan"))
            decimals.append(_decimals(text))
        s = row["sgld_steps"].strip()
        if s and not s.isdigit():
            problems.append(f"{where}: sgld_steps {s!r} must be a whole number or empty")
        steps.append(int(s) if s.isdigit() else pd.NA)
    if problems:
        raise JembenchError(f"published file {path} is invalid: {problems[0]}"
                            + (f" (+{len(problems) - 1} more problems)" if len(problems) > 1 else "")
                            + "; fix the CSV (see results/published/README.md)")
    df["value"] = pd.Series(values, index=df.index, dtype="float64")
    df["decimals"] = pd.Series(decimals, index=df.index, dtype="int64")
    df["sgld_steps"] = pd.array(steps, dtype="Int64")
    df["source_file"] = path.name
    df["line"] = df.index + 2
    return df


def load_published(folder: str | Path | None = None) -> pd.DataFrame:
    """All ``*.csv`` under ``folder`` (default: the published numbers shipped with jembench, ``results/published``
    in the repository) as one validated DataFrame.

    Extra columns: ``decimals`` (digits after the point as printed, for rendering ``8.30`` as ``8.30``),
    ``source_file``, ``line`` and ``order`` (global row order: file name, then line).
    """
    folder = Path(folder) if folder is not None else published_dir()
    if not folder.is_dir():
        raise JembenchError(f"published-numbers folder {folder} does not exist; pass --published DIR (a folder of "
                            f"CSVs like jembench's results/published)")
    files = sorted(folder.glob("*.csv"))
    if not files:
        raise JembenchError(f"no *.csv files in {folder}; pass the folder that holds the published numbers")
    df = pd.concat([_load_one(f) for f in files], ignore_index=True)
    dup = df.duplicated(["paper", "table", "row", "dataset", "metric"], keep=False)
    if dup.any():
        first = df[dup].iloc[0]
        raise JembenchError(f"published numbers repeat {first['paper']} {first['table']} row {first['row']!r} "
                            f"metric {first['metric']} ({first['source_file']}:{first['line']}); keep one row "
                            f"per number")
    df["order"] = range(len(df))
    return df


def cite(paper: str, table: str) -> str:
    """``"SADA-JEM'23 Table 1"``: a short source label for a table cell or a diff row."""
    return f"{PAPER_SHORT.get(paper, paper)} {table}"
