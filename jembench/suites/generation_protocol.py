"""The generation suite's protocol (:mod:`jembench.suites.generation`), importable without torch: the results
layer resolves protocols — and their hashes — without it (:func:`jembench.protocols.settings_class`)."""

from __future__ import annotations

from dataclasses import dataclass

from ..limits import MAX_IMAGES
from ..metric_keys import SOURCES
from ..metrics.names import INCEPTION
from ..metrics.sample_selection import Selection
from ..sgld_config import SGLDConfig
from ..schema import setting

INITS = ("uniform", "informative", "checkpoint")
REFERENCE_SPLITS = ("train", "test", "train+test")


@dataclass(frozen=True)
class GenerationProtocol:
    """The generation protocol; defaults = the JEM paper setting (JEM Table 1 + App. B, Inception features)."""

    sources: tuple[str, ...] = setting(("buffer", "fresh", "conditional"), nonempty=True, choices=SOURCES[:3],
                                       help="sample sources (ensemble is switched on by --ensemble)")
    feature_extractor: str = setting(INCEPTION, help="torch-fidelity feature extractor name")
    reference_split: str = setting("train", choices=REFERENCE_SPLITS, help="FID / KID reference split(s)")
    reference_n: int = setting(0, ge=0, le=MAX_IMAGES,
                               help="reference images (fixed seed-0 subset); 0 = the whole split(s)")
    buffer_selection: Selection = setting(Selection(), help="which buffer images the buffer source scores")
    conditional_selection: Selection = setting(Selection(rule="top", is_ratio=0.1),
                                               help="which pool images the conditional source scores")
    conditional_pool: str = setting("buffer", choices=("buffer", "fresh"), help="pool of the conditional samples")
    n_samples: int = setting(10000, ge=2, le=MAX_IMAGES, help="fresh SGLD chains (--n-samples)")
    init: str = setting("uniform", choices=INITS, help="p_0 of fresh chains (--init)")
    sgld: SGLDConfig = setting(SGLDConfig(n_steps=100, step_size=1.0, noise=0.01),
                               help="SGLD of the fresh chains (n_steps: --steps)")
    informative_fit_n: int = setting(0, ge=0, le=200_000,
                                     help="training images (seed-0 subset) for refitting the informative init; "
                                          "0 = all")
    isc_splits: int = setting(10, ge=0, le=1000, help="Inception Score splits; 0 = the official max(1, N // 5000)")
    isc_shuffle: bool = setting(True, help="shuffle (seeded) before the IS splits (torch-fidelity); the "
                                           "official code does not")
    kid_subsets: int = setting(100, ge=1, le=100_000, help="KID subsets")
    kid_subset_size: int = setting(1000, ge=2, le=MAX_IMAGES, help="KID subset size")
    grid_n: int = setting(100, ge=0, le=10_000, help="samples per PNG grid; 0 = no grid")


PROTOCOL = GenerationProtocol
