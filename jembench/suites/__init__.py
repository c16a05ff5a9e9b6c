"""Evaluation suites: one module per suite, each ``run(checkpoint, protocol, context) -> record``.

A suite module defines
  ``NAME``                 its name on the command line;
  ``PROTOCOL``             its protocol: a frozen dataclass whose defaults are the paper setting
                           (:mod:`jembench.schema`; a protocol file sets any of its fields);
  ``OVERRIDES``            (optional) evaluate() keywords / CLI options that change protocol fields, e.g.
                           ``{"steps": "sgld.n_steps"}``; a changed protocol gets a new name and hash;
  ``run(ckpt, protocol, ctx) -> dict``   evaluate a :class:`jembench.models.LoadedCheckpoint` under a
                           :class:`jembench.protocols.Protocol` (``protocol.settings`` is a ``PROTOCOL``),
                           write figures into ``ctx.out_dir`` and return a record
                           (:func:`jembench.records.make_record`);
  ``format_table(record) -> str``        the paper-style table of one record (tabulate);
  ``headline(record) -> dict[str, float]``  the few numbers the demo / summary table shows.
Protocols: ``suites/<name>.toml`` (paper settings) and ``suites/<name>-tiny.toml`` (CPU minutes).
No suite imports another.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Iterator

import torch

from ..data import iter_batches, load_dataset, stack_dataset
from ..errors import JembenchError
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


def get_suite(name: str) -> ModuleType:
    if name not in SUITE_MODULES or name not in available_suites():
        raise JembenchError(f"unknown suite {name!r}; use one of {', '.join(available_suites())} or all")
    return importlib.import_module(SUITE_MODULES[name])


@dataclass(frozen=True)
class SplitSampling:
    """Protocol fields of suites that stream the (noised) test split: ``n`` images and input noise σ."""

    n: int = setting(0, ge=0, help="test images, chosen by seed; 0 = the whole test split")
    input_noise: float = setting(0.0, ge=0, help="sigma of Gaussian noise added to test inputs ([-1, 1] units)")


@dataclass
class EvalContext:
    """Where and how a suite runs: the evaluation dataset, device, output folder for figures, seed, and the
    suite-specific options of :func:`jembench.evaluation.evaluate` (typed; each is documented there)."""

    dataset: str
    data_root: str | Path | None = None  # None = $JEMBENCH_DATA, else data
    download: bool = True
    device: str = "cpu"
    out_dir: Path = field(default_factory=lambda: Path("."))
    seed: int = 0
    batch_size: int = 256
    record_path: Path | None = None  # where the record goes; figures and partial results are named after it
    inception_weights: str | Path | None = None  # generation: torch-fidelity's Inception weights file
    ensemble: tuple = ()  # generation: checkpoints (paths) or replay buffers (tensors) pooled as "ensemble"

    def figure_path(self, name: str) -> Path:
        """``<record stem>_<name>.png`` beside the record, so records sharing a folder never share figures."""
        stem = Path(self.record_path).stem if self.record_path else "figure"
        return Path(self.out_dir) / f"{stem}_{name}.png"

    def test_set(self, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The in-distribution test split as tensors, (up to ``limit``) seed-chosen images, in [-1, 1]."""
        ds = load_dataset(self.dataset, "test", self.data_root, download=self.download)
        return stack_dataset(ds, limit=limit, seed=self.seed)

    def test_batches(self, limit: int | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The same images as :meth:`test_set`, streamed in batches of ``batch_size`` (memory flat in ``limit``)."""
        ds = load_dataset(self.dataset, "test", self.data_root, download=self.download)
        return iter_batches(ds, limit=limit, seed=self.seed, batch_size=self.batch_size)

    def test_logits(self, model: torch.nn.Module, limit: int | None = None, input_noise: float = 0.0
                    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(logits on ``device``, labels) of the streamed test split (:meth:`test_batches`), without autograd.
        ``input_noise`` σ > 0 adds N(0, σ²) to the inputs, drawn batch by batch from a ``seed``-seeded generator
        (JEM's official evaluation can add it)."""
        gen = torch.Generator().manual_seed(self.seed)
        for x, y in self.test_batches(limit):
            if input_noise > 0:
                x = x + input_noise * torch.randn(x.shape, generator=gen)
            with torch.no_grad():
                logits = model(x.to(self.device))
            yield logits, y  # outside no_grad: the caller's grad mode is its own between batches

