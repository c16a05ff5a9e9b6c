"""Upper bounds of protocol fields: what a benchmark on this machine class can ever need, so that a typo or a
hostile protocol (``hist_bins = 10**12``, ``eot_defense = 10**9``) is a one-line error naming the key instead of
an out-of-memory kill or a run that never ends.

The machine class: a workstation or one GPU node (tens of GB of memory). Each bound is one to two orders of
magnitude above the largest setting any paper or official code uses (50,000 generated images, 150 EOT draws,
100 histogram bins, batches of a few hundred), and below what would exhaust such a machine. Fields are declared
with :func:`jembench.schema.setting` ``(..., le=BOUND)``; ``tests/test_hostile_matrix.py`` checks every numeric
field of every shipped protocol has one.
"""

from __future__ import annotations

#: images of a split, a generated set or a reference set (CIFAR: 60,000; ImageNet train 1.28 M would need a
#: larger machine than this class); as uint8 32x32 RGB, 1 M images are 3 GB
MAX_IMAGES = 1_000_000
#: images in one forward pass
MAX_BATCH = 100_000
#: Gaussian input noise sigma, [-1, 1] image units (papers: 0.03; beyond ~10 the image is gone)
MAX_SIGMA = 10.0
#: SGLD steps of one chain (papers: 20-100 for samples, up to 10 of refinement)
MAX_SGLD_STEPS = 100_000
#: expectation-over-transformation draws per input (SADA-JEM: 15 attack / 150 defense); memory grows with it
MAX_EOT = 1000
#: attack radius in [0, 1] pixel units for any norm (the L2 diameter of a 3x64x64 image is 110)
MAX_EPS = 1000.0
#: bins of a histogram or a reliability diagram
MAX_BINS = 10_000
