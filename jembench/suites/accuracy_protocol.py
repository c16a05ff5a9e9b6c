"""The accuracy suite's protocol (:mod:`jembench.suites.accuracy`), importable without torch: the results layer
resolves protocols — and their hashes — without it (:func:`jembench.protocols.settings_class`)."""

from __future__ import annotations

from dataclasses import dataclass

from . import SplitSampling


@dataclass(frozen=True)
class AccuracyProtocol(SplitSampling):
    """The accuracy protocol (``n``, ``input_noise``, ``bn_mode``, ``batch_size``); defaults = the paper setting
    (the whole, clean test split, eval mode)."""


PROTOCOL = AccuracyProtocol
