"""``jembench datasets``: list the datasets, whether each is on disk, and how to get it."""

from __future__ import annotations

from pathlib import Path

from tabulate import tabulate

from ..defaults import data_root

NAME = "datasets"
ORDER = 40
HELP = "list datasets, whether each is available locally, and how to get it"


def add_arguments(p) -> None:
    p.add_argument("--data-root", default=None,
                   help="the data root: folder holding torchvision datasets and the image folders protocols name "
                        "by relative paths (default: $JEMBENCH_DATA, else data)")


def run(args) -> int:
    from ..data import SYNTHETIC_OOD, dataset_info, dataset_names, is_available

    rows = []
    root = Path(args.data_root or data_root())
    for name in dataset_names():
        info = dataset_info(name)
        ok = is_available(name, root)
        how = "embedded" if name == "digits" else (f"found under {root}" if ok else
                                                   f"downloaded on first use, or put {info.files} under {root}")
        rows.append([name, info.n_classes, "x".join(map(str, info.image_shape)), "yes" if ok else "no",
                     info.description, how])
    rows.append(["folder:PATH", "-", "-", "-", "any ImageFolder tree PATH/{train,test}/<class>/<image> (an OOD set "
                 "needs only test/)", f"--dataset folder:PATH (from the working directory); in a protocol, "
                 f"folder = \"PATH\" under the data root {root}"])
    for name in SYNTHETIC_OOD:
        rows.append([name, "-", "as in-dist.", "yes", "synthetic OOD set (built from the in-distribution test set)",
                     "generated"])
    print(tabulate(rows, headers=["name", "classes", "shape", "available", "what", "how to get it"],
                   tablefmt="github"))
    return 0
