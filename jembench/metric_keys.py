"""Metric keys: the one place that builds and parses the keys of a record's ``metrics`` (torch-free).

Keys are ``/``-separated and lower case; values are floats (units as the papers print them). The suites build
keys with the functions below; :mod:`jembench.published` validates CSV rows with :func:`is_known`; the leaderboard
and the robustness tables parse them with :func:`parse`; :mod:`jembench.check` validates tolerance patterns with
:func:`pattern_is_known`. The keys each suite writes:

* accuracy: ``accuracy`` (%), ``nll``, ``n``
* calibration: ``ece`` (%), ``mce`` (%), ``nll``, ``brier``, ``accuracy`` (%), ``n``
* ood: ``auroc/<set>/<score>``, ``aupr/<set>/<score>``, ``fpr95/<set>/<score>`` (fractions in [0, 1]);
  score = a registered OOD score (:data:`jembench.metrics.ood_scores.SCORES`: ``log_px``, ``max_py``,
  ``grad_norm``); set = a dataset, a synthetic set (``uniform``, ``constant``, ``interp``) or ``folder:PATH``
* generation: ``is/<source>``, ``fid/<source>``, ``kid/<source>``; source ∈ :data:`SOURCES`
* robustness: ``clean_acc/k<K>`` (%), ``robust_acc/<norm>/k<K>/eps=<eps>`` (%, eps in [0, 1] pixel units,
  ``%g``-formatted; norm ∈ :data:`NORMS`), ``boundary/median_l2/k<K>``, ``pointwise/median_l0/k<K>``
* published: ``crossover_eps255/<norm>/k<K>/vs=<comparator>`` (JEM App. F statements; no suite writes them)
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass

#: scalar metrics (accuracy and calibration suites)
SCALARS = ("accuracy", "ece", "mce", "nll", "brier", "n")
#: detection metrics of the OOD suite, per (set, score)
OOD_METRICS = ("auroc", "aupr", "fpr95")
#: sample-quality metrics of the generation suite, per sample source
FIDELITY_METRICS = ("is", "fid", "kid")
#: sample sources of the generation suite (``ensemble`` only with ``--ensemble``)
SOURCES = ("buffer", "fresh", "conditional", "ensemble")
#: threat models of PGD, in [0, 1] pixel units, and how tables print them
NORMS = ("linf", "l2")
NORM_LABELS = {"linf": "L∞", "l2": "L2"}
#: the first segment of every key family (what a tolerance pattern may start with)
HEADS = SCALARS + OOD_METRICS + FIDELITY_METRICS + ("clean_acc", "robust_acc", "boundary", "pointwise",
                                                   "crossover_eps255")


# ------------------------------------------------------------------------------------------------ builders
def ood(metric: str, ood_set: str, score: str) -> str:
    """An OOD key: ``ood("auroc", "svhn", "log_px")`` → ``auroc/svhn/log_px``."""
    return f"{metric}/{ood_set}/{score}"


def fidelity(metric: str, source: str) -> str:
    """A generation key: ``fidelity("fid", "buffer")`` → ``fid/buffer``."""
    return f"{metric}/{source}"


def eps_text(eps: float) -> str:
    """ε as it appears in keys: ``%g`` of the value in [0, 1] pixel units (8/255 → ``0.0313725``)."""
    return f"{eps:g}"


def eps_label(eps: float) -> str:
    """ε as tables print it: a multiple of 1/255 as a fraction (``8/255``) unless it is a short decimal (``0.5``,
    ``1``, ``2`` stay as they are), otherwise ``%g``."""
    text = f"{eps:g}"
    k = eps * 255
    short = len(text.split(".")[1]) <= 2 if "." in text else "e" not in text
    if eps > 0 and not short and abs(k - round(k)) < 1e-4 * max(1.0, k):
        return f"{round(k)}/255"
    return text


def robust_acc(norm: str, k: int, eps: float) -> str:
    """A robust-accuracy key: ``robust_acc("linf", 10, 8 / 255)`` → ``robust_acc/linf/k10/eps=0.0313725``."""
    return f"robust_acc/{norm}/k{k}/eps={eps_text(eps)}"


def clean_acc(k: int) -> str:
    """The clean accuracy through ``k`` refinement steps: ``clean_acc/k<k>``."""
    return f"clean_acc/k{k}"


def boundary_median_l2(k: int) -> str:
    """The boundary attack's median L2 distance at ``k`` refinement steps: ``boundary/median_l2/k<k>``."""
    return f"boundary/median_l2/k{k}"


def pointwise_median_l0(k: int) -> str:
    """The pointwise attack's median L0 distance at ``k`` refinement steps: ``pointwise/median_l0/k<k>``."""
    return f"pointwise/median_l0/k{k}"


# ------------------------------------------------------------------------------------------------- parsing
@dataclass(frozen=True)
class Key:
    """A parsed key: ``family`` (the key shape) and its parts; fields a family does not have are None."""

    family: str  # scalar | ood | fidelity | clean_acc | robust_acc | boundary | pointwise | crossover
    metric: str  # the first segment (accuracy, auroc, fid, robust_acc, ...)
    ood_set: str | None = None
    score: str | None = None
    source: str | None = None
    norm: str | None = None
    k: int | None = None
    eps: str | None = None  # as written in the key (``%g``), so it round-trips
    versus: str | None = None

    @property
    def eps_value(self) -> float | None:
        return None if self.eps is None else float(self.eps)


_NAME = r"[a-z0-9_:.\-/]+?"
_PATTERNS = [
    ("ood", re.compile(rf"(?P<metric>{'|'.join(OOD_METRICS)})/(?P<ood_set>{_NAME})/(?P<score>[a-z0-9_]+)")),
    ("fidelity", re.compile(rf"(?P<metric>{'|'.join(FIDELITY_METRICS)})/(?P<source>{'|'.join(SOURCES)})")),
    ("clean_acc", re.compile(r"(?P<metric>clean_acc)/k(?P<k>\d+)")),
    ("robust_acc", re.compile(rf"(?P<metric>robust_acc)/(?P<norm>{'|'.join(NORMS)})/k(?P<k>\d+)/"
                              r"eps=(?P<eps>[0-9.e+\-]+)")),
    ("boundary", re.compile(r"(?P<metric>boundary)/median_l2/k(?P<k>\d+)")),
    ("pointwise", re.compile(r"(?P<metric>pointwise)/median_l0/k(?P<k>\d+)")),
    ("crossover", re.compile(rf"(?P<metric>crossover_eps255)/(?P<norm>{'|'.join(NORMS)})/k(?P<k>\d+)/"
                             r"vs=(?P<versus>[a-z_]+)")),
]


def parse(key: str) -> Key | None:
    """The parts of ``key``, or None when it has none of the shapes above. OOD scores are checked against the
    score registry (:mod:`jembench.metrics.ood_scores`), so ``auroc/svhn/nonsense`` is not a key."""
    if key in SCALARS:
        return Key("scalar", key)
    for family, pattern in _PATTERNS:
        m = pattern.fullmatch(key)
        if m:
            parts = m.groupdict()
            if family == "ood" and not _known_score(parts["score"]):
                return None
            if parts.get("k") is not None:
                parts["k"] = int(parts["k"])
            return Key(family, **parts)
    return None


def is_known(key: str) -> bool:
    """Whether ``key`` has one of the shapes of the module docstring."""
    return parse(key) is not None


def pattern_is_known(pattern: str) -> bool:
    """Whether a tolerance pattern (an exact key or a glob) can match some key: its first segment must be a
    metric family (``auroc/*``, ``robust_acc/linf/*``, ``accuracy``) — so a misspelt pattern is an error, not a
    rule that silently matches nothing."""
    head = pattern.split("/", 1)[0]
    return any(fnmatch.fnmatchcase(h, head) for h in HEADS)


def _known_score(name: str) -> bool:
    from .metrics.ood_scores import SCORES

    return name in SCORES
