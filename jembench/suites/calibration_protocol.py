"""The calibration suite's protocol (:mod:`jembench.suites.calibration`), importable without torch: the results
layer resolves protocols — and their hashes — without it (:func:`jembench.protocols.settings_class`)."""

from __future__ import annotations

from dataclasses import dataclass

from ..limits import MAX_BINS
from ..metrics.names import BIN_CLOSED
from ..schema import setting
from . import SplitSampling


@dataclass(frozen=True)
class CalibrationProtocol(SplitSampling):
    """The calibration protocol (``n``, ``input_noise``, ``n_bins``, ``bin_closed``, ``bn_mode``, ``batch_size``);
    defaults = the paper setting (JEM §5.2, ECE binning as JEM++ with jembench's left-closed bins)."""

    n_bins: int = setting(20, ge=1, le=MAX_BINS, help="equal-width confidence bins (JEM++ / SADA-JEM: 20)")
    bin_closed: str = setting("left", choices=BIN_CLOSED,
                              help="left: bins [lo, hi), confidence 1.0 in the last; right: bins (lo, hi] "
                                   "(official JEM++ / SADA-JEM Task/calibration.py)")


PROTOCOL = CalibrationProtocol
