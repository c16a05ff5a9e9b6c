"""The papers' numbers: ``results/published/*.csv`` (one row per number; shipped as package data, see
:mod:`jembench.resources`) loaded and validated with pandas.

Why a CSV per paper table with a source on every row: a reviewer can check any number against the paper in a
diff, and the leaderboard can rebuild each table's shape (row order = file order). The columns, the metric-key
mapping and the footnote flags are described in ``results/published/README.md``; this module is the one place
that enforces them, so a typo in a CSV is an error naming the file, the line and the fix — never a silently
missing or mis-sorted number.

Every row says where its number came from (``provenance``, README "Provenance"): ``reproduced`` — produced by
the paper's released code, and ``protocol`` names the shipped jembench protocol that transcribes that code's
evaluation (``produced_by`` names the repository); ``unreleased`` — produced by the authors with code they did
not release (the note names the closest protocol); ``quoted`` — produced by another codebase (``produced_by``)
and quoted. Only reproduced rows carry a protocol. The leaderboard puts our rows beside a published row, and
``jembench check`` compares with it, only when the row is reproduced and our record was measured under its
protocol (name and the packaged file's hash); quoted and unreleased rows are shown as such and never a reference.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd

from . import catalog, metric_keys, untrusted
from .errors import JembenchError
from .resources import published_dir

COLUMNS = ["leaderboard", "paper", "table", "row", "column", "group", "model", "method", "dataset", "sgld_steps",
           "metric", "value", "flags", "protocol", "provenance", "produced_by", "note"]

#: where a published number came from (column ``provenance``) and what that means for comparisons.
PROVENANCE = {
    "reproduced": "produced by the paper's released code; the row's protocol transcribes that code's evaluation",
    "unreleased": ("produced by the paper's authors with code they did not release; no jembench protocol "
                   "reproduces it (the note names the closest protocol)"),
    "quoted": "produced by another codebase (column produced_by) and quoted; no jembench protocol reproduces it",
}

#: the released repositories a reproducing protocol transcribes, by the protocol name's ``<suite>-<key>-official``.
OFFICIAL_CODE = {"jem": "wgrathwohl/JEM", "jempp": "sndnyang/JEMPP", "sadajem": "sndnyang/SADAJEM"}

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
    # shown for the provenance column (the leaderboard adds them; a CSV's flags column may not carry them)
    "unreleased": ("ⁿ", ("produced by the authors' unreleased code: no jembench protocol reproduces it; the "
                         "source names the closest protocol")),
    "quoted": ("◇", "quoted: produced by another codebase (named in the source); no jembench protocol reproduces it"),
    # shown on our rows (the leaderboard sets it from the records' model.training; never in a CSV)
    "recovered": ("ʳ", ("(ours) the training run recovered from divergence by rolling back and retrying, where the "
                        "official code stops (the records' model.training says how often; a *-official preset "
                        "stops instead)")),
}

#: flags set from the provenance column, never written in a CSV's flags column.
PROVENANCE_FLAGS = frozenset({"unreleased", "quoted"})
#: flags of our rows, set from the records (jembench.training_block), never written in a CSV's flags column.
RUN_FLAGS = frozenset({"recovered"})

#: flags whose rows `jembench check` never picks automatically as the reference (their setting differs); rows that
#: are not ``reproduced`` are never a reference at all.
NOT_A_REFERENCE = frozenset({"labels_4000", "setting_inferred", "printed_nan", "marker_unexplained"})


_CLOSEST = re.compile(r"closest protocol: ([a-z0-9][a-z0-9_.+\-]*)")

def shipped_protocols() -> set[str]:
    """Names of the protocol files shipped with jembench (``suites/<suite>[-<variant>].toml``; never a tolerance
    file such as ``check-tolerances-tiny.toml``)."""
    from .protocols import available_protocols

    return set(available_protocols())


def protocol_suite(name: str) -> str | None:
    """The suite of protocol ``name`` (``<suite>`` or ``<suite>-<variant>``, as the shipped files are named)."""
    suites = sorted({s for spec in metric_keys.SPECS.values() for s in spec.suites})
    return next((s for s in suites if name == s or name.startswith(f"{s}-")), None)


def closest_protocol(note: str) -> str | None:
    """The ``closest protocol: NAME`` a row without a protocol names in its note."""
    m = _CLOSEST.search(note)
    return m.group(1) if m else None


def official_code(protocol: str) -> str | None:
    """The released repository protocol ``<suite>-<key>-official[-variant]`` transcribes (None for other names)."""
    m = re.fullmatch(r"[a-z]+-([a-z]+)-official(-[a-z0-9.\-]+)?", protocol)
    return OFFICIAL_CODE.get(m.group(1)) if m else None


def _protocol_problems(row: pd.Series, known: set[str]) -> list[str]:
    """Why a row's provenance / protocol / produced_by are inconsistent: a reproduced row names a shipped protocol
    of a suite that writes its metric, transcribing the repository in produced_by; an unreleased or quoted row
    names none (an unreleased one gives the closest in its note)."""
    provenance, name, note = row["provenance"], row["protocol"].strip(), row["note"]
    if provenance not in PROVENANCE:
        return [f"provenance {provenance!r} is not one of {', '.join(PROVENANCE)}"]
    if not row["produced_by"].strip():
        return ["empty produced_by; name the codebase that produced the number"]
    spec = metric_keys.spec(row["metric"])
    wanted = spec.suites if spec is not None else ()  # the metric table: which suites write the metric
    if provenance == "reproduced":
        if not name:
            return ["empty protocol; a reproduced row names the jembench protocol that reproduces it (else set "
                    "provenance to unreleased or quoted)"]
        if not wanted:
            return [f"no suite writes metric {row['metric']!r}, so no protocol reproduces it; set provenance to "
                    f"unreleased or quoted and empty the protocol"]
        code = official_code(name)
        if code is not None and row["produced_by"] != code:
            return [f"protocol {name!r} transcribes {code}, but produced_by is {row['produced_by']!r}"]
    else:
        if name:
            return [f"provenance {provenance} and protocol {name!r} contradict each other: only a reproduced row "
                    f"names a protocol (put it in the note as 'closest protocol: NAME')"]
        name = closest_protocol(note) or ""
        if not name:
            return (["provenance unreleased needs 'closest protocol: NAME' in the note"]
                    if provenance == "unreleased" else [])
    if name not in known:
        return [f"protocol {name!r} is not a shipped protocol file (jembench/resources: suites/*.toml: "
                f"{', '.join(sorted(known))})"]
    if protocol_suite(name) not in wanted:
        return [f"protocol {name!r} is for suite {protocol_suite(name)!r}, which does not write metric "
                f"{row['metric']!r} (written by: {', '.join(wanted) or 'no suite'})"]
    return []


@lru_cache(maxsize=None)
def packaged_protocol_hash(name: str) -> str | None:
    """The hash of the shipped protocol file ``name`` (what a record measured under it carries), or None when no
    such file ships. Resolving a protocol reads its suite's protocol dataclass, which imports no torch
    (:func:`jembench.protocols.settings_class`); it is done only for names a record actually carries."""
    if name not in shipped_protocols():
        return None
    from .protocols import load_protocol

    return load_protocol(name).hash


def measured_under(record_protocol: dict[str, Any], needed: str) -> bool:
    """Whether a record's ``protocol`` block (name and hash) is the published row's protocol ``needed``: the same
    name and the hash of the packaged protocol file. The one rule by which the leaderboard puts our numbers
    beside a published number and ``jembench check`` compares them."""
    names = {n for n in str(record_protocol.get("name", "")).split("/") if n}
    return bool(needed) and needed in names and packaged_protocol_hash(needed) == record_protocol.get("hash")


def needs_label(needed: str, note: str, provenance: str = "reproduced", produced_by: str = "") -> str:
    """How a published number's protocol reads in a table: its name, ``none (quoted from CODE)`` or
    ``none (closest NAME)``."""
    if needed:
        return needed
    if provenance == "quoted":
        return f"none (quoted from {produced_by})"
    return f"none (closest {closest_protocol(note) or '?'})"


def is_reference(provenance: str, flags: str) -> bool:
    """Whether `jembench check` may pick a published row as a reference automatically: reproduced by a protocol
    and none of the :data:`NOT_A_REFERENCE` flags."""
    return provenance == "reproduced" and not set(flag_list(flags)) & NOT_A_REFERENCE


def metric_is_known(metric: str) -> bool:
    """Whether ``metric`` is a record metric key (:mod:`jembench.metric_keys`) or a published crossover ε."""
    return metric_keys.is_known(metric)


def flag_list(flags: str) -> list[str]:
    """``"a;b"`` → ``["a", "b"]`` (empty string → ``[]``)."""
    return [f for f in str(flags).split(";") if f]


def _decimals(text: str) -> int:
    return len(text.split(".", 1)[1]) if "." in text else 0


def _load_one(path: Path) -> pd.DataFrame:
    df = untrusted.read_csv(path, "published", dtype=str, keep_default_na=False, encoding="utf-8")
    if list(df.columns) != COLUMNS:
        raise JembenchError(f"published file {path} has columns {list(df.columns)}; expected exactly "
                            f"{','.join(COLUMNS)} (see results/published/README.md)")
    problems = []
    values, decimals, steps = [], [], []
    known = shipped_protocols()
    for i, row in df.iterrows():
        where = f"{path.name}:{i + 2}"  # header is line 1
        flags = flag_list(row["flags"])
        for flag in flags:
            if flag not in FLAGS or flag in PROVENANCE_FLAGS | RUN_FLAGS:
                problems.append(f"{where}: unknown flag {flag!r} (known: "
                                f"{', '.join(f for f in FLAGS if f not in PROVENANCE_FLAGS | RUN_FLAGS)}; "
                                f"provenance is its own column)")
        if metric_is_known(row["metric"]):
            problems += [f"{where}: {p}" for p in _protocol_problems(row, known)]
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
    listing = untrusted.walk(folder, suffixes=(".csv",), recursive=False, label="published-numbers folder")
    untrusted.report_skips(listing, f"published-numbers folder {folder}")
    files = listing.files
    if not files:
        raise JembenchError(f"no *.csv files in {folder}; pass the folder that holds the published numbers")
    df = pd.concat([_load_one(f) for f in files], ignore_index=True)
    dup = df.duplicated(["paper", "table", "row", "dataset", "metric"], keep=False)
    if dup.any():
        first = df[dup].iloc[0]
        raise JembenchError(f"published numbers repeat {first['paper']} {first['table']} row {first['row']!r} "
                            f"metric {first['metric']} ({first['source_file']}:{first['line']}); keep one row "
                            f"per number")
    _check_one_provenance_per_number(df)
    df["order"] = range(len(df))
    return df


def _check_one_provenance_per_number(df: pd.DataFrame) -> None:
    """A number printed in several places (a row SADA-JEM copied from JEM, a number both in a table and the text)
    has one provenance and one protocol (or closest protocol) everywhere: same method, dataset, metric and value
    means the same number."""
    closest = df["note"].map(lambda n: closest_protocol(n) or "")
    keyed = df.assign(closest_name=closest)
    for _, g in keyed.groupby(["method", "dataset", "metric", "value"], sort=False):
        if len(g) > 1 and len(g[["provenance", "protocol", "closest_name", "produced_by"]].drop_duplicates()) > 1:
            where = ", ".join(f"{r.source_file}:{r.line} ({r.provenance} {r.protocol or r.closest_name})"
                              for r in g.itertuples())
            raise JembenchError(f"published number {g.iloc[0]['value']:g} ({g.iloc[0]['method']}, "
                                f"{g.iloc[0]['metric']} on {g.iloc[0]['dataset']}) has different provenance or "
                                f"protocols in {where}; one number has one provenance and protocol everywhere")


def cite(paper: str, table: str) -> str:
    """``"SADA-JEM'23 Table 1"``: a short source label for a table cell or a diff row."""
    return f"{PAPER_SHORT.get(paper, paper)} {table}"
