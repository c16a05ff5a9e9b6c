"""Robustness suite: adversarial robustness of the SGLD-refined classifier (JEM §5.4, Fig. 5; App. F, Fig. 10).

For every refinement depth K (JEM: 0, 1, 10 SGLD steps seeded at the input) the classifier
x → SGLD_K(x) → logits (:class:`jembench.refine.RefinedClassifier`) is attacked

* white-box with PGD, L∞ and L2, with gradients through the refinement (or BPDA), EOT for stochastic
  refinement and restarts, in one of three ways (``pgd.search``): ``bisect`` — torchattacks at every ε of a grid,
  then a per-input binary search for the minimal ε (:mod:`jembench.attacks.pgd`, :mod:`jembench.attacks.search`);
  ``grid`` — every ε on its own (SADA-JEM's one run per ε); ``foolbox2`` — foolbox 2's exponential + bisection
  ε search per input with JEM's restart rule (:mod:`jembench.attacks.foolbox2`) → robustness–distortion curves
  (Fig. 5). ``pgd.success`` says what breaks an input: the returned iterate (``final``) or any evaluated iterate
  (``any_iterate``, SADA-JEM; foolbox 2 stops each run at its first adversarial iterate);
* decision-based with foolbox's BoundaryAttack (L2) and PointwiseAttack (L0), started from a correctly
  classified input of the top-2 class (:mod:`jembench.attacks.gradient_free`), under per-input query and per-unit
  time budgets (:mod:`jembench.attacks.budget`) → accuracy vs distance (Fig. 10).

An adversarial counts only when a fresh ``eot_defense``-draw classifier (logits averaged) misclassifies it
(decision-based adversarials that do not verify are moved back towards their starting point until they do,
:func:`jembench.attacks.gradient_free.verified_along_line`; ``details`` counts them as ``unverified``).
ε and distances are in [0, 1] pixel units (8/255, 0.5 L2); images cross from [-1, 1] once
(:mod:`jembench.attacks`). The attacked images: a seeded random subset, the first ``n`` in order (JEM's code) or
SADA-JEM's shuffled-loader order (``selection``, :mod:`jembench.attacks.inputs`).

Protocols: ``suites/robustness.toml`` (the papers' text generalised — neither paper's code),
``robustness-jem-official.toml`` / ``-jem-official-l2.toml`` (JEM's attack_model.py), ``robustness-sadajem-official``
(SADA-JEM's bpda_eot_attack.py as shipped), ``robustness-cpu.toml`` (32×32 models on a CPU), ``robustness-tiny``.

The package, one concept per module (this module, :mod:`.protocol`, :mod:`.summary` and :mod:`.sanity` import no
torch, so the protocol, a record's table and its caveats are read without it):

``protocol``   :class:`RobustnessProtocol` — the settings, their checks and the work units they define;
``units``      attack dispatch: one unit = one attack at one K on one block of inputs (:func:`run_unit`);
``schedule``   :func:`run`: the attacked inputs, units shared among ranks, resume from partial results;
``summary``    the record's metrics and details from the units, the paper-style table, the headline numbers;
``sanity``     the attack sanity checks (Carlini et al. 2019) a record's numbers must pass, else its rows are ⚠.
The robustness figures (JEM Fig. 5 and 10) are drawn by :func:`jembench.figures.robustness_figures`.
"""

from __future__ import annotations

from typing import Any

from .protocol import RobustnessProtocol, Unit, parse_eps, parse_number  # noqa: F401  (the protocol's names)
from .summary import format_table, headline  # noqa: F401  (the suite interface: torch-free)

NAME = "robustness"
PROTOCOL = RobustnessProtocol
SHARDED = True  # under torchrun the units are shared among the ranks (every other suite runs on rank 0 alone)


def run(ckpt: Any, protocol: Any, ctx: Any) -> dict:
    """Evaluate ``ckpt`` under ``protocol`` (:func:`jembench.suites.robustness.schedule.run`; loads torch)."""
    from .schedule import run as run_schedule

    return run_schedule(ckpt, protocol, ctx)

