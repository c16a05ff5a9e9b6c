"""The papers' numbers: ``results/published/*.csv`` (one row per number; shipped as package data, see
:mod:`jembench.resources`) loaded and validated with pandas.

Why a CSV per paper table with a source on every row: a reviewer can check any number against the paper in a
diff, and the leaderboard can rebuild each table's shape (row order = file order). The columns, the metric-key
mapping and the footnote flags are described in ``results/published/README.md``; this module is the one place
that enforces them, so a typo in a CSV is an error naming the file, the line and the fix — never a silently
missing or mis-sorted number.

Every row names the jembench protocol that reproduces its number (``protocol``: a shipped protocol file, e.g.
``ood-jem-official``), or none — flag ``no_official_protocol`` and a ``closest protocol: NAME`` in the note —
when no official code computes it. The leaderboard puts our rows beside a published row, and ``jembench check``
compares with it, only when our record was measured under that protocol (name and the packaged file's hash).
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

import pandas as pd

from . import catalog, metric_keys
from .errors import JembenchError
from .resources import published_dir

COLUMNS = ["leaderboard", "paper", "table", "row", "column", "group", "model", "method", "dataset", "sgld_steps",
           "metric", "value", "flags", "protocol", "note"]

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
    "no_official_protocol": ("ⁿ", ("no official code computes (some of) these numbers, so no jembench protocol "
                                   "reproduces them (e.g. JEM Table 7's Uniform / Constant sets); the row's note "
                                   "names the closest protocol")),
}

#: flags whose rows `jembench check` never picks automatically as the reference (their setting differs).
NOT_A_REFERENCE = frozenset({"labels_4000", "setting_inferred", "printed_nan", "marker_unexplained",
                             "no_official_protocol"})

#: protocols a published row names that ship no file. Only ``generation-jem-paper``: the JEM code has no IS / FID
#: (JEM App. B / Table 5 describe the measurement; ``suites/generation.toml`` follows that text, but its hash is not
#: claimed to reproduce JEM Table 1, so no record is put beside those rows). Once a name here ships as
#: suites/<name>.toml, tests/test_published.py fails until it is removed from this set.
PENDING_PROTOCOLS = frozenset({"generation-jem-paper"})

_CLOSEST = re.compile(r"closest protocol: ([a-z0-9][a-z0-9_.+\-]*)")

def shipped_protocols() -> set[str]:
    """Names of the protocol files shipped with jembench (``suites/<suite>[-<variant>].toml``; never a tolerance
    file such as ``check-tolerances-tiny.toml``)."""
    from .protocols import available_protocols

    return set(available_protocols())


def known_protocols() -> set[str]:
    """Protocol names a published row may need: the shipped files and :data:`PENDING_PROTOCOLS`."""
    return shipped_protocols() | PENDING_PROTOCOLS


def protocol_suite(name: str) -> str | None:
    """The suite of protocol ``name`` (``<suite>`` or ``<suite>-<variant>``, as the shipped files are named)."""
    suites = sorted({s for spec in metric_keys.SPECS.values() for s in spec.suites})
    return next((s for s in suites if name == s or name.startswith(f"{s}-")), None)


def closest_protocol(note: str) -> str | None:
    """The ``closest protocol: NAME`` a row without a protocol names in its note."""
    m = _CLOSEST.search(note)
    return m.group(1) if m else None


def _protocol_problems(row, flags: list[str], known: set[str]) -> list[str]:
    """Why a row's ``protocol`` is invalid: unknown, of a suite that does not write the metric, or empty without
    the ``no_official_protocol`` flag and a closest protocol in the note."""
    spec = metric_keys.spec(row["metric"])
    wanted = spec.suites if spec is not None else ()
    name = row["protocol"].strip()
    if not name:
        closest = closest_protocol(row["note"])
        if "no_official_protocol" not in flags:
            return ["empty protocol; name the jembench protocol that reproduces the number, or flag the row "
                    "no_official_protocol and name the closest one in the note"]
        if closest is None:
            return ["flag no_official_protocol needs 'closest protocol: NAME' in the note"]
        name = closest
    elif "no_official_protocol" in flags:
        return [f"protocol {name!r} and flag no_official_protocol contradict each other; drop one"]
    if name not in known:
        return [f"protocol {name!r} is not a shipped protocol file (jembench/resources: suites/*.toml) or a pending "
                f"one ({', '.join(sorted(known))})"]
    if protocol_suite(name) not in wanted:
        return [f"protocol {name!r} is for suite {protocol_suite(name)!r}, which does not write metric "
                f"{row['metric']!r} (written by: {', '.join(wanted) or 'no suite'})"]
    return []


@lru_cache(maxsize=None)
def packaged_protocol_hash(name: str) -> str | None:
    """The hash of the shipped protocol file ``name`` (what a record measured under it carries), or None when no
    such file ships (a pending name, or none). Resolving a protocol imports its suite (and torch), so this is
    called only for names a record actually carries."""
    if name not in shipped_protocols():
        return None
    from .protocols import load_protocol

    return load_protocol(name).hash


def measured_under(record_protocol: dict, needed: str) -> bool:
    """Whether a record's ``protocol`` block (name and hash) is the published row's protocol ``needed``: the same
    name and the hash of the packaged protocol file. The one rule by which the leaderboard puts our numbers
    beside a published number and ``jembench check`` compares them."""
    names = {n for n in str(record_protocol.get("name", "")).split("/") if n}
    return bool(needed) and needed in names and packaged_protocol_hash(needed) == record_protocol.get("hash")


def needs_label(needed: str, note: str) -> str:
    """How a published number's protocol reads in a table: its name, or ``none (closest NAME)``."""
    return needed or f"none (closest {closest_protocol(note) or '?'})"


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
    known = known_protocols()
    for i, row in df.iterrows():
        where = f"{path.name}:{i + 2}"  # header is line 1
        flags = flag_list(row["flags"])
        for flag in flags:
            if flag not in FLAGS:
                problems.append(f"{where}: unknown flag {flag!r} (known: {', '.join(FLAGS)})")
        if metric_is_known(row["metric"]):
            problems += [f"{where}: {p}" for p in _protocol_problems(row, flags, known)]
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
