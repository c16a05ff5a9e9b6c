"""JEM++'s informative initialisation (Yang & Ji 2021, §3.2), fitted once per dataset and cached in the run.

p_0(x) = Σ_c π_c N(x; μ_c, Σ_c + δI), δ = 1e-4, with μ_c and the *full* covariance Σ_c of the un-augmented,
noise-free training images of class c. The replay buffer is filled from it and every reinitialised chain is
drawn from it (the chain's class picks the component). The distribution (fit and memory-light per-class
sampling) lives on the floor, :class:`jembench.sampling.ClassGaussianInit`; this module fits and caches it.
"""

from __future__ import annotations

from pathlib import Path


from jembench import atomic, distributed, untrusted
from jembench.data import load_dataset, stack_dataset
from jembench.errors import JembenchError
from jembench.models import read_checkpoint_file
from jembench.sampling import ClassGaussianInit

CACHE_NAME = "informative_init.pt"


def informative_init(cfg, out_dir: Path, n_classes: int) -> ClassGaussianInit:
    """Fit the per-class Gaussians to ``cfg.dataset``'s un-augmented training images (rank 0 under DDP) and
    cache them as ``out_dir/informative_init.pt``; later calls and resumes read the cache (a damaged one is
    refitted, with a note)."""
    cache = Path(out_dir) / CACHE_NAME
    init = None
    if distributed.is_main():
        init = untrusted.load_cache(cache, ClassGaussianInit.from_state_dict, "informative-init")
        if init is None:
            images, labels = stack_dataset(load_dataset(cfg.dataset, "train", cfg.data_root, cfg.download))
            try:
                fitted = ClassGaussianInit.fit(images, labels, n_classes)
            except ValueError as exc:  # a class with fewer than 2 images
                raise JembenchError(f"informative init on {cfg.dataset}: {exc}; add images or use --init uniform"
                                    ) from None
            atomic.torch_save(cache, fitted.state_dict())
            init = ClassGaussianInit.from_state_dict(fitted.state_dict())
    distributed.barrier()
    return init if init is not None else ClassGaussianInit.from_state_dict(read_checkpoint_file(cache, kind="cache"))
