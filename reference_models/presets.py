"""The one preset resolver: a method's preset for a dataset as a partial :class:`TrainConfig` table.

A method module declares its settings as two tables of :class:`jembench.reference_models.config.TrainConfig` fields,
``PAPER`` (the paper's / official code's) and ``TINY`` (a CPU run of minutes), and ``STEP_VARIANTS`` (whether its
tables vary the number of SGLD steps); :func:`resolve` turns (method, preset name, dataset) into the table:

``tiny``                     ``TINY`` on digits; elsewhere with augmentation and 100 iterations;
``cpu``                      ``PAPER`` compressed onto a 2-core CPU (:func:`cpu`);
``paper``                    ``PAPER``, without horizontal flips on SVHN and digits;
``paper-k5/-k10/-k20``       ``paper`` with K = M = 5 / 10 / 20 SGLD steps (JEM++ calls it M, SADA-JEM K), for
                             the methods with ``STEP_VARIANTS``;
``<any of these>-official``  the same with ``divergence = "stop"``: the run ends at the first divergence, as the
                             official code does (JEM train_wrn_ebm.py:354-357, JEM++ train_jempp.py:286-290,
                             SADA-JEM train_sadajem.py:218-222), instead of rolling back and retrying.

Tables are TOML-shaped: the SGLD settings are the sub-table ``sgld`` (``{"sgld": {"n_steps": 20}}``), and
:func:`derive` makes one table from another with some fields changed (sub-tables merged, not replaced).
"""

from __future__ import annotations

from typing import Any

from jembench.errors import JembenchError

STEP_VARIANTS = {"paper-k5": 5, "paper-k10": 10, "paper-k20": 20}
#: suffix of a preset's official flavour: on divergence the run stops, as the official code does
OFFICIAL = "-official"
NO_FLIP = ("svhn", "digits")  # digits must not be mirrored (JEM / JEM++ / SADA-JEM turn flips off on SVHN)


def derive(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """``base`` with ``changes``; a sub-table (``sgld={"n_steps": 5}``) is merged into ``base``'s, not replacing it."""
    out = dict(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            value = derive(out[key], **value)
        out[key] = value
    return out


def resolve(method: str, name: str, dataset: str) -> dict[str, Any]:
    """The table of ``method``'s preset ``name`` for ``dataset`` (see the module docstring); an unknown method or
    preset is a one-line :class:`JembenchError` naming the choices."""
    from . import get_method

    module = get_method(method)
    if name not in module.PRESETS:
        raise JembenchError(f"method {method!r} has no preset {name!r}; use one of {', '.join(module.PRESETS)}")
    if name.endswith(OFFICIAL):
        return dict(resolve(method, name.removesuffix(OFFICIAL), dataset), divergence="stop")
    if name == "tiny":
        return tiny(module.TINY, dataset)
    if name == "cpu":
        return cpu(module.PAPER, dataset)
    return paper(module.PAPER, name, dataset)


def paper(values: dict, name: str, dataset: str) -> dict:
    """``values`` for ``dataset``; ``paper-kK`` sets ``sgld.n_steps = K``."""
    out = dict(values, flip=values.get("flip", True) and dataset not in NO_FLIP)
    return derive(out, sgld={"n_steps": STEP_VARIANTS[name]}) if name in STEP_VARIANTS else out


def tiny(values: dict, dataset: str) -> dict:
    """``values`` (tuned on 8×8 digits) as is on digits; elsewhere with augmentation and 100 iterations."""
    if dataset == "digits":
        return dict(values)
    return dict(values, augment=True, flip=dataset not in NO_FLIP, epochs=1, max_iters=100)


def names(with_step_variants: bool = False) -> tuple[str, ...]:
    """A method's presets: ``tiny``, ``cpu``, ``paper`` (and ``paper-kK``), then the official flavour of each."""
    base = ("tiny", "cpu", "paper", *(STEP_VARIANTS if with_step_variants else ()))
    return base + tuple(name + OFFICIAL for name in base)


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
