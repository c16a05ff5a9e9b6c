"""The SGLD chain settings, torch-free: what training, fresh samples and the refined classifier all share.

One settings type (:mod:`jembench.schema`) for every SGLD run: training nests it as ``TrainConfig.sgld``, the
generation protocol as ``[sgld]``, the robustness protocol as ``[refine.sgld]`` — the same field names in a
config, a protocol TOML and a record. It lives apart from :mod:`jembench.sampling` (the sampler itself, which
needs torch) so that settings, protocols and the command-line parser can be read and checked without importing
torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .errors import JembenchError
from .limits import MAX_SGLD_STEPS
from .schema import setting


@dataclass(frozen=True)
class SGLDConfig:
    """Hyperparameters of one SGLD chain run — training (``TrainConfig.sgld``), fresh samples (the generation
    protocol's ``[sgld]``) and the refined classifier (the robustness protocol's ``[refine.sgld]``). Sizes are
    in [-1, 1] image units. Defaults: JEM App. A, Table 4 (20 steps, α = 1, σ = .01)."""

    n_steps: int = setting(20, ge=0, le=MAX_SGLD_STEPS, flag="steps", help="SGLD steps (K / M in the papers)")
    step_size: float = setting(1.0, ge=0, le=1e6, help="SGLD step size alpha")
    noise: float = setting(0.01, ge=0, le=1e3, help="SGLD noise std sigma")
    grad_clamp: float = setting(0.0, ge=0, le=1e6, help="clamp each SGLD gradient to [-c, c] (JEM++ proximal SGLD; "
                                                "0 = off)")
    x_clamp: bool = setting(False, help="clamp SGLD samples to [-1, 1] after each step (JEM++ / SADA-JEM)")

    def __post_init__(self) -> None:
        if self.grad_clamp is None:  # the older spelling of "off"
            object.__setattr__(self, "grad_clamp", 0.0)
        if self.n_steps < 0:
            raise JembenchError(f"SGLD n_steps must be >= 0, got {self.n_steps}")
        if self.step_size < 0 or self.noise < 0 or self.grad_clamp < 0:
            raise JembenchError("SGLD step_size, noise and grad_clamp must be >= 0")

    @property
    def stochastic(self) -> bool:
        """True when two chains from the same start differ (steps > 0 and noise > 0)."""
        return self.n_steps > 0 and self.noise > 0

    def to_dict(self) -> dict:
        return asdict(self)
