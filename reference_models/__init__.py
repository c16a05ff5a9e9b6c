"""Reference trainers: the Wide-ResNet, the one shared training loop, and one file per method.

A method module defines ``NAME``, ``DESCRIPTION``, ``PAPER`` and ``TINY`` (partial
:class:`jembench.reference_models.config.TrainConfig` tables), ``STEP_VARIANTS`` and ``PRESETS`` (resolved by the one
preset resolver, :func:`jembench.reference_models.presets.resolve`) and ``objective(step) -> (loss, stats)``;
everything else (sampler, informative init, SAM, DA-free loader, divergence guard, resume, DDP) is configuration of
the shared loop in :mod:`jembench.reference_models.train_loop`.

``jembench train METHOD --dataset D --preset P [--any-field VALUE ...]``:

=============  ==========================================  =================================================
method         objective                                   presets (P)
=============  ==========================================  =================================================
jem            CE + E(x) − E(x̂), SGLD from U(−1, 1)        tiny, paper (K = 20)
jempp          same; class-Gaussian init, clamped SGLD,    tiny, paper (M = 10), paper-k5/-k10/-k20
               SGD + warm-up
sada_jem       same at θ and θ + ε̂ (SAM), DA-free p(x)     tiny, paper (K = 5), paper-k5/-k10/-k20
softmax        CE                                          tiny, paper
softmax_sam    CE with SAM (ρ = .05)                       tiny, paper
=============  ==========================================  =================================================

``paper`` presets hold the paper's / official code's hyperparameters for cifar10, cifar100 and svhn (WRN-28-10; no
horizontal flips on SVHN); every preset P also comes as ``P-official`` (``paper-official`` ...), which stops at the
first divergence as the official code does instead of rolling back and retrying; ``tiny`` presets train WRN-10-1 on
the embedded 8×8 digits in about a minute on a CPU core (elsewhere: 100 iterations with augmentation). The resolved
config is printed at start and stored in ``config.json``, ``events.jsonl`` and every checkpoint.

This package and the method modules' presets import no torch (the command line checks a method, preset and
every option before loading it); the ``wrn`` architecture registers itself when
:mod:`jembench.reference_models.wideresnet` is imported — by the training loop, or by
:func:`jembench.models.build_model` through the ``jembench.architectures`` entry point.

The code lives in the repository's ``reference_models/`` folder and is imported (and installed, by the wheel) only
as ``jembench.reference_models``: ``pyproject.toml`` maps the folder there, and a checkout reaches it through the
committed symlink ``jembench/reference_models -> ../reference_models``. Inside the package, imports are relative.
"""

from __future__ import annotations

import importlib.util
from types import ModuleType

from jembench.errors import JembenchError

METHOD_MODULES = {
    "jem": f"{__name__}.jem",
    "jempp": f"{__name__}.jempp",
    "sada_jem": f"{__name__}.sada_jem",
    "softmax": f"{__name__}.softmax",
    "softmax_sam": f"{__name__}.softmax_sam",
}


def available_methods() -> list[str]:
    return [name for name, mod in METHOD_MODULES.items() if importlib.util.find_spec(mod) is not None]


def get_method(name: str) -> ModuleType:
    if name not in available_methods():
        raise JembenchError(f"unknown method {name!r}; use one of {', '.join(available_methods())}")
    return importlib.import_module(METHOD_MODULES[name])
