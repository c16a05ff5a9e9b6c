"""Which test images a robustness protocol attacks, and in which order.

``random``          ``n`` images chosen with a seeded permutation, in index order (jembench's default, as every
                    suite's ``n``);
``first``           the first ``n`` images of the test split, in order — JEM's attack_model.py
                    (``DataLoader(..., shuffle=False)``, batches ``start_batch`` 0 … ``end_batch`` 6 of 50 =
                    the first 300; attack_model.py:112-114, 237-242, README.md:55);
``sadajem-loader``  the first ``n`` images SADA-JEM's bpda_eot_attack.py draws: ``setup_exp`` seeds torch's global
                    RNG (``t.manual_seed(123)``, utils.py:320-323), the WRN-28-10 ``CCF(width=10, norm='batch')``
                    is built on the CPU (:46), then ``DataLoader(data, batch_size=10, shuffle=True)`` (:42)
                    iterates: the iterator draws its base seed, the ``RandomSampler`` draws a seed for its own
                    generator and takes ``randperm``; batches 1 … 100 = the first 1,000 (:295-300).

:func:`sadajem_loader_order` replays that RNG stream on a private generator (the global one is untouched):
the network's construction consumes it through one ``uniform_`` per weight and bias of every convolution and
linear layer (PyTorch's default ``kaiming_uniform_`` / ``uniform_`` init; batch norm draws nothing), in
construction order (models/wideresnet.py:23-107, models/jem_models.py:8-18), and the loader through two int64
draws. What is identical and what is not: with the torch version running jembench, the order equals what the
official script's loader yields under that torch version (checked against ``torch.utils.data.DataLoader``
itself, and against the official model constructor when its mirror is present: tests/test_official_robustness.py).
The images the SADA-JEM authors attacked came from their torch (1.5.1 in requirements.txt), whose
``RandomSampler`` drew ``randperm`` from the global RNG directly instead of a freshly seeded generator — so the
published 1,000 images are very probably *not* these, and cannot be recovered without that torch version.
The number (1,000), the seed (123) and the procedure are the official ones; on an ImageFolder copy of the test
split (``folder:PATH``) the indices refer to the folder's sorted order, not to torchvision's CIFAR-10 order.
"""

from __future__ import annotations

import torch

def wrn_init_shapes(depth: int = 28, width: int = 10, in_channels: int = 3, n_classes: int = 10
                    ) -> list[tuple[int, ...]]:
    """The parameter shapes whose default init consumes the RNG when SADA-JEM's ``CCF(depth, width)`` is built,
    in order: conv1; per ``wide_basic`` block conv1, conv2 and the 1×1 shortcut where the shape changes (each
    weight then bias); the energy head Linear(640, 1) and the class head Linear(640, 10)."""
    n, k = (depth - 4) // 6, width
    shapes: list[tuple[int, ...]] = [(16, in_channels, 3, 3), (16,)]
    in_planes = 16
    for planes, stride in ((16 * k, 1), (32 * k, 2), (64 * k, 2)):
        for s in [stride] + [1] * (n - 1):
            shapes += [(planes, in_planes, 3, 3), (planes,), (planes, planes, 3, 3), (planes,)]
            if s != 1 or in_planes != planes:
                shapes += [(planes, in_planes, 1, 1), (planes,)]
            in_planes = planes
    return shapes + [(1, in_planes), (1,), (n_classes, in_planes), (n_classes,)]


def sadajem_loader_order(n_items: int, seed: int = 123, shapes: list[tuple[int, ...]] | None = None
                         ) -> torch.Tensor:
    """The order in which bpda_eot_attack.py's shuffled DataLoader visits ``n_items`` test images (see the
    module docstring), under the running torch version."""
    gen = torch.Generator().manual_seed(seed)
    for shape in wrn_init_shapes() if shapes is None else shapes:
        torch.empty(shape).uniform_(generator=gen)  # the network's default init, layer by layer
    torch.empty((), dtype=torch.int64).random_(generator=gen)  # _BaseDataLoaderIter: the base seed
    sampler_seed = int(torch.empty((), dtype=torch.int64).random_(generator=gen).item())  # RandomSampler
    return torch.randperm(n_items, generator=torch.Generator().manual_seed(sampler_seed))


def select(selection: str, n_items: int, n: int, seed: int) -> list[int] | None:
    """Indices of the attacked images in attack order for ``first`` and ``sadajem-loader`` (``seed`` =
    the protocol's ``input_seed``); ``None`` for ``random`` (the suites' shared seeded subset)."""
    n = min(n, n_items)
    if selection == "first":
        return list(range(n))
    if selection == "sadajem-loader":
        return sadajem_loader_order(n_items, seed)[:n].tolist()
    if selection == "random":
        return None
    raise ValueError(f"unknown selection {selection!r} (the protocol's choices: "
                     f"jembench.suites.robustness.protocol.SELECTIONS)")
