"""jembench: train and benchmark Joint Energy-based Models with standardized evaluation suites.

The public API mirrors the ``jembench`` command::

    import jembench
    ckpt = jembench.train("jem", preset="tiny")                            # jembench train jem
    record = jembench.evaluate(ckpt, "ood", preset="tiny")                 # jembench eval CKPT --suite ood
    record = jembench.evaluate(my_classifier, "calibration", dataset="cifar10")   # any nn.Module -> logits
    result = jembench.compare("runs/a/eval", "runs/b/eval")                 # jembench compare A B

Names are imported on first use, so ``import jembench`` (and ``jembench --help``) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: public name -> (module, attribute)
_EXPORTS = {
    "evaluate": ("jembench.evaluation", "evaluate"),
    "compare": ("jembench.comparison", "compare"),
    "train": ("jembench.training", "train"),
    "load_checkpoint": ("jembench.models", "load_checkpoint"),
    "from_module": ("jembench.models", "from_module"),
    "LoadedCheckpoint": ("jembench.models", "LoadedCheckpoint"),
    "register_architecture": ("jembench.models", "register_architecture"),
    "register_dataset": ("jembench.data", "register_dataset"),
    "DatasetInfo": ("jembench.catalog", "DatasetInfo"),
    "register_score": ("jembench.metrics.ood_scores", "register_score"),
    "OODScore": ("jembench.metrics.ood_scores", "OODScore"),
    "available_suites": ("jembench.suites", "available_suites"),
    "get_suite": ("jembench.suites", "get_suite"),
    "load_protocol": ("jembench.protocols", "load_protocol"),
    "Protocol": ("jembench.protocols", "Protocol"),
    "SGLDConfig": ("jembench.sgld_config", "SGLDConfig"),
    "EvalOptions": ("jembench.eval_options", "EvalOptions"),
    "load_records": ("jembench.records", "load_records"),
    "JembenchError": ("jembench.errors", "JembenchError"),
}

__all__ = [
    "DatasetInfo",
    "EvalOptions",
    "JembenchError",
    "LoadedCheckpoint",
    "OODScore",
    "Protocol",
    "SGLDConfig",
    "available_suites",
    "compare",
    "evaluate",
    "from_module",
    "get_suite",
    "load_checkpoint",
    "load_protocol",
    "load_records",
    "register_architecture",
    "register_dataset",
    "register_score",
    "train",
]

if TYPE_CHECKING:  # for type checkers and IDEs; at run time the names load lazily (__getattr__)
    from .catalog import DatasetInfo
    from .comparison import compare
    from .data import register_dataset
    from .errors import JembenchError
    from .eval_options import EvalOptions
    from .evaluation import evaluate
    from .metrics.ood_scores import OODScore, register_score
    from .models import LoadedCheckpoint, from_module, load_checkpoint, register_architecture
    from .protocols import Protocol, load_protocol
    from .records import load_records
    from .sgld_config import SGLDConfig
    from .suites import available_suites, get_suite
    from .training import train


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'jembench' has no attribute {name!r}")
    module, attr = _EXPORTS[name]
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
