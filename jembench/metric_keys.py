"""Metric keys and the metric table: the one place that says what each metric of a record is (torch-free).

Keys are ``/``-separated and lower case; values are floats (units as the papers print them). The first segment of
a key names its metric (``accuracy``, ``auroc``, ``robust_acc``, ...), and :data:`SPECS` holds one
:class:`MetricSpec` per metric: the key shape, display label, direction (which way is better), decimals in tables,
valid range, standard-error rule and the suites that write it. Every reader takes these facts from here — the
suites' tables, :mod:`jembench.records` (a value outside its range makes a record unusable), :mod:`jembench.check`
(direction and error rule), :mod:`jembench.leaderboard` (labels, arrows, decimals), :mod:`jembench.published`
(which suites write a metric), the figures — so adding a metric is one :class:`MetricSpec` in :data:`SPECS` (plus
the code that computes it). The keys each suite writes:

  accuracy     ``accuracy`` (%), ``nll``, ``n``
  calibration  ``ece`` (%), ``mce`` (%), ``nll``, ``brier``, ``accuracy`` (%), ``n``
  ood          ``auroc/<set>/<score>``, ``aupr/<set>/<score>``, ``fpr95/<set>/<score>`` (fractions in [0, 1]);
               score = a registered OOD score (:data:`jembench.metrics.ood_scores.SCORES`: ``log_px``, ``max_py``,
               ``grad_norm``); set = a dataset, a synthetic set (``uniform``, ``constant``, ``interp``) or
               ``folder:PATH``
  generation   ``is/<source>``, ``fid/<source>``, ``kid/<source>``; source ∈ :data:`SOURCES`
  robustness   ``clean_acc/k<K>`` (%), ``robust_acc/<norm>/k<K>/eps=<eps>`` (%, eps in [0, 1] pixel units,
               ``%g``-formatted; norm ∈ :data:`NORMS`), ``boundary/attacked_median_l2/k<K>``,
               ``pointwise/attacked_median_l0/k<K>`` (medians over the attacked inputs only; NaN when too few were)
  published    ``crossover_eps255/<norm>/k<K>/vs=<comparator>`` (JEM App. F statements; no suite writes them)
"""

from __future__ import annotations

import fnmatch
import math
import re
from dataclasses import dataclass
from typing import Any

#: key shapes (what follows a metric's name in its keys), checked by :func:`parse`
SHAPES = ("scalar", "ood", "fidelity", "clean_acc", "robust_acc", "boundary", "pointwise", "crossover")
#: which way is better
DIRECTIONS = ("higher", "lower", "none")
#: standard-error rules (:mod:`jembench.sampling_error`); ``fixed``: none is derived
SE_RULES = ("fixed", "binomial", "hanley-mcneil")
#: the largest sample count a record may claim (far above any test split; a larger n is not a count of inputs)
MAX_N = 10 ** 8


@dataclass(frozen=True)
class MetricSpec:
    """Everything jembench knows about one metric, i.e. one first key segment (``head``).

    ``low`` / ``high``: the valid range (inclusive). A value outside it — or an infinity, unless ``infinite`` says
    +∞ is a legitimate value (a median attack distance when most inputs were never broken) — makes the record that
    holds it unusable. NaN is allowed everywhere: it means "not measured" (e.g. the AUROC of a set whose scores
    were NaN) and is shown as NaN, never compared as a number.
    ``se``: the standard-error rule of :mod:`jembench.sampling_error` that applies (``fixed``: none derived)."""

    head: str
    shape: str
    label: str
    direction: str
    decimals: int
    low: float
    high: float
    se: str = "fixed"
    suites: tuple[str, ...] = ()
    infinite: bool = False
    whole: bool = False  # a count: whole numbers only
    percent: bool = False  # stored in % (a proportion × 100)

    def __post_init__(self) -> None:
        if self.shape not in SHAPES or self.direction not in DIRECTIONS or self.se not in SE_RULES:
            raise ValueError(f"metric {self.head!r}: shape, direction or se rule unknown")

    @property
    def arrow(self) -> str:
        """``↑`` (higher is better), ``↓`` (lower is better) or ``""``."""
        return {"higher": "↑", "lower": "↓"}.get(self.direction, "")

    @property
    def column(self) -> str:
        """The label with its arrow, as a table header prints it (``Acc % ↑``)."""
        return f"{self.label} {self.arrow}".rstrip()

    def format(self, value: float | None) -> str:
        """``value`` with this metric's decimals (``nan`` for NaN, ``-`` for None)."""
        if value is None:
            return "-"
        return "nan" if math.isnan(value) else f"{value:.{self.decimals}f}"

    def valid(self, value: float) -> bool:
        """Whether ``value`` is a legitimate value of this metric (NaN = not measured: legitimate)."""
        if math.isnan(value):
            return True
        if math.isinf(value):
            return self.infinite and value > 0
        return self.low <= value <= self.high and (not self.whole or value == int(value))

    def range_text(self) -> str:
        """The valid values in words: ``[0, 100]``, ``a whole number in [1, 1e+08]``, ``[0, 1e+06] or +inf``."""
        return (("a whole number in " if self.whole else "") + f"[{self.low:g}, {self.high:g}]"
                + (" or +inf" if self.infinite else ""))


_PERCENT, _FRACTION = (0.0, 100.0), (0.0, 1.0)
_ACC = ("accuracy", "calibration")
#: the metric table, by first key segment, in the order tables list metrics
SPECS: dict[str, MetricSpec] = {s.head: s for s in (
    # scalars of the accuracy and calibration suites
    MetricSpec("accuracy", "scalar", "Acc %", "higher", 2, *_PERCENT, se="binomial", suites=_ACC, percent=True),
    MetricSpec("ece", "scalar", "ECE %", "lower", 2, *_PERCENT, suites=("calibration",), percent=True),
    MetricSpec("mce", "scalar", "MCE %", "lower", 2, *_PERCENT, suites=("calibration",), percent=True),
    MetricSpec("nll", "scalar", "NLL", "lower", 4, 0.0, 1e6, suites=_ACC),
    MetricSpec("brier", "scalar", "Brier", "lower", 4, 0.0, 2.0, suites=("calibration",)),  # multi-class sum form
    MetricSpec("n", "scalar", "n", "none", 0, 1.0, MAX_N, suites=_ACC, whole=True),
    # OOD detection, per (set, score)
    MetricSpec("auroc", "ood", "AUROC", "higher", 3, *_FRACTION, se="hanley-mcneil", suites=("ood",)),
    MetricSpec("aupr", "ood", "AUPR-In", "higher", 3, *_FRACTION, suites=("ood",)),
    MetricSpec("fpr95", "ood", "FPR@95%TPR", "lower", 3, *_FRACTION, suites=("ood",)),
    # sample quality, per sample source. IS = exp(E KL) lies in [1, classes of the feature network] (1,000 for
    # Inception; 0 leaves room for rounding); FID >= 0 up to the rounding of a matrix square root; KID is an
    # unbiased MMD estimate and may be slightly negative. The upper bounds only exclude absurd values.
    MetricSpec("is", "fidelity", "IS", "higher", 2, 0.0, 1000.0, suites=("generation",)),
    MetricSpec("fid", "fidelity", "FID", "lower", 2, -1e-3, 1e6, suites=("generation",)),
    MetricSpec("kid", "fidelity", "KID", "lower", 4, -1.0, 1e3, suites=("generation",)),
    # robustness (accuracies in %, over details.n inputs; distances in [0, 1] pixel units / pixels, medians over
    # the attacked inputs: +inf when most of those resisted, NaN when too few were attacked)
    MetricSpec("clean_acc", "clean_acc", "Clean %", "higher", 1, *_PERCENT, se="binomial", suites=("robustness",),
               percent=True),
    MetricSpec("robust_acc", "robust_acc", "Robust %", "higher", 1, *_PERCENT, se="binomial",
               suites=("robustness",), percent=True),
    MetricSpec("boundary", "boundary", "Boundary med. L2", "higher", 3, 0.0, 1e6, suites=("robustness",),
               infinite=True),
    MetricSpec("pointwise", "pointwise", "Pointwise med. L0", "higher", 0, 0.0, 1e9, suites=("robustness",),
               infinite=True),
    # published statements only (JEM App. F): the ε above which a model is more robust than a comparator; no suite
    # writes them, so no protocol reproduces them
    MetricSpec("crossover_eps255", "crossover", "crossover ε", "none", 1, 0.0, 1e5),  # read off a figure: no suite
)}


def spec(key: str) -> MetricSpec | None:
    """The :class:`MetricSpec` of a metric key (``auroc/svhn/log_px`` → the AUROC spec), or None when ``key`` has
    none of the known shapes."""
    parsed = parse(key)
    return None if parsed is None else SPECS[parsed.metric]


def heads(shape: str | None = None) -> tuple[str, ...]:
    """Every metric name (first key segment) in table order, or those of one key shape (``heads("ood")`` →
    ``("auroc", "aupr", "fpr95")``)."""
    return tuple(h for h, s in SPECS.items() if shape is None or s.shape == shape)


#: sample sources of the generation suite (``ensemble`` only with ``--ensemble``)
SOURCES = ("buffer", "fresh", "conditional", "ensemble")
#: threat models of PGD, in [0, 1] pixel units, and how tables print them
NORMS = ("linf", "l2")
NORM_LABELS = {"linf": "L∞", "l2": "L2"}


# ------------------------------------------------------------------------------------------------ builders
def ood(metric: str, ood_set: str, score: str) -> str:
    return f"{metric}/{ood_set}/{score}"


def fidelity(metric: str, source: str) -> str:
    return f"{metric}/{source}"


def eps_text(eps: float) -> str:
    """ε as it appears in keys: ``%g`` of the value in [0, 1] pixel units (8/255 → ``0.0313725``)."""
    return f"{eps:g}"


def eps_label(eps: float, norm: str = "linf") -> str:
    """ε as tables, figures and the suites print it — the one formatter. L∞: a multiple of 1/255 as a fraction
    (``8/255``; also from a key's ``%g`` text such as ``0.0313725``, hence the 1e-4 relative tolerance) unless it is
    a short decimal (``0``, ``0.5``, ``1`` stay as they are); otherwise, and for L2 (``0.5``), ``%g``."""
    text = f"{eps:g}"
    if norm != "linf":
        return text
    k = eps * 255
    short = len(text.split(".")[1]) <= 2 if "." in text else "e" not in text
    if eps > 0 and not short and abs(k - round(k)) < 1e-4 * max(1.0, k):
        return f"{round(k)}/255"
    return text


def robust_acc(norm: str, k: int, eps: float) -> str:
    return f"robust_acc/{norm}/k{k}/eps={eps_text(eps)}"


def clean_acc(k: int) -> str:
    return f"clean_acc/k{k}"


def boundary_median_l2(k: int) -> str:
    """The boundary attack's median L2 distance over the attacked inputs
    (:func:`jembench.suites.robustness.summary.attacked_median`)."""
    return f"boundary/attacked_median_l2/k{k}"


def pointwise_median_l0(k: int) -> str:
    """The pointwise attack's median L0 distance over the attacked inputs."""
    return f"pointwise/attacked_median_l0/k{k}"


# ------------------------------------------------------------------------------------------------- parsing
@dataclass(frozen=True)
class Key:
    """A parsed key: ``family`` (the key shape) and its parts; fields a family does not have are None."""

    family: str  # the key shape: scalar | ood | fidelity | clean_acc | robust_acc | boundary | pointwise | crossover
    metric: str  # the first segment (accuracy, auroc, fid, robust_acc, ...): a key of SPECS
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
_K = r"k(?P<k>\d+)"
_NORM = rf"(?P<norm>{'|'.join(NORMS)})"
#: what follows the metric's name in a key, per shape
_TAILS = {
    "ood": re.compile(rf"(?P<ood_set>{_NAME})/(?P<score>[a-z0-9_]+)"),
    "fidelity": re.compile(rf"(?P<source>{'|'.join(SOURCES)})"),
    "clean_acc": re.compile(_K),
    "robust_acc": re.compile(rf"{_NORM}/{_K}/eps=(?P<eps>[0-9.e+\-]+)"),
    "boundary": re.compile(rf"attacked_median_l2/{_K}"),
    "pointwise": re.compile(rf"attacked_median_l0/{_K}"),
    "crossover": re.compile(rf"{_NORM}/{_K}/vs=(?P<versus>[a-z_]+)"),
}


def parse(key: str) -> Key | None:
    """The parts of ``key``, or None when it has none of the shapes above: its first segment must be a metric of
    :data:`SPECS` and the rest that metric's shape. OOD scores are checked against the score registry
    (:mod:`jembench.metrics.ood_scores`), so ``auroc/svhn/nonsense`` is not a key."""
    head, _, tail = key.partition("/")
    found = SPECS.get(head)
    if found is None:
        return None
    if found.shape == "scalar":
        return Key("scalar", head) if not tail else None
    m = _TAILS[found.shape].fullmatch(tail)
    if m is None:
        return None
    parts: dict[str, Any] = m.groupdict()
    if found.shape == "ood" and not _known_score(parts["score"]):
        return None
    if parts.get("k") is not None:
        parts["k"] = int(parts["k"])
    return Key(found.shape, head, **parts)


def is_known(key: str) -> bool:
    """Whether ``key`` has one of the shapes of the module docstring."""
    return parse(key) is not None


def pattern_is_known(pattern: str) -> bool:
    """Whether a tolerance pattern (an exact key or a glob) can match some key: its first segment must be a
    metric family (``auroc/*``, ``robust_acc/linf/*``, ``accuracy``) — so a misspelt pattern is an error, not a
    rule that silently matches nothing."""
    return bool(pattern_heads(pattern))


def pattern_heads(pattern: str) -> list[str]:
    """The metrics (first key segments) a tolerance pattern's first segment can match."""
    head = pattern.split("/", 1)[0]
    return [h for h in SPECS if fnmatch.fnmatchcase(h, head)]


def _known_score(name: str) -> bool:
    from .metrics.ood_scores import SCORES

    return name in SCORES
