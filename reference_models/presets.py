"""What every method's presets share: per-dataset adjustments and the K (= M) SGLD-step variants.

Preset names: ``tiny`` (a CPU run of minutes), ``paper`` (the paper's / official code's default) and, for the
methods whose tables vary the number of SGLD steps, ``paper-k5``, ``paper-k10``, ``paper-k20`` (``paper`` with
K = M = 5 / 10 / 20 steps; JEM++ calls it M, SADA-JEM K).
"""

from __future__ import annotations

STEP_VARIANTS = {"paper-k5": 5, "paper-k10": 10, "paper-k20": 20}
NO_FLIP = ("svhn", "digits")  # digits must not be mirrored (JEM / JEM++ / SADA-JEM turn flips off on SVHN)


def paper(values: dict, name: str, dataset: str, with_step_variants: bool = False) -> dict:
    """``values`` for ``dataset``; ``paper-kK`` sets ``sgld_steps = K``. Unknown names raise KeyError."""
    out = dict(values, flip=values.get("flip", True) and dataset not in NO_FLIP)
    if name == "paper":
        return out
    if with_step_variants and name in STEP_VARIANTS:
        return dict(out, sgld_steps=STEP_VARIANTS[name])
    raise KeyError(name)


def tiny(values: dict, dataset: str) -> dict:
    """``values`` (tuned on 8×8 digits) as is on digits; elsewhere with augmentation and 100 iterations."""
    if dataset == "digits":
        return dict(values)
    return dict(values, augment=True, flip=dataset not in NO_FLIP, epochs=1, max_iters=100)


def names(with_step_variants: bool = False) -> tuple[str, ...]:
    return ("tiny", "paper", *(STEP_VARIANTS if with_step_variants else ()))
