"""Evaluation suites: one module per suite, each ``run(checkpoint, protocol, context) -> record``.

A suite module defines
  ``NAME``                 its name on the command line;
  ``PROTOCOL``             its protocol: a frozen dataclass whose defaults are the paper setting
                           (:mod:`jembench.schema`; a protocol file sets any of its fields);
  ``OVERRIDES``            (optional) evaluate() keywords / CLI options that change protocol fields, e.g.
                           ``{"steps": "sgld.n_steps"}``; a changed protocol gets a new name and hash;
  ``SHARDED``              (optional, False) True when ``run`` shares its work among torchrun's ranks and
                           returns the whole record on each (robustness); any other suite runs on rank 0 alone
                           while the other ranks wait (:func:`jembench.evaluation.run_suite`);
  ``run(ckpt, protocol, ctx) -> dict``   evaluate a :class:`jembench.models.LoadedCheckpoint` under a
                           :class:`jembench.protocols.Protocol` (``protocol.settings`` is a ``PROTOCOL``),
                           write figures into ``ctx.out_dir`` and return a record
                           (:func:`jembench.records.make_record`);
  ``format_table(record) -> str``        the paper-style table of one record (tabulate);
  ``headline(record) -> dict[str, float]``  the few numbers the demo / summary table shows.
Protocols: ``suites/<name>.toml`` (paper settings), ``suites/<name>-tiny.toml`` (CPU minutes on digits),
``suites/<name>-cpu.toml`` (CPU minutes on 32×32 images) and ``suites/<name>-<paper>-official.toml`` (the
official evaluation code of one paper, each field citing the official file:line it reproduces); the part after
``<name>-`` is the ``--preset``. No suite imports another; what several share is in this package: the suite
registry and the protocol fields of forward-pass suites here (torch-free, so protocols and the command line are
checked without importing torch), the evaluation context — the streamed test split, the model's batch-norm
mode, seeded noise streams — in :mod:`jembench.suites.context` (its names are importable from here too).
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from ..errors import JembenchError
from ..limits import MAX_BATCH, MAX_IMAGES, MAX_SIGMA
from ..schema import setting

SUITE_MODULES = {
    "accuracy": "jembench.suites.accuracy",
    "calibration": "jembench.suites.calibration",
    "ood": "jembench.suites.ood",
    "generation": "jembench.suites.generation",
    "robustness": "jembench.suites.robustness",
}


def available_suites() -> list[str]:
    """Suites whose module exists in this installation, in the canonical order."""
    return [name for name, mod in SUITE_MODULES.items() if importlib.util.find_spec(mod) is not None]


#: where a suite's protocol dataclass (its module's ``PROTOCOL``) lives when the suite module itself needs torch:
#: modules that import none, so the results layer (leaderboard, check, published) resolves protocols and their
#: hashes without torch. A suite not listed (robustness: its package imports no torch) is read from its own module.
PROTOCOL_MODULES = {
    "accuracy": "jembench.suites.accuracy_protocol",
    "calibration": "jembench.suites.calibration_protocol",
    "ood": "jembench.suites.ood_protocol",
    "generation": "jembench.suites.generation_protocol",
}


def get_suite(name: str) -> ModuleType:
    if name not in SUITE_MODULES or name not in available_suites():
        raise JembenchError(f"unknown suite {name!r}; use one of {', '.join(available_suites())} or all")
    return importlib.import_module(SUITE_MODULES[name])


def protocol_class(name: str) -> type:
    """The protocol dataclass of suite ``name`` (the ``PROTOCOL`` its module runs with), imported without torch."""
    module = importlib.import_module(PROTOCOL_MODULES[name]) if name in PROTOCOL_MODULES else get_suite(name)
    cls: type = module.PROTOCOL
    return cls


BN_MODES = ("eval", "train")


@dataclass(frozen=True)
class ForwardSettings:
    """Protocol fields of every suite that runs plain forward passes (accuracy, calibration, OOD): the mode
    the model runs in and the forward batch. In ``eval`` mode (jembench's default; JEM++ eval_jempp.py:573,
    SADA-JEM eval_sadajem.py:527-528 call ``f.eval()``) batch norm uses its running statistics and results do
    not depend on the batch. JEM's eval_wrn_ebm.py never calls ``f.eval()`` (:383-392), so batch norm (and
    dropout) run in train mode in every evaluation: ``bn_mode = "train"`` reproduces that — each batch is
    normalised with its own statistics, so the batch size and composition are part of the protocol
    (``batch_size``; official loaders: 100). Running statistics are restored afterwards (the checkpoint is
    not changed by evaluating it)."""

    bn_mode: str = setting("eval", choices=BN_MODES,
                           help="eval: model.eval() (batch norm uses running statistics); train: model.train() "
                                "as JEM's eval_wrn_ebm.py leaves it (batch statistics of each forward batch)")
    batch_size: int = setting(0, ge=0, le=MAX_BATCH,
                              help="images per forward pass; 0 = the --batch-size option (results do not "
                                   "depend on it in bn_mode eval; they do in bn_mode train)")


@dataclass(frozen=True)
class SplitSampling(ForwardSettings):
    """Protocol fields of suites that stream the (noised) test split: ``n`` images and input noise σ."""

    n: int = setting(0, ge=0, le=MAX_IMAGES, help="test images, chosen by seed; 0 = the whole test split")
    input_noise: float = setting(0.0, ge=0, le=MAX_SIGMA,
                                 help="sigma of Gaussian noise added to test inputs ([-1, 1] units)")


#: names of :mod:`jembench.suites.context` (they need torch) that ``from jembench.suites import NAME`` loads lazily
_CONTEXT_NAMES = ("EvalContext", "noise_generator", "add_noise", "batch_norm_layers", "forward_mode", "n_batches",
                  "chunks", "_test_logits_cache")


def __getattr__(name: str) -> Any:
    if name in _CONTEXT_NAMES:
        from . import context

        return getattr(context, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
