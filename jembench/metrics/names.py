"""Names the protocols choose among and the metric modules implement, importable without torch (protocols are
resolved — and their hashes computed — by the results layer, which imports no torch).

  :data:`BIN_CLOSED`  which edge of a calibration confidence bin is closed (:mod:`.calibration`)
  :data:`INCEPTION`   torch-fidelity's Inception-v3 feature extractor, the papers' IS / FID / KID network
  :data:`TINY`        jembench's tiny convolutional feature extractor for CPU minutes (:mod:`.fidelity`)
"""

from __future__ import annotations

BIN_CLOSED = ("left", "right")
INCEPTION = "inception-v3-compat"
TINY = "jembench-tiny-conv"
