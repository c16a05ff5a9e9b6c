"""Arguments that several commands share, so their names and help texts agree everywhere."""

from __future__ import annotations

import argparse

from ..defaults import DEFAULT_DATA_ROOT, DEFAULT_DATASET


def add_data_arguments(p: argparse.ArgumentParser, dataset_default: str | None = DEFAULT_DATASET) -> None:
    p.add_argument("--dataset", default=dataset_default,
                   help="dataset name (digits, cifar10, cifar100, svhn, celeba) or folder:PATH "
                        "(ImageFolder with PATH/train and PATH/test); see `jembench datasets`")
    p.add_argument("--data-root", default=DEFAULT_DATA_ROOT,
                   help="folder holding torchvision datasets (env JEMBENCH_DATA)")
    p.add_argument("--no-download", dest="download", action="store_false",
                   help="never download a missing dataset; fail with the files to put in --data-root instead")


def add_device_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1, mps ...")


def add_seed_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=0, help="seed for torch, numpy and python RNGs")
