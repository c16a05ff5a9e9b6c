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
    return ("tiny", "cpu", "paper", *(STEP_VARIANTS if with_step_variants else ()))


#: ``cpu`` preset: iterations per method, chosen so that each trains in at most ~30 minutes on 2 CPU cores with a
#: WRN-10-1 on 3×32×32 data and the five together fit a two-hour CPU session (measured: README "Real data"); the
#: expensive sampler of JEM (K = 20) gets the fewest iterations.
CPU_ITERS = {"softmax": 6000, "softmax_sam": 3000, "jem": 1200, "jempp": 1000, "sada_jem": 1200}
CPU_NETWORK = {"depth": 10, "width": 1}
_CIFAR_TRAIN = 50_000  # the schedule fractions are those of the paper run on CIFAR-10


def cpu(values: dict, dataset: str) -> dict:
    """The paper recipe compressed onto a 2-core CPU: the method's optimiser, learning rate, batch sizes,
    sampler (K, step, noise, clamps, buffer, reinit, p_0), hold-out and selection as in ``paper``, on a WRN-10-1
    for ``CPU_ITERS[method]`` iterations, with the warm-up and the learning-rate decays at the same *fractions*
    of the run as in the paper schedule (JEM: decay at 80 % and 90 %; SADA-JEM: 30 / 60 / 90 %). A checkpoint
    every 100 iterations, so an interrupted run loses little (``--resume``)."""
    out = dict(values, **CPU_NETWORK, flip=values.get("flip", True) and dataset not in NO_FLIP)
    n = CPU_ITERS[values["method"]]
    per_epoch = max(1, (_CIFAR_TRAIN - values.get("holdout", 0)) // values.get("batch_size", 64))
    paper_iters = values["epochs"] * per_epoch
    out.update(max_iters=n, epochs=1, decay_epochs=[], decay_fractions=[e / values["epochs"] for e in
                                                                        values.get("decay_epochs", [])],
               warmup_iters=round(n * values.get("warmup_iters", 0) / paper_iters), ckpt_every_iters=100,
               log_every=20)
    return out
