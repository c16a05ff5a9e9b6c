"""The names jembench knows, without importing torch: datasets (classes, image shape, display label) and the
synthetic OOD sets.

:mod:`jembench.data` registers a loader for each dataset declared here (and :func:`jembench.data.register_dataset`
declares a plugin's dataset here too), so the leaderboard, ``check`` and the published-number loader — which must
start without torch — read the same names and labels as the suites. Nothing here loads data.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePath


@dataclass(frozen=True)
class DatasetInfo:
    """What jembench knows about a dataset without loading it: its ``name`` (what ``--dataset`` takes),
    ``n_classes``, ``image_shape`` (C, H, W) as the network sees it, a one-line ``description``, the ``files``
    that must be on disk below the data root, and the ``label`` tables print (default: the name)."""

    name: str
    n_classes: int
    image_shape: tuple[int, int, int]
    description: str
    files: str  # what must be on disk, relative to the data root
    label: str = ""  # as tables print it (CIFAR-10); default: the name

    @property
    def display(self) -> str:
        return self.label or self.name


_INFOS: dict[str, DatasetInfo] = {}


def declare(info: DatasetInfo) -> DatasetInfo:
    """Make ``info`` known by name (its loader is registered separately, in :mod:`jembench.data`)."""
    _INFOS[info.name] = info
    return info


_CIFAR_FILES = "data_batch_1..5, test_batch, batches.meta"

DIGITS = declare(DatasetInfo("digits", 10, (1, 8, 8), "scikit-learn handwritten digits, 8x8 grey, 1,797 images "
                             "(1,437 train / 360 test)", "none: ships with scikit-learn", "digits"))
CIFAR10 = declare(DatasetInfo("cifar10", 10, (3, 32, 32), "CIFAR-10, 50,000 train / 10,000 test",
                              f"cifar-10-batches-py/{{{_CIFAR_FILES}}}", "CIFAR-10"))
CIFAR100 = declare(DatasetInfo("cifar100", 100, (3, 32, 32), "CIFAR-100, 50,000 train / 10,000 test",
                               "cifar-100-python/{train, test, meta}", "CIFAR-100"))
SVHN = declare(DatasetInfo("svhn", 10, (3, 32, 32), "SVHN cropped digits, 73,257 train / 26,032 test",
                           "svhn/{train_32x32.mat, test_32x32.mat}", "SVHN"))
CELEBA = declare(DatasetInfo("celeba", 1, (3, 32, 32), "CelebA aligned faces, resized to 32x32 (OOD only)",
                             "celeba/{img_align_celeba/, list_eval_partition.txt, list_attr_celeba.txt, "
                             "identity_CelebA.txt, list_bbox_celeba.txt, list_landmarks_align_celeba.txt}", "CelebA"))

#: synthetic OOD sets built from the in-distribution test set (:func:`jembench.data.synthetic_ood_batch`) -> label.
SYNTHETIC_OOD = {"uniform": "Uniform", "constant": "Constant", "interp": "Interp"}

#: the OOD sets of JEM Table 7, in its column order: the OOD protocol's default and the leaderboard's order.
PAPER_OOD_SETS = ("svhn", "uniform", "constant", "interp", "cifar100", "celeba")


def dataset_names() -> list[str]:
    """Every declared dataset (``folder:PATH`` datasets are not declared: any path is one)."""
    return sorted(_INFOS)


def info(name: str) -> DatasetInfo | None:
    return _INFOS.get(name)


def slug(name: str) -> str:
    """A short, readable, file-name-safe name of a dataset: ``folder:../data/cifar10-jpeg`` → ``cifar10-jpeg``
    (the folder's base name, never a mangled absolute path); registered names are returned as they are."""
    if name.startswith("folder:"):
        base = PurePath(name.split(":", 1)[1].rstrip("/\\")).name or "folder"
    else:
        base = name
    text = "".join(c if c.isalnum() or c in "-_." else "-" for c in base).strip(".-")
    return text or "dataset"


def label(name: str) -> str:
    """How tables print a dataset or OOD set name (``cifar10`` → ``CIFAR-10``, ``uniform`` → ``Uniform``,
    ``folder:../shared/data/svhn-test-10k`` → ``svhn-test-10k``: a folder's base name, never its path)."""
    if name in _INFOS:
        return _INFOS[name].display
    if name.startswith("folder:"):
        return slug(name)
    return SYNTHETIC_OOD.get(name, name)
