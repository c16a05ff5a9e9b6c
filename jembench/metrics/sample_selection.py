"""Which generated images are scored: the selection rules of the papers' IS / FID code, by confidence.

A pool of images (a replay buffer, fresh SGLD chains) is classified once — ``label = argmax_y f(x)[y]`` and
``confidence = max_y softmax(f(x))[y]``, as the official code does (SADAJEM Task/eval_buffer.py:22-28, JEMPP
eval_jempp.py:279-285) — and a :class:`Selection` picks the images IS and FID / KID are computed on:

``all``            every image (JEM App. B "single": the training buffer of the last checkpoint as it is).
``top``            the most confident images of the whole pool. JEM App. B: "keeping the top 10 percentile samples
                   with the highest p(y|x) values" (the JEM repository holds no IS / FID code).
``per_class_top``  SADA-JEM's ``cond_is_fid`` (Task/eval_buffer.py:17-50) and JEM++'s ``cond_fid``
                   (eval_jempp.py:275-307): group the pool by *predicted* class and keep each class's most
                   confident images; the selection is class 0's (most confident first), then class 1's, ...

How many (``ratio``, the official arithmetic, Task/eval_buffer.py:40-44 / eval_jempp.py:297-301): ``ratio < 1``
keeps ``int(n · ratio)`` (rounded down) of the n candidates (per class for ``per_class_top``), ``ratio >= 1`` keeps
``int(ratio)`` of them, never more than n. SADA-JEM scores IS on ratio .1 and FID on ratio .9 of the same buffer
(eval_sadajem.py:549-550); JEM++'s ``--ratio`` is an integer, images per class (default 100, eval_jempp.py:632).
The most confident are found with ``torch.topk`` on the candidates in pool order — the very call the official
code makes — so ties are broken the same way.

``chunk`` > 0 keeps only the first ``⌊N / chunk⌋ · chunk`` images of the pool: the official code classifies the
buffer in chunks of 100 and drops the remainder (Task/eval_buffer.py:18-23); with a remainder its class masks no
longer match the buffer and it stops with an IndexError (verified on torch 2.x), so jembench's drop is the one
well-defined reading. A 10,000-image buffer is unaffected.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..limits import MAX_IMAGES
from ..schema import Invalid, setting

if TYPE_CHECKING:
    import torch

RULES = ("all", "top", "per_class_top")


@dataclass(frozen=True)
class Selection:
    """How a pool's images are chosen for IS and for FID / KID (a protocol sub-table, e.g. ``[buffer_selection]``)."""

    rule: str = setting("all", choices=RULES, help="all, top (whole pool) or per_class_top (per predicted class)")
    is_ratio: float = setting(1.0, gt=0, le=MAX_IMAGES,
                              help="IS images: < 1 a share int(n*ratio), >= 1 a count int(ratio)")
    fid_ratio: float = setting(0.0, ge=0, le=MAX_IMAGES, help="FID / KID images, same arithmetic; 0 = is_ratio")
    chunk: int = setting(0, ge=0, le=MAX_IMAGES,
                         help="use the first floor(N/chunk)*chunk pool images (official: 100); 0 = all")

    def validate(self) -> None:
        if self.rule == "all" and (self.is_ratio != 1.0 or self.fid_ratio != 0.0):
            raise Invalid("a selection with rule = 'all' takes no is_ratio / fid_ratio; use rule = 'top' or "
                          "'per_class_top'")

    @property
    def same_sets(self) -> bool:
        """True when IS and FID / KID are computed on the same images."""
        return self.rule == "all" or self.fid_ratio in (0.0, self.is_ratio)

    def describe(self) -> str:
        if self.rule == "all":
            return "all images"
        where = "per predicted class" if self.rule == "per_class_top" else "of the pool"
        ratios = f"IS {_ratio_text(self.is_ratio)}" + ("" if self.same_sets else
                                                       f", FID/KID {_ratio_text(self.fid_ratio)}")
        return f"most confident {where} ({ratios})"


def _ratio_text(ratio: float) -> str:
    return f"{ratio:g} share" if ratio < 1 else f"up to {int(ratio)}"


def top_k_count(n: int, ratio: float) -> int:
    """How many of ``n`` candidates a ratio keeps: ``int(n·ratio)`` for ratio < 1, else ``int(ratio)``, at most n
    (SADAJEM Task/eval_buffer.py:40-44, JEMPP eval_jempp.py:297-301)."""
    k = int(n * ratio) if ratio < 1 else int(ratio)
    return max(0, min(k, n))


def select(confidence: torch.Tensor, label: torch.Tensor, rule: str, ratio: float, n_classes: int,
           chunk: int = 0) -> torch.Tensor:
    """Indices into the pool of the images ``rule`` keeps with ``ratio`` (see the module docstring), in the
    official order: ``top`` most confident first; ``per_class_top`` class by class, most confident first."""
    import torch  # here, not at the top: protocols read :class:`Selection` without torch

    if rule not in RULES:
        raise ValueError(f"unknown selection rule {rule!r}; use one of {', '.join(RULES)}")
    n = len(confidence)
    if chunk:
        n -= n % chunk
    confidence, label = confidence[:n], label[:n]
    if rule == "all":
        return torch.arange(n)
    if rule == "top":
        return torch.topk(confidence, top_k_count(n, ratio)).indices
    parts = []
    for c in range(n_classes):
        members = (label == c).nonzero().flatten()
        parts.append(members[torch.topk(confidence[members], top_k_count(len(members), ratio)).indices])
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long)
