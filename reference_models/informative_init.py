"""JEM++'s informative initialisation (Yang & Ji 2021, §3.2), fitted once per dataset and cached in the run.

p_0(x) = Σ_c π_c N(x; μ_c, Σ_c + δI), δ = 1e-4, with μ_c and the *full* covariance Σ_c of the un-augmented,
noise-free training images of class c. The replay buffer is filled from it and every reinitialised chain is
drawn from it (the chain's class picks the component). The fit lives in :class:`jembench.sampling.
ClassGaussianInit`; :class:`ClassGaussians` only changes how samples are drawn: per class, x = μ_c + z L_cᵀ
with one (n_c × D)·(D × D) product, instead of gathering one D × D Cholesky factor per sample — for CIFAR
(D = 3072) a gathered factor is 38 MB, so a 10,000-chain buffer could not be initialised that way.
"""

from __future__ import annotations

from pathlib import Path

import torch

from jembench import atomic, distributed
from jembench.data import load_dataset, stack_dataset
from jembench.errors import JembenchError
from jembench.models import read_checkpoint_file
from jembench.sampling import ClassGaussianInit

CACHE_NAME = "informative_init.pt"


class ClassGaussians(ClassGaussianInit):
    """Same distribution and state as :class:`ClassGaussianInit`; memory-light sampling (see module doc)."""

    def sample(self, y: torch.Tensor, device: torch.device | str) -> torch.Tensor:
        device = torch.device(device)
        if self.means.device != device:
            self.to(device)
        y = y.to(device).long()
        z = torch.randn(len(y), self.means.shape[1], device=device)
        x = self.means[y].clone()
        order = torch.argsort(y, stable=True)
        start = 0
        for c, n in enumerate(torch.bincount(y, minlength=len(self.means)).tolist()):  # one host sync per draw
            if n:
                idx = order[start:start + n]
                x[idx] += z[idx] @ self.scale_trils[c].T
                start += n
        return x.clamp(-1, 1).view(len(y), *self.image_shape)


def informative_init(cfg, out_dir: Path, n_classes: int) -> ClassGaussians:
    """Fit the per-class Gaussians to ``cfg.dataset``'s un-augmented training images (rank 0 under DDP) and
    cache them as ``out_dir/informative_init.pt``; later calls and resumes read the cache."""
    cache = Path(out_dir) / CACHE_NAME
    if distributed.is_main() and not cache.is_file():
        images, labels = stack_dataset(load_dataset(cfg.dataset, "train", cfg.data_root, cfg.download))
        try:
            fitted = ClassGaussianInit.fit(images, labels, n_classes)
        except ValueError as exc:  # a class with fewer than 2 images
            raise JembenchError(f"informative init on {cfg.dataset}: {exc}; add images or use --init uniform") from None
        atomic.torch_save(cache, fitted.state_dict())
    distributed.barrier()
    return ClassGaussians.from_state_dict(read_checkpoint_file(cache))
