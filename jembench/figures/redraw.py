"""Draw a record's figures again from its ``details`` — to restyle or relabel committed records without running
them again (their numbers stay as they are)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import JembenchError
from ..records import dataset_label, set_label
from .labels import plain
from .ood_histograms import score_histograms
from .reliability import reliability_diagram
from .robustness_curves import robustness_figures

#: most bins a stored histogram may have (the OOD protocols use 50–100)
MAX_BINS = 10_000


def _listed(names: list[str], suffix: str, default: str) -> str:
    """The file name the record lists for a figure (the first ending in ``suffix``), else ``default``. A name
    that is not a plain ``.png`` file name beside the record (``../x.png``, ``/abs/x.png``) is refused: a record
    is untrusted, and redrawing must never write outside its folder."""
    name = next((n for n in names if n.endswith(suffix)), default)
    if Path(name).name != name or not name.endswith(".png") or name == ".png" or "\\" in name:
        raise JembenchError(f"the record lists figure {plain(repr(name), 80)}, which is not a PNG file name beside "
                            f"the record; remove the entry or regenerate the record")
    return name


def _counts(value: Any, bins: int) -> bool:
    return isinstance(value, list) and len(value) == bins and all(
        isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in value)


def _check_histograms(data: Any) -> None:
    """Refuse stored histograms that are not what :func:`~jembench.figures.ood_histograms.histogram_data`
    writes (a record file is untrusted): ValueError naming the first bad field."""
    if not isinstance(data, Mapping) or not isinstance(data.get("sets"), Mapping):
        raise ValueError("'sets' is missing")
    bins = data.get("bins")
    if not isinstance(bins, int) or not 1 <= bins <= MAX_BINS:
        raise ValueError(f"'bins' is {bins!r}, not 1..{MAX_BINS}")
    for key in ("n_in", "in_nonfinite"):
        if not isinstance(data.get(key), int) or data[key] < 0:
            raise ValueError(f"{key!r} is not a count")
    for name, panel in data["sets"].items():
        lo_hi = panel.get("range") if isinstance(panel, Mapping) else None
        if not (isinstance(lo_hi, list) and len(lo_hi) == 2 and all(isinstance(v, (int, float)) and math.isfinite(v)
                                                                    for v in lo_hi) and lo_hi[0] < lo_hi[1]):
            raise ValueError(f"set {name!r}: 'range' is not [low, high]")
        if not (_counts(panel.get("in"), bins) and _counts(panel.get("out"), bins)):
            raise ValueError(f"set {name!r}: 'in'/'out' are not {bins} counts")
        if not all(isinstance(panel.get(k), int) and panel[k] >= 0 for k in ("n", "nonfinite")):
            raise ValueError(f"set {name!r}: 'n'/'nonfinite' are not counts")


def _ood(record: Mapping[str, Any], folder: Path, names: list[str]) -> list[str]:
    """The OOD histograms of a record that stores them (``details["histograms"]``, one figure per score)."""
    details = record["details"]
    stored = details.get("histograms")
    if not stored:
        return []
    written = []
    for score, data in stored.items():
        _check_histograms(data)
        name = _listed(names, f"_hist_{score}.png", f"ood_hist_{score}.png")
        aurocs = {s: ((details.get("sets") or {}).get(s, {}).get("scores", {}).get(score, {}).get("auroc"))
                  for s in data["sets"]}
        score_histograms(data, folder / name, label=str((details.get("scores") or {}).get(score, score)),
                         in_name=str(record.get("dataset", "")), in_display=dataset_label(dict(record)),
                         aurocs={s: float(a) for s, a in aurocs.items() if isinstance(a, (int, float))},
                         set_labels={s: set_label(dict(record), s) for s in data["sets"]})
        written.append(name)
    return written


def redraw(record: Mapping[str, Any], folder: str | Path) -> list[str]:
    """Draw the figures of a calibration, robustness or OOD record again from its ``details`` into ``folder``,
    under the names its ``figures`` lists; returns the PNG names written. OOD histograms are drawn from the binned
    data the OOD suite stores (``details["histograms"]``; older records lack it), sample grids would need the
    images, which records do not hold: for those nothing is drawn. A malformed record is one clear error naming
    it."""
    folder, names = Path(folder), [str(n) for n in record.get("figures") or []]
    model, dataset = str(record["model"]["name"]), str(record.get("dataset", ""))
    display = dataset_label(dict(record))  # stored once; older records: where they kept it
    suite = record.get("suite")
    try:
        if suite == "calibration" and names:
            name = _listed(names, "_reliability.png", names[0])
            reliability_diagram(record["details"]["bins"], folder / name, ece=record["metrics"]["ece"],
                                model=model, dataset=dataset, dataset_display=display)
            return [name]
        if suite == "robustness":
            def path(suffix: str) -> Path:
                return folder / _listed(names, f"_{suffix}.png", f"robustness_{suffix}.png")

            return robustness_figures(record["details"], model, dataset, path, dataset_display=display)
        if suite == "ood":
            return _ood(record, folder, names)
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise JembenchError(f"{suite} record of {plain(model)} has malformed details ({type(exc).__name__}: "
                            f"{plain(exc, 80)}); regenerate it with `jembench eval --suite {suite}`") from None
    return []
