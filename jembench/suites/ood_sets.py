"""The OOD suite's sets: the image batches of each ``sets`` entry of an OOD protocol.

What a ``sets`` entry means (names, labels, folders, resizing): :mod:`jembench.suites.ood_protocol`.

Random streams (:func:`jembench.suites.noise_generator`; ``i`` = the set's position in ``sets``): stream 2i+1
draws the set's content (synthetic pixels, interp pairs or permutation, subset and order of a real set), stream
2i+2 its input noise (added by the suite, σ = ``input_noise``). Stream 0 is the in-distribution input noise.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torchvision.transforms.functional as TF
from torch.utils.data import Dataset

from ..data import dataset_info, length, load_dataset, synthetic_ood_batch
from ..errors import JembenchError
from . import EvalContext, add_noise, noise_generator
from .ood_protocol import OODSet

# ------------------------------------------------------------------------------------------------- images
@dataclass
class SetImages:
    """A set's image batches (before input noise), how many there will be, and what the record says about them."""

    batches: Iterator[torch.Tensor]
    n: int
    info: dict[str, Any]


def _shape(shape) -> str:
    return "×".join(str(s) for s in shape)


def synthetic_images(s: OODSet, index: int, x_in: torch.Tensor, cfg, ctx: EvalContext, notes: list[str]
                     ) -> SetImages:
    """``uniform`` / ``constant`` / ``interp`` (:func:`jembench.data.synthetic_ood_batch`), or ``interp`` the
    official way (``cfg.interp_pairs = "consecutive-batches"``, :func:`_consecutive_interp`)."""
    gen = noise_generator(ctx.seed, 2 * index + 1)
    if s.source == "interp" and cfg.interp_pairs == "consecutive-batches":
        return _consecutive_interp(x_in, cfg, gen, notes)
    n, bs = cfg.n_out or len(x_in), cfg.batch_size or ctx.batch_size
    batches = (synthetic_ood_batch(s.source, x_in, min(bs, n - start), gen, cfg.interp_lambda)
               for start in range(0, n, bs))
    return SetImages(batches, n, {"image_shape": list(x_in.shape[1:])})


def _consecutive_interp(x_in: torch.Tensor, cfg, gen: torch.Generator, notes: list[str]) -> SetImages:
    """The official "CIFAR10 Interp" (JEM eval_wrn_ebm.py:275-278, 298-307; JEM++ eval_jempp.py:406-409, 428-436;
    SADA-JEM eval_sadajem.py:355-358, 377-385): the in-distribution test images in a shuffled order (``randperm``
    from the set's content stream), in batches of B = ``interp_batch`` (the official loader: 100, shuffle=True),
    each image already carrying σ noise from the loader's transform (drawn here from the same stream); for every
    batch i ≥ 1, λ·x_i + (1−λ)·x_{i−1} (official: ``(x + last_batch) / 2``), to which the suite then adds fresh σ
    noise as to every input. The first batch is only stored: N = 10,000 gives 9,900 images. A last, incomplete
    batch is dropped (the official code would fail on it)."""
    b, lam, sigma = cfg.interp_batch, cfg.interp_lambda, cfg.input_noise
    perm = torch.randperm(len(x_in), generator=gen)
    full = len(x_in) // b
    if len(x_in) % b:
        notes.append(f"interp: the last {len(x_in) % b} in-distribution images (an incomplete batch of "
                     f"{b}) are not used")
    n = max(0, full - 1) * b
    if cfg.n_out:
        n = min(n, cfg.n_out)

    def batches() -> Iterator[torch.Tensor]:
        last, left = None, n
        for j in range(full):
            if left <= 0:
                return
            x = add_noise(x_in[perm[j * b:(j + 1) * b]], sigma, gen)
            if last is not None:
                mixed = lam * x + (1 - lam) * last
                yield mixed[:left]
                left -= len(mixed)
            last = x

    return SetImages(batches(), n, {"image_shape": list(x_in.shape[1:]), "interp_batch": b})


class _Resized(Dataset):
    """A dataset's images brought to ``size`` (H, W): ``crop`` = shorter side to min(size), centre crop to size;
    ``shorter-side`` = shorter side to min(size), aspect kept. Images already there pass unchanged."""

    def __init__(self, base: Dataset, size: tuple[int, int], mode: str):
        self.base, self.size, self.mode = base, size, mode

    def __len__(self) -> int:
        return length(self.base)

    def __getitem__(self, i):
        x, y = self.base[i]
        if self.mode == "crop" and tuple(x.shape[1:]) != self.size:
            x = TF.center_crop(TF.resize(x, min(self.size), antialias=True), list(self.size))
        elif self.mode == "shorter-side" and min(x.shape[1:]) != min(self.size):
            x = TF.resize(x, min(self.size), antialias=True)
        return x, y


def _wrn_map(side: int) -> int:
    """Side of a WRN's final feature map (strides 1, 2, 2; 3×3 convolutions, padding 1): ⌈⌈side/2⌉/2⌉."""
    return ((side + 1) // 2 + 1) // 2


def _same_dataset(a: str, b: str) -> bool:
    if a.startswith("folder:") and b.startswith("folder:"):
        return Path(a[7:]).resolve() == Path(b[7:]).resolve()
    return a == b


def _skip(notes: list[str], s: OODSet, why: str) -> None:
    notes.append(f"skipped {s.label}: {why}")


def dataset_images(s: OODSet, index: int, in_shape: tuple[int, ...], cfg, ctx: EvalContext, notes: list[str]
                   ) -> SetImages | None:
    """Stream the test split of a dataset / folder set, brought to the network's size (``s.resize``), ``n_out``
    seed-chosen images (0 = all) in index order or, with ``shuffle_out``, in a seeded random order (the official
    fake loaders shuffle). None, with a note, when the set cannot be used (missing, channel mismatch, the
    in-distribution set itself) — never fatal."""
    if _same_dataset(s.source, ctx.dataset):
        _skip(notes, s, "it is the in-distribution dataset")
        return None
    if not s.source.startswith("folder:"):
        shape = dataset_info(s.source).image_shape
        if shape[0] != in_shape[0]:
            _skip(notes, s, f"its images are {_shape(shape)} but the model takes {_shape(in_shape)} "
                            f"(channel mismatch)")
            return None
    try:
        ds = load_dataset(s.source, "test", ctx.data_root, download=ctx.download, resize=s.resize,
                          mixed_sizes=True)
        first = ds[0][0]
    except JembenchError as exc:
        _skip(notes, s, str(exc))
        return None
    except (OSError, RuntimeError, IndexError) as exc:
        _skip(notes, s, f"cannot read its test split ({type(exc).__name__}: {exc})")
        return None
    if first.shape[0] != in_shape[0]:
        _skip(notes, s, f"its images are {_shape(first.shape)} but the model takes {_shape(in_shape)} "
                        f"(channel mismatch)")
        return None
    # folder images may differ in size from one file to the next
    ds = _Resized(ds, (int(in_shape[1]), int(in_shape[2])), s.resize)
    seen = tuple(ds[0][0].shape)
    if tuple(first.shape) != seen:
        how = "shorter side, aspect kept" if s.resize == "shorter-side" else "shorter side + centre crop"
        notes.append(f"{s.label}: images resized from {_shape(first.shape)} to {_shape(seen)} ({how})")
    if seen != tuple(in_shape):
        h, w = seen[1:]
        notes.append(f"{s.label}: the network sees {_shape(seen)} inputs (resize = {s.resize!r}); a WRN's final "
                     f"map is then {_wrn_map(h)}×{_wrn_map(w)}: the official "
                     f"avg_pool2d(out, 8) pools its top-left 8×8 (so do checkpoints imported from the official "
                     f"code), jembench's own WRN (adaptive pooling) all of it")
    gen = noise_generator(ctx.seed, 2 * index + 1)
    n = min(cfg.n_out, len(ds)) if cfg.n_out else len(ds)
    if cfg.shuffle_out:
        order = torch.randperm(len(ds), generator=gen)[:n]
    elif n < len(ds):
        order = torch.randperm(len(ds), generator=gen)[:n].sort().values
    else:
        order = None
    batches = (x for x, _ in ctx.stream(ds, batch_size=cfg.batch_size or ctx.batch_size, order=order))
    return SetImages(batches, n, {"image_shape": list(seen), "resize": s.resize})


def set_images(s: OODSet, index: int, x_in: torch.Tensor, cfg, ctx: EvalContext, notes: list[str]
               ) -> SetImages | None:
    """The images of OOD set ``s`` (position ``index`` in the protocol's ``sets``), before input noise."""
    if s.synthetic:
        return synthetic_images(s, index, x_in, cfg, ctx, notes)
    return dataset_images(s, index, tuple(x_in.shape[1:]), cfg, ctx, notes)
