"""Dataset registry. Every dataset yields (image, label) with images as float tensors in [-1, 1], NCHW.

Names:
  ``digits``           scikit-learn's 8×8 handwritten digits (1,797 real images, ships with scikit-learn, so
                       every command runs offline); the default of every command. Split 80/20 stratified, seed 0.
  ``cifar10``, ``cifar100``, ``svhn``, ``celeba``
                       torchvision's loaders under ``--data-root``; downloaded when missing unless
                       ``--no-download``; a missing or failed download is a one-line error naming the files.
  ``folder:PATH``      ``torchvision.datasets.ImageFolder`` on ``PATH/train`` and ``PATH/test``
                       (e.g. ``folder:../shared/data/cifar10-jpeg``); an OOD set or an evaluation needs
                       ``PATH/test`` only. Named by its base name (:func:`jembench.catalog.slug`,
                       :func:`jembench.catalog.label`).
CelebA's faces become 3×32×32 by shorter side + centre crop, or — ``load_dataset("celeba", resize="shorter-side")``,
the official OOD code's ``tr.Resize(32)`` — 3×39×32 (:func:`celeba_transform`).
Synthetic out-of-distribution sets built from an in-distribution test set (JEM §5.3): ``uniform``,
``constant`` and ``interp`` — see :func:`synthetic_ood`.

Train-time augmentation (reflect-pad + random crop, horizontal flip) and input noise σ (JEM App. A adds
N(0, .03²)) are options of the training data only (:func:`load_dataset` ``augment=`` / ``noise_std=``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Sized
from typing import Callable, Iterator

import torch
import torchvision
from torch.utils.data import Dataset, TensorDataset
from torchvision import transforms as T

from . import catalog, progress, untrusted
from .catalog import CELEBA, CIFAR10, CIFAR100, DIGITS, SVHN, DatasetInfo
from .defaults import DEFAULT_DATASET, data_root as default_data_root
from .errors import JembenchError

__all__ = ["DEFAULT_DATASET", "DatasetInfo", "register_dataset", "dataset_names", "dataset_info", "is_available",
           "load_dataset", "iter_batches", "stack_dataset", "synthetic_ood", "synthetic_ood_batch", "SYNTHETIC_OOD"]


@dataclass(frozen=True)
class _Entry:
    info: DatasetInfo
    build: Callable[[str, Path, bool], Dataset]  # (split, data_root, download) -> dataset of ([-1,1] tensor, y)
    present: Callable[[Path], bool]


_REGISTRY: dict[str, _Entry] = {}


def register_dataset(info: DatasetInfo, present: Callable[[Path], bool]):
    """Decorator registering ``build(split, root, download)`` under ``info.name`` (and declaring ``info`` in
    :mod:`jembench.catalog`, where torch-free code finds its label)."""

    def decorate(build):
        catalog.declare(info)
        _REGISTRY[info.name] = _Entry(info, build, present)
        return build

    return decorate


TO_SIGNED = T.Compose([T.ToTensor(), T.Normalize((0.5,), (0.5,))])  # [0, 255] PIL -> [-1, 1]


def _to_signed_rgb(img):
    return TO_SIGNED(img.convert("RGB"))


# ----------------------------------------------------------------------------------------------- digits
@register_dataset(DIGITS, present=lambda root: True)
def _digits(split: str, root: Path, download: bool) -> Dataset:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0 * 2 - 1
    labels = torch.tensor(bunch.target, dtype=torch.long)
    train_idx, test_idx = train_test_split(torch.arange(len(labels)).numpy(), test_size=0.2, random_state=0,
                                           stratify=labels.numpy())
    idx = torch.as_tensor(train_idx if split == "train" else test_idx)
    return TensorDataset(images[idx], labels[idx])


# ------------------------------------------------------------------------------------------ torchvision
# torchvision verifies the MD5 of every file on each load. We blank the checksums so only presence is checked:
# hashing 170 MB on every start is slow, and it lets the tests exercise torchvision's real parsers on small
# files in the real formats. (torchvision's own check_integrity treats md5=None as "exists".)
def _no_md5(entries):
    return [(name, None) for name, _ in entries]


class _CIFAR10(torchvision.datasets.CIFAR10):
    train_list = _no_md5(torchvision.datasets.CIFAR10.train_list)
    test_list = _no_md5(torchvision.datasets.CIFAR10.test_list)
    meta = {**torchvision.datasets.CIFAR10.meta, "md5": None}


class _CIFAR100(torchvision.datasets.CIFAR100):
    train_list = _no_md5(torchvision.datasets.CIFAR100.train_list)
    test_list = _no_md5(torchvision.datasets.CIFAR100.test_list)
    meta = {**torchvision.datasets.CIFAR100.meta, "md5": None}


class _SVHN(torchvision.datasets.SVHN):
    split_list = {k: [url, name, None] for k, (url, name, _) in torchvision.datasets.SVHN.split_list.items()}


class _CelebA(torchvision.datasets.CelebA):
    file_list = [(fid, None, name) for fid, _, name in torchvision.datasets.CelebA.file_list]

    def __getitem__(self, index: int):
        # torchvision opens the face with PIL by path: refuse a FIFO or device before it can block the open
        untrusted.check_file(Path(self.root) / self.base_folder / "img_align_celeba" / self.filename[index], "image")
        return super().__getitem__(index)


_CIFAR_FILES = "data_batch_1..5, test_batch, batches.meta"


def _exists(path: Path) -> bool:
    """Whether a dataset file is there at all (a FIFO or a broken link too: the checks say what is wrong)."""
    return os.path.lexists(path)


def _guarded(name: str, root: Path, files: str, make: Callable[[], Dataset], download: bool, present: bool,
             folder: Path | None = None) -> Dataset:
    """Run a torchvision constructor; missing / failed / forbidden downloads and unreadable files become one
    clear line naming the folder and the files. Every file in ``folder`` (what torchvision opens by path) must
    first pass :func:`jembench.untrusted.check_file`: a FIFO named ``test_batch`` would block its ``open()``."""
    if not present and not download:
        raise JembenchError(f"dataset {name!r} not found and --no-download is set; put {files} under {root} "
                            f"(or pass --data-root to where they are)")
    if folder is not None and folder.is_dir():
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            if not entry.is_dir():
                untrusted.check_file(entry.path, "dataset")
    try:
        return make()
    except Exception as exc:  # torchvision raises RuntimeError, URLError, OSError, ... for the same problem
        if present:
            raise JembenchError(f"dataset {name!r} under {root} is unreadable ({type(exc).__name__}: "
                                f"{str(exc)[:120]}); replace {files} with intact copies") from None
        raise JembenchError(f"dataset {name!r} download failed ({type(exc).__name__}); put {files} under {root} "
                            f"by hand (or pass --data-root to where they are)") from None


@register_dataset(CIFAR10, present=lambda root: _exists(root / "cifar-10-batches-py" / "test_batch"))
def _cifar10(split: str, root: Path, download: bool) -> Dataset:
    return _guarded("cifar10", root, f"cifar-10-batches-py/ ({_CIFAR_FILES}) from cifar-10-python.tar.gz",
                    lambda: _CIFAR10(str(root), train=split == "train", download=download, transform=TO_SIGNED),
                    download, _REGISTRY["cifar10"].present(root), root / "cifar-10-batches-py")


@register_dataset(CIFAR100, present=lambda root: _exists(root / "cifar-100-python" / "test"))
def _cifar100(split: str, root: Path, download: bool) -> Dataset:
    return _guarded("cifar100", root, "cifar-100-python/ (train, test, meta) from cifar-100-python.tar.gz",
                    lambda: _CIFAR100(str(root), train=split == "train", download=download, transform=TO_SIGNED),
                    download, _REGISTRY["cifar100"].present(root), root / "cifar-100-python")


@register_dataset(SVHN, present=lambda root: _exists(root / "svhn" / "test_32x32.mat"))
def _svhn(split: str, root: Path, download: bool) -> Dataset:
    return _guarded("svhn", root / "svhn", f"{split}_32x32.mat",
                    lambda: _SVHN(str(root / "svhn"), split=split, download=download, transform=TO_SIGNED), download,
                    _exists(root / "svhn" / f"{split}_32x32.mat"), root / "svhn")


#: how CelebA's 178×218 aligned faces become 32-pixel inputs (``load_dataset("celeba", resize=...)``)
CELEBA_RESIZE = {
    # jembench's default: shorter side to 32, centre crop to 32×32 (the declared 3×32×32)
    "crop": (T.Resize(32), T.CenterCrop(32)),
    # the official OOD evaluations: `tr.Resize(32)` alone keeps the aspect ratio, 178×218 → 3×39×32
    # (JEM eval_wrn_ebm.py:269-274, JEM++ eval_jempp.py:400-405, SADA-JEM eval_sadajem.py:350-354)
    "shorter-side": (T.Resize(32),),
}


def celeba_transform(resize: str = "crop") -> T.Compose:
    """PIL face → [-1, 1] tensor: :data:`CELEBA_RESIZE` ``[resize]``, then ``ToTensor`` and ``Normalize(.5, .5)``
    (the official order: resize on the PIL image, before conversion)."""
    if resize not in CELEBA_RESIZE:
        raise JembenchError(f"unknown CelebA resize {resize!r}; use one of {', '.join(CELEBA_RESIZE)}")
    return T.Compose([*CELEBA_RESIZE[resize], T.ToTensor(), T.Normalize((0.5,), (0.5,))])


def _celeba_build(split: str, root: Path, download: bool, resize: str = "crop") -> Dataset:
    return _guarded("celeba", root / "celeba", "img_align_celeba/ and the list_*.txt / identity_CelebA.txt files",
                    lambda: _CelebA(str(root), split="test" if split == "test" else "train",
                                    target_type="identity", download=download, transform=celeba_transform(resize),
                                    target_transform=_zero_label), download, _REGISTRY["celeba"].present(root),
                    root / "celeba")


@register_dataset(CELEBA, present=lambda root: _exists(root / "celeba" / "list_eval_partition.txt"))
def _celeba(split: str, root: Path, download: bool) -> Dataset:
    return _celeba_build(split, root, download)


def _zero_label(_) -> int:
    """CelebA is used as an OOD set only: every image gets label 0 (identities are not classes here)."""
    return 0


# ----------------------------------------------------------------------------------------------- folder
class _CheckedImageFolder(torchvision.datasets.ImageFolder):
    """``ImageFolder`` read through :mod:`jembench.untrusted`: class folders are the split's real subfolders
    (symlinked ones are not followed), images are found by :func:`jembench.untrusted.walk` (no symlinked
    folders, no symlink loops, a symlink to an image already in the folder counted once, FIFOs and devices
    skipped, each skip noted) and decoded by :func:`jembench.untrusted.open_image` (pixel cap, 16-bit PNGs scaled
    to 8 bits). An unreadable, truncated or zero-byte image, or one whose size differs from the folder's first
    image (a batch of mixed sizes cannot be stacked), is a one-line :class:`JembenchError` naming the image
    instead of a PIL or collate traceback mid-run. ``mixed_sizes`` lifts the size check for callers that resize
    every image themselves (the OOD suite's folder sets)."""

    def __init__(self, root: str, mixed_sizes: bool = False):
        super().__init__(root, transform=_to_signed_rgb, loader=untrusted.open_image)
        self._shape: tuple[int, ...] | None = None
        self._mixed_sizes = mixed_sizes

    def find_classes(self, directory):
        classes, linked = untrusted.subfolders(directory)
        if linked:
            progress.warning(f"note: dataset folder {directory}: symlinked class folders are not followed: "
                             f"{', '.join(linked[:5])}")
        if not classes:
            raise FileNotFoundError(f"no class folders in {directory}")
        return classes, {name: i for i, name in enumerate(classes)}

    @staticmethod
    def make_dataset(directory, class_to_idx, extensions=None, is_valid_file=None, allow_empty=False):
        suffixes = tuple(extensions) if extensions else torchvision.datasets.folder.IMG_EXTENSIONS
        samples, empty = [], []
        for name, index in sorted(class_to_idx.items(), key=lambda item: item[1]):
            listing = untrusted.walk(Path(directory) / name, suffixes, label="class folder")
            untrusted.report_skips(listing, f"class folder {Path(directory) / name}")
            samples += [(str(p), index) for p in listing.files]
            if not listing.files:
                empty.append(name)
        if empty and not allow_empty:
            raise FileNotFoundError(f"Found no valid file for the classes {', '.join(empty)}")
        return samples

    def __getitem__(self, index: int):
        path = self.samples[index][0]
        try:
            x, y = super().__getitem__(index)
        except (OSError, SyntaxError, ValueError) as exc:  # PIL errors a transform may still raise
            raise JembenchError(f"image {path} is unreadable ({type(exc).__name__}: {str(exc)[:100]}); replace "
                                f"or delete it") from None
        if self._mixed_sizes:
            return x, y
        if self._shape is None:
            self._shape = tuple(self[0][0].shape) if index else tuple(x.shape)  # the reference: item 0
        if tuple(x.shape) != self._shape:
            raise JembenchError(f"image {path} is {x.shape[-1]}x{x.shape[-2]} but the folder's images are "
                                f"{self._shape[-1]}x{self._shape[-2]}; resize every image of {self.root} to one "
                                f"size")
        return x, y


def _folder(path: Path, split: str, mixed_sizes: bool = False) -> _CheckedImageFolder:
    """``PATH/<split>`` as an ImageFolder whose images are checked as they are read (:class:`_CheckedImageFolder`)
    and whose classes are those of ``PATH/train`` (and ``PATH/test``): a split that lacks a class, or has an
    extra one, would silently shift every label (ImageFolder numbers the class folders it finds), so it is an
    error naming the classes."""
    split_dir = path / split
    if not split_dir.is_dir():
        raise JembenchError(f"dataset folder {split_dir} does not exist; folder:PATH needs "
                            f"PATH/train/<class>/*.png|jpg "
                            f"and PATH/test/<class>/... (torchvision ImageFolder layout)")
    try:
        ds = _CheckedImageFolder(str(split_dir), mixed_sizes)
    except (FileNotFoundError, RuntimeError) as exc:
        raise JembenchError(f"dataset folder {split_dir} holds no images in class subfolders ({exc}); "
                            f"use the ImageFolder layout PATH/{split}/<class>/<image>") from None
    except OSError as exc:
        raise JembenchError(f"dataset folder {split_dir} is unreadable ({exc.strerror}); fix its permissions"
                            ) from None
    other = path / ("test" if split == "train" else "train")
    if other.is_dir():
        try:
            theirs = untrusted.subfolders(other)[0]
        except OSError as exc:
            raise JembenchError(f"dataset folder {other} is unreadable ({exc.strerror}); fix its permissions"
                                ) from None
        if theirs != ds.classes:
            missing = sorted(set(theirs) - set(ds.classes))
            extra = sorted(set(ds.classes) - set(theirs))
            detail = "; ".join(part for part in (f"{split}/ lacks {missing[:5]}" if missing else "",
                                                 f"{split}/ has extra {extra[:5]}" if extra else "") if part)
            raise JembenchError(f"dataset folder {path}: train/ and test/ must hold the same class folders "
                                f"({detail}); add the missing classes or remove the extra ones")
    return ds


# ------------------------------------------------------------------------------------------------- API
def length(dataset: Dataset, what: str = "dataset") -> int:
    """How many items a dataset holds. torch's ``Dataset`` does not promise ``__len__`` (iterable-style datasets
    have none), and every dataset jembench reads is indexed and counted, so one without a length — a plugin's
    ``IterableDataset`` — is a clear error naming it rather than a TypeError deep inside a suite."""
    if not isinstance(dataset, Sized):
        raise JembenchError(f"{what} ({type(dataset).__name__}) has no length; jembench reads map-style datasets "
                            f"(with __len__ and __getitem__): register one of those")
    return len(dataset)


def dataset_names() -> list[str]:
    return sorted(_REGISTRY)


def dataset_info(name: str, data_root: str | Path | None = None) -> DatasetInfo:
    """Classes and image shape of a dataset (for ``folder:`` read from the folder itself)."""
    if name.startswith("folder:"):
        path = Path(name.split(":", 1)[1])
        ds = _folder(path, "test")
        x, _ = ds[0]
        return DatasetInfo(name, len(ds.classes), tuple(x.shape), f"ImageFolder at {path}", "train/ and test/")
    if name not in _REGISTRY:
        raise JembenchError(f"unknown dataset {name!r}; use one of {', '.join(dataset_names())} or folder:PATH")
    return _REGISTRY[name].info


def is_available(name: str, data_root: str | Path | None = None) -> bool:
    if name.startswith("folder:"):
        return (Path(name.split(":", 1)[1]) / "test").is_dir()
    return _REGISTRY[name].present(Path(data_root or default_data_root()))


class _Transformed(Dataset):
    """Apply a tensor transform to a dataset of ([-1, 1] tensor, label) pairs."""

    def __init__(self, base: Dataset, transform: Callable[[torch.Tensor], torch.Tensor]):
        self.base, self.transform = base, transform

    def __len__(self) -> int:
        return length(self.base)

    def __getitem__(self, i):
        x, y = self.base[i]
        return self.transform(x), y


class AddGaussianNoise:
    """x + σ·ε, ε ~ N(0, I): JEM's input noise (App. A: σ = .03)."""

    def __init__(self, std: float):
        self.std = std

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.std * torch.randn_like(x)


def train_augmentation(image_shape: tuple[int, int, int], flip: bool = True) -> T.Compose:
    """The JEM / JEM++ augmentation: reflect-pad by size/8, random crop back, optional horizontal flip."""
    size = image_shape[-1]
    steps: list = [T.RandomCrop(size, padding=max(1, size // 8), padding_mode="reflect")]
    if flip:
        steps.append(T.RandomHorizontalFlip())
    return T.Compose(steps)


def load_dataset(name: str, split: str = "train", data_root: str | Path | None = None, download: bool = True,
                 augment: bool = False, flip: bool = True, noise_std: float = 0.0, resize: str = "crop",
                 mixed_sizes: bool = False) -> Dataset:
    """The dataset ``name`` as ([-1, 1] tensor, label) pairs; augmentation / noise only when asked for.
    ``data_root`` None = the default (``$JEMBENCH_DATA``, else ``data``). ``resize`` says how a dataset stored
    at another size than its declared shape reaches it — today CelebA (:data:`CELEBA_RESIZE`): ``"crop"``
    (3×32×32) or ``"shorter-side"`` (the official OOD code's aspect-preserving ``Resize(32)``: 3×39×32); other
    datasets are stored at their size and ignore it. ``mixed_sizes``: a ``folder:`` dataset may hold images of
    different sizes (the caller resizes each; otherwise a size that differs from the first image's is an error)."""
    if split not in ("train", "test"):
        raise JembenchError(f"split must be 'train' or 'test', got {split!r}")
    root = Path(data_root or default_data_root())
    base: Dataset
    if name.startswith("folder:"):
        base = _folder(Path(name.split(":", 1)[1]), split, mixed_sizes)
    elif name == "celeba" and resize != "crop":
        base = _celeba_build(split, root, download, resize)
    elif name in _REGISTRY:
        base = _REGISTRY[name].build(split, root, download)
    else:
        raise JembenchError(f"unknown dataset {name!r}; use one of {', '.join(dataset_names())} or folder:PATH")
    steps: list = []
    if augment:
        steps.append(train_augmentation(dataset_info(name, root).image_shape, flip=flip))
    if noise_std > 0:
        steps.append(AddGaussianNoise(noise_std))
    return _Transformed(base, T.Compose(steps)) if steps else base


# ------------------------------------------------------------------------------------ synthetic OOD sets
SYNTHETIC_OOD = tuple(catalog.SYNTHETIC_OOD)


def synthetic_ood_batch(name: str, in_distribution: torch.Tensor, m: int, generator: torch.Generator,
                        interp_lambda: float = 0.5) -> torch.Tensor:
    """``m`` images of a synthetic out-of-distribution set shaped like ``in_distribution`` (N, C, H, W) in [-1, 1].

    ``uniform``:  every pixel i.i.d. U(-1, 1) (JEM Table 7 "Uniform").
    ``constant``: every pixel 0, i.e. mid-grey in [-1, 1]: JEM App. E.2 defines the Constant set as "all
                  examples = 0" (in the network's input space).
    ``interp``:   λ·x_a + (1 − λ)·x_b for random pairs a ≠ b of in-distribution test images ("CIFAR10 Interp",
                  JEM §5.3); λ = 0.5 by default, as the official evaluation averages two shuffled batches.
    """
    shape = (m, *in_distribution.shape[1:])
    if name == "uniform":
        return torch.rand(shape, generator=generator) * 2 - 1
    if name == "constant":
        return torch.zeros(shape)
    if name == "interp":
        n = len(in_distribution)
        a = torch.randint(0, n, (m,), generator=generator)
        b = (a + torch.randint(1, max(2, n), (m,), generator=generator)) % n
        return interp_lambda * in_distribution[a] + (1 - interp_lambda) * in_distribution[b]
    raise JembenchError(f"unknown synthetic OOD set {name!r}; use one of {', '.join(SYNTHETIC_OOD)}")


def synthetic_ood(name: str, in_distribution: torch.Tensor, n: int, seed: int = 0,
                  interp_lambda: float = 0.5) -> torch.Tensor:
    """``n`` images of a synthetic OOD set at once (see :func:`synthetic_ood_batch`), seeded."""
    return synthetic_ood_batch(name, in_distribution, n, torch.Generator().manual_seed(seed), interp_lambda)


def chosen_indices(n: int, limit: int | None, seed: int) -> torch.Tensor:
    """The items of a dataset of ``n`` that :func:`iter_batches` streams for ``limit`` and ``seed``: all of them
    (``limit`` None or ≥ n), else ``limit`` seed-chosen ones, in index order."""
    if limit is None or limit >= n:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:limit].sort().values


def iter_batches(dataset: Dataset, limit: int | None = None, seed: int = 0, batch_size: int = 256,
                 workers: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Stream (up to ``limit`` seed-chosen) items of a dataset as (images, labels) batches, in index order.

    Only one batch is alive at a time, so a suite's memory does not grow with the number of images; the items
    and their order are those of :func:`stack_dataset` with the same arguments (it is built on this)."""
    n = length(dataset)
    if limit is not None and limit < n:
        dataset = torch.utils.data.Subset(dataset, chosen_indices(n, limit, seed).tolist())
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers)
    seen = 0
    batches = iter(loader)
    while True:
        try:
            x, y = next(batches)
        except StopIteration:
            break
        except RuntimeError as exc:  # default_collate: items of different shapes cannot be stacked
            if "stack expects each tensor to be equal size" not in str(exc):
                raise
            raise JembenchError(f"dataset yields images of different sizes in items {seen}..{seen + batch_size - 1} "
                                f"({str(exc)[:120]}); give every image one size") from None
        if not torch.isfinite(x).all():
            bad = (~torch.isfinite(x.flatten(1))).any(1).nonzero().flatten()[:5] + seen
            raise JembenchError(f"dataset yields non-finite pixel values (NaN/inf) at items {bad.tolist()}; fix or "
                                f"remove those images")
        seen += len(x)
        yield x, torch.as_tensor(y).long()
    if not seen:
        raise JembenchError("dataset is empty; check the data folder")


def stack_dataset(dataset: Dataset, limit: int | None = None, seed: int = 0, batch_size: int = 256
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Materialise (up to ``limit`` seed-chosen) items of a dataset as (images, labels) tensors."""
    xs, ys = zip(*iter_batches(dataset, limit, seed, batch_size))
    return torch.cat(xs), torch.cat(ys)
