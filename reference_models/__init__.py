"""Reference trainers: the Wide-ResNet, the one shared training loop, and one file per method.

A method module defines ``NAME``, ``DESCRIPTION``, ``preset(name, dataset) -> dict`` (partial
:class:`reference_models.config.TrainConfig` values) and ``objective(step) -> (loss, stats)``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from jembench.errors import JembenchError

from . import wideresnet  # noqa: F401  (registers the 'wrn' architecture)

METHOD_MODULES = {
    "jem": "reference_models.jem",
    "jempp": "reference_models.jempp",
    "sada_jem": "reference_models.sada_jem",
    "softmax": "reference_models.softmax",
    "softmax_sam": "reference_models.softmax_sam",
}


def available_methods() -> list[str]:
    return [name for name, mod in METHOD_MODULES.items() if importlib.util.find_spec(mod) is not None]


def get_method(name: str) -> ModuleType:
    if name not in available_methods():
        raise JembenchError(f"unknown method {name!r}; use one of {', '.join(available_methods())}")
    return importlib.import_module(METHOD_MODULES[name])
