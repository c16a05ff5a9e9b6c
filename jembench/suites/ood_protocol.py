"""The OOD suite's protocol (:mod:`jembench.suites.ood`) and what a ``sets`` entry means — importable without
torch: the results layer resolves protocols, and their hashes, without it (:func:`jembench.protocols.settings_class`).
The image batches of each set: :mod:`jembench.suites.ood_sets`.

An entry is a name or a table (TOML inline table)::

    sets = ["svhn", "uniform", "constant", "interp", "folder:../shared/data/svhn-test-10k",
            { folder = "../shared/data/celeba-32", name = "celeba6k", label = "CelebA (6k subset, 32×32)" },
            { dataset = "celeba", resize = "shorter-side", label = "CelebA (test split, 3×39×32)" }]

  ``dataset``  a registered dataset (``svhn``, ``cifar100``, ``celeba``, ...), a synthetic set (``uniform``,
               ``constant``, ``interp``) or ``folder:PATH``;  ``folder = "PATH"`` is short for
               ``dataset = "folder:PATH"``. A folder needs only ``PATH/test/<class>/<image>`` (one class folder
               is enough; no train split). Relative paths are resolved against the working directory.
  ``name``     the set's name in metric keys (``auroc/<name>/<score>``) and in ``details.sets``: lower-case
               letters, digits, ``-_.``; default: the dataset's name, a folder's base name (lower-cased).
  ``label``    how every table, figure and the record name it; default: the registry's label (``SVHN``,
               ``CIFAR-100``), a folder's base name, ``Uniform`` / ``Constant`` / ``Interp``.
  ``resize``   how images of another size reach the network: ``"crop"`` (default: shorter side to the
               network's size, then a centre crop) or ``"shorter-side"`` (shorter side only, aspect kept: the
               official OOD code's ``tr.Resize(32)`` — JEM eval_wrn_ebm.py:269-274, JEM++ eval_jempp.py:400-405,
               SADA-JEM eval_sadajem.py:350-354; 178×218 CelebA faces become 3×39×32 inputs). CelebA from the
               registry is resized on the PIL image exactly as the official transform
               (:func:`jembench.data.celeba_transform`); other sets with images of another size by torchvision's
               antialiased tensor resize (within about 1/255 of PIL's).
A plain string is kept as written in the protocol table (its name and label are derived); a table is stored with
every key filled in, so the protocol hash covers the names and labels records use.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .. import catalog
from ..catalog import PAPER_OOD_SETS
from ..limits import MAX_BATCH, MAX_BINS, MAX_IMAGES, MAX_SIGMA
from ..metrics.ood_scores import SCORES
from ..schema import Invalid, setting
from . import ForwardSettings

RESIZE_MODES = ("crop", "shorter-side")
INTERP_PAIRS = ("random", "consecutive-batches")
_ENTRY_KEYS = ("dataset", "folder", "name", "label", "resize")
_NAME = re.compile(r"[a-z0-9][a-z0-9_.\-]*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_ENTRY_HELP = ('a set name ("svhn", "uniform", "folder:PATH") or a table { folder = "PATH", label = "...", '
               'name = "..." }')


@dataclass(frozen=True)
class OODSet:
    """One resolved ``sets`` entry (see the module docstring)."""

    name: str
    label: str
    source: str  # uniform | constant | interp | a registered dataset | folder:PATH
    resize: str = "crop"

    @property
    def synthetic(self) -> bool:
        return self.source in catalog.SYNTHETIC_OOD


def _check_source(source: Any) -> str:
    if not isinstance(source, str):
        raise ValueError(f"must name a set with a string, not {type(source).__name__}")
    known = catalog.dataset_names()
    if source in catalog.SYNTHETIC_OOD or source in known or (source.startswith("folder:") and len(source) > 7):
        return source
    raise ValueError(f"is not an OOD set; use {', '.join(catalog.SYNTHETIC_OOD)}, a dataset ({', '.join(known)}), "
                     f"folder:PATH or a table {{ folder = \"PATH\", label = \"...\" }}")


def default_name(source: str) -> str:
    """A set's metric-key name when the entry gives none: the dataset's name, a folder's base name (lower case,
    ASCII)."""
    if not source.startswith("folder:"):
        return source
    text = catalog.slug(source).lower()
    return "".join(c if c.isascii() and (c.isalnum() or c in "-_.") else "-" for c in text).strip(".-")


def _check_text(value: Any, key: str, pattern: re.Pattern | None = None) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"must give {key} as a non-empty string")
    if pattern is not None and not pattern.fullmatch(value):
        raise ValueError(f"has {key} = {value!r}; a name is lower-case letters, digits and -_. (it goes into "
                         f"metric keys: auroc/<name>/<score>)")
    if _CONTROL.search(value) or len(value) > 120:
        raise ValueError(f"has {key} = {value!r}; use printable text of at most 120 characters")
    return value


def set_entry(value: Any) -> str | dict[str, str]:
    """One ``sets`` item checked and normalised (the protocol field's ``convert``): a string as written, a table
    with ``dataset``, ``name``, ``label`` and ``resize`` filled in. Idempotent (a normalised table passes)."""
    if isinstance(value, str):
        source = _check_source(value)
        if not _NAME.fullmatch(default_name(source)):
            raise ValueError(f"gives the folder base name {catalog.slug(source)!r}, which is not a usable metric-key "
                             f"name; write {{ folder = \"...\", name = \"...\" }}")
        return source
    if not isinstance(value, dict):
        raise ValueError(f"must be {_ENTRY_HELP}")
    unknown = sorted(set(value) - set(_ENTRY_KEYS))
    if unknown:
        raise ValueError(f"has unknown key(s) {', '.join(unknown)}; a set table takes {', '.join(_ENTRY_KEYS)}")
    if ("dataset" in value) == ("folder" in value):
        raise ValueError('must give exactly one of dataset = "..." or folder = "PATH"')
    source = _check_source("folder:" + _check_text(value["folder"], "folder") if "folder" in value
                           else value["dataset"])
    resize = value.get("resize", "crop")
    if resize not in RESIZE_MODES:
        raise ValueError(f"has resize = {resize!r}; use one of {', '.join(RESIZE_MODES)}")
    name = _check_text(value.get("name") or default_name(source), "name", _NAME)
    label = _check_text(value.get("label") or catalog.label(source), "label")
    return {"dataset": source, "name": name, "label": label, "resize": resize}


def resolve_entry(item: str | dict[str, str]) -> OODSet:
    """A normalised ``sets`` item (:func:`set_entry`) as an :class:`OODSet`."""
    if isinstance(item, str):
        return OODSet(default_name(item), catalog.label(item), item)
    return OODSet(item["name"], item["label"], item["dataset"], item["resize"])


@dataclass(frozen=True)
class OODProtocol(ForwardSettings):
    """The OOD protocol; defaults = the paper setting (JEM Table 7 sets, the three JEM scores, whole splits)."""

    sets: tuple[Any, ...] = setting(PAPER_OOD_SETS, nonempty=True, convert=set_entry,
                                    help="OOD sets: datasets, uniform / constant / interp, folder:PATH, or tables "
                                         "{ folder = PATH, label = ..., name = ..., resize = ... }")
    scores: tuple[str, ...] = setting(("log_px", "max_py", "grad_norm"), nonempty=True,
                                      help="registered OOD scores (jembench.metrics.ood_scores)")
    n_in: int = setting(0, ge=0, le=MAX_IMAGES,
                        help="in-distribution test images, chosen by seed; 0 = the whole test split")
    n_out: int = setting(0, ge=0, le=MAX_IMAGES,
                         help="images per OOD set; 0 = whole test split (synthetic: as many as n_in)")
    input_noise: float = setting(0.0, ge=0, le=MAX_SIGMA, help="sigma of Gaussian noise added to every input")
    interp_lambda: float = setting(0.5, ge=0, le=1, help="interp = lambda*x_a + (1-lambda)*x_b")
    interp_pairs: str = setting("random", choices=INTERP_PAIRS,
                                help="random: seeded pairs a != b of clean test images; consecutive-batches: the "
                                     "official consecutive batches of the shuffled, noised test loader")
    interp_batch: int = setting(100, ge=1, le=MAX_BATCH,
                                help="batch of the consecutive-batches interp (official loader: 100)")
    shuffle_out: bool = setting(False, help="stream each OOD set in a seeded random order (the official fake "
                                            "loaders shuffle; matters only for bn_mode train)")
    hist_bins: int = setting(100, ge=1, le=MAX_BINS, help="bins of the score histograms")

    def validate(self) -> None:
        for s in self.scores:
            if s not in SCORES:
                raise Invalid(f"scores has {s!r}; use registered scores: {', '.join(SCORES)}")
        entries = self.entries()
        for what in ("name", "label"):
            values = [getattr(e, what) for e in entries]
            dup = sorted({v for v in values if values.count(v) > 1})
            if dup:
                raise Invalid(f"sets: {len(values) - len(set(values)) + 1} sets share the {what} {dup[0]!r}; give "
                              f"each set its own {what} (a table {{ ..., {what} = \"...\" }})")

    def entries(self) -> tuple[OODSet, ...]:
        """The ``sets`` as :class:`OODSet` (name, label, source, resize)."""
        return tuple(resolve_entry(item) for item in self.sets)


PROTOCOL = OODProtocol
