"""Grids of samples (generation suite, training snapshots): pixel-exact tiles, optionally one labelled row per class."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .files import save
from .labels import drawable, plain, text_width
from .style import DPI, SMALL_PT, as_numpy, style

#: tiles of sample grids are enlarged (nearest neighbour, whole multiples) to at least this many pixels
TILE_PX = 64
#: white pixels between tiles
PAD = 2
#: characters of a class name shown as a row label
CLASS_NAME = 16


def _uint8_images(images) -> np.ndarray:
    """(N, C, H, W) uint8 RGB; float images in [-1, 1] are quantized by the one quantization function
    (:func:`jembench.metrics.fidelity.to_uint8_rgb`)."""
    if hasattr(images, "detach") and images.is_floating_point():  # a float torch tensor
        from ..metrics.fidelity import to_uint8_rgb

        images = to_uint8_rgb(images.detach().cpu())
    a = as_numpy(images)
    if a.dtype != np.uint8 or a.ndim != 4 or a.shape[1] not in (1, 3):
        raise ValueError(f"expected (N, C, H, W) uint8 images with C in (1, 3), got {a.dtype} {a.shape}")
    return np.repeat(a, 3, axis=1) if a.shape[1] == 1 else a


def class_rows(labels: np.ndarray, n: int) -> tuple[list[list[int]], list[int]]:
    """Indices per row (one row per class present, in class order, the first — most confident — images of each)
    and each row's class, with at most ``n`` tiles in all (at least 4 per row)."""
    classes = sorted(set(labels.tolist()))
    per_row = max(1, min(10, max(4, n // max(1, len(classes)))))
    classes = classes[:max(1, n // per_row)]
    rows = [[i for i in np.flatnonzero(labels == c)[:per_row].tolist()] for c in classes]
    return rows, classes


def draw_sample_grid(images, *, n: int = 100, labels=None, class_names: Sequence[str] | None = None):
    """The grid as a :class:`matplotlib.figure.Figure` (:func:`sample_grid` saves it); see there."""
    x = _uint8_images(images if labels is not None else images[:n])  # a whole replay buffer: quantize n only
    _, _, h, w = x.shape
    scale = max(1, math.ceil(TILE_PX / max(1, min(h, w))))
    if labels is not None:
        lab = np.asarray(as_numpy(labels)).astype(np.int64).ravel()
        rows, classes = class_rows(lab, n)
        names = [class_names[c] if class_names is not None and 0 <= c < len(class_names) else c for c in classes]
        ncols = max(len(r) for r in rows) if rows else 1
    else:
        k = min(n, len(x))
        ncols = max(1, math.ceil(math.sqrt(k)))
        rows = [list(range(i, min(k, i + ncols))) for i in range(0, k, ncols)] or [[]]
        names = []
    th, tw = h * scale, w * scale
    grid = np.full((len(rows) * (th + PAD) + PAD, ncols * (tw + PAD) + PAD, 3), 255, dtype=np.uint8)
    for r, idx in enumerate(rows):
        for c, i in enumerate(idx):
            tile = x[i].transpose(1, 2, 0).repeat(scale, axis=0).repeat(scale, axis=1)
            top, left = PAD + r * (th + PAD), PAD + c * (tw + PAD)
            grid[top:top + th, left:left + tw] = tile
    gh, gw = grid.shape[:2]
    with style():
        margin = 0
        if names:  # room for the row labels (as measured in the pinned font, + the tick pad), in whole pixels
            widest = max(text_width(drawable(name, CLASS_NAME), SMALL_PT) for name in names)
            margin = int(math.ceil((widest + 6) / 72 * DPI))
        from matplotlib.figure import Figure

        fig = Figure(figsize=((gw + margin) / DPI, gh / DPI), dpi=DPI)
        ax = fig.add_axes((margin / (gw + margin), 0, gw / (gw + margin), 1))
        ax.imshow(grid, interpolation="none", aspect="auto", extent=(0, gw, gh, 0))
        ax.set_xticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
        if names:
            ax.set_yticks([PAD + r * (th + PAD) + th / 2 for r in range(len(rows))],
                          [plain(name, CLASS_NAME) for name in names])
            ax.tick_params(axis="y", length=0, pad=2)
        else:
            ax.set_yticks([])
    return fig


def sample_grid(images, path: str | Path, *, n: int = 100, labels=None,
                class_names: Sequence[str] | None = None) -> Path:
    """A grid of up to ``n`` samples, each tile enlarged by a whole factor (nearest neighbour) to at least
    :data:`TILE_PX` pixels. ``images``: (N, C, H, W) uint8 RGB, or float in [-1, 1].

    Without ``labels``: a square grid of the first ``n``. With ``labels`` (class per image, e.g. the predicted
    class of conditional samples): one row per class, labelled with its name (``class_names[c]`` when known, else
    the index; at most :data:`CLASS_NAME` characters), in class order, the first images of each class (pass them
    most confident first). The PNG maps every image pixel to whole device pixels (no resampling); the PDF embeds
    the same raster."""
    return save(draw_sample_grid(images, n=n, labels=labels, class_names=class_names), path)
