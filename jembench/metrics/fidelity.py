"""IS, FID and KID through torch-fidelity (JEM Table 1 + App. B; SADA-JEM Tables 1–2).

One path for every image that is scored:

1. :func:`to_uint8_rgb` — the only quantization: [-1, 1] floats → clamp → round((x + 1) / 2 · 255) as uint8,
   grey images repeated to 3 channels (Inception takes RGB). Generated samples and reference images both go
   through it exactly once, so both sides of FID see the same 8-bit images a PNG of them would hold.
   torch-fidelity's feature extractors take uint8 only (``FeatureExtractorInceptionV3.forward`` asserts it). The
   official SADA-JEM / JEM++ code feeds the TF graph floats instead — ``(clamp(x, -1, 1) + 1) / (2 + 1e-5) · 255``,
   not rounded (SADAJEM Task/eval_buffer.py:11-14, 71-77; JEMPP Task/eval_buffer.py:8-30) — while its reference
   images are exact uint8 values (``im·255/256`` then ``clip(im·256)`` as uint8, Task/data.py:272,
   Task/eval_buffer.py:113-114). So only the generated side differs from theirs, by at most half a grey level per
   pixel (measured effect: docs/parity.md, "Evaluation: generation").
2. :func:`fidelity_metrics` — ``torch_fidelity.calculate_metrics`` on the uint8 samples (input1) and the
   reference set (input2), with the feature extractor named by the protocol. IS splits: a count, or 0 = the
   official rule ``max(1, N // 5000)`` (:func:`isc_split_count`).
3. Reference statistics: the reference set's features (and FID statistics) are cached on disk by torch-fidelity
   (``input2_cache_name``) under :func:`default_cache_root`, keyed by dataset, split, number of images and
   feature extractor (+ a fingerprint of its weights file) — see :func:`reference_cache_name`. The reference
   images are only read when that cache misses. (The key does not see file contents: after changing the images
   of a ``folder:`` dataset, delete the cache folder.)

Feature extractors come from torch-fidelity's registry. ``inception-v3-compat`` (the default, the FID/IS
network: torch-fidelity's port of the TF ``inception-2015-12-05`` graph that the papers' TF1 code uses) needs its
weights file locally: ``--inception-weights PATH`` or torch-fidelity's own download cache
(``<torch hub dir>/checkpoints/weights-inception-2015-12-05-6726825d.pth``); we never download it and fail with
one line saying where to put it. No package on PyPI ships that file inside its wheel (pytorch-fid and
torch-fidelity download it from GitHub releases at run time), so there is no offline ``pip install`` route.
``jembench-tiny-conv`` (registered here) is a fixed, seeded random conv net for CPU protocols and smoke tests:
no file needed, numbers NOT comparable with Inception ones.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

import torch_fidelity
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

from .. import devices, progress, untrusted
from ..data import length
from ..errors import JembenchError
from .names import INCEPTION, TINY

INCEPTION_FILE = URL_INCEPTION_V3.rsplit("/", 1)[-1]  # weights-inception-2015-12-05-6726825d.pth


# ---------------------------------------------------------------------------------------------- quantize
def to_uint8_rgb(images: torch.Tensor) -> torch.Tensor:
    """THE quantization: float images in [-1, 1], (N, C, H, W) or (C, H, W), C ∈ {1, 3} → uint8 RGB.

    Values outside [-1, 1] (SGLD chains without clamping) are clipped; rounding is half-up, as
    ``torchvision.utils.save_image`` does, so the scored images equal the saved PNGs.
    """
    if images.dtype == torch.uint8:
        raise ValueError("images are already uint8; quantize float images in [-1, 1] once")
    if images.dim() not in (3, 4) or images.shape[-3] not in (1, 3):
        raise ValueError(f"expected (N, C, H, W) or (C, H, W) images with C in (1, 3), got {tuple(images.shape)}")
    x = ((images.detach().float().clamp(-1, 1) + 1) * 127.5 + 0.5).floor().clamp_(0, 255).to(torch.uint8)
    if x.shape[-3] == 1:
        x = x.repeat_interleave(3, dim=-3)
    return x


class UInt8Images(Dataset):
    """A uint8 (N, 3, H, W) tensor as the image dataset torch-fidelity expects (one tensor per item)."""

    def __init__(self, images: torch.Tensor):
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected uint8 (N, 3, H, W) from to_uint8_rgb, got {images.dtype} {tuple(images.shape)}")
        self.images = images.cpu()

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.images[i]


class QuantizedDataset(Dataset):
    """Items ``indices`` of a ([-1, 1] image, label) dataset, each quantized by :func:`to_uint8_rgb` when read."""

    def __init__(self, base: Dataset, indices: list[int] | None = None):
        self.base = base
        self.indices = list(range(length(base))) if indices is None else list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> torch.Tensor:
        return to_uint8_rgb(self.base[self.indices[i]][0])


# ------------------------------------------------------------------------------------ feature extractors
class TinyConvFeatureExtractor(FeatureExtractorBase):
    """A fixed random conv net (seed 0, He-normal weights, no training, no file) for smoke tests.

    uint8 (N, 3, H, W) → [-1, 1] → bilinear resize to 32×32 → 3 × (3×3 conv, ReLU, 2×2 average pool) →
    global average pool: ``features`` (64-d, FID / KID) and a fixed random linear map of them at temperature
    1/``LOGIT_SCALE`` (pooled random features vary by ~0.05 between images; the scale makes the logits vary by
    O(1) so IS is not pinned at 1): ``logits`` (10-d, IS). Random-network features still separate image
    distributions (FID of a set with itself is 0 and grows with added noise) but mean nothing in Inception units.
    """

    WIDTHS = (3, 16, 32, 64)
    N_LOGITS = 10
    LOGIT_SCALE = 20.0

    def __init__(self, name, features_list, **kwargs):
        super().__init__(name, features_list)
        gen = torch.Generator().manual_seed(0)
        self.convs = nn.ModuleList()
        for c_in, c_out in zip(self.WIDTHS[:-1], self.WIDTHS[1:]):
            conv = nn.Conv2d(c_in, c_out, 3, padding=1)
            with torch.no_grad():
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen) * math.sqrt(2 / (9 * c_in)))
                assert conv.bias is not None  # nn.Conv2d's default bias=True
                conv.bias.zero_()
            self.convs.append(conv)
        self.head = nn.Linear(self.WIDTHS[-1], self.N_LOGITS)
        with torch.no_grad():
            self.head.weight.copy_(torch.randn(self.head.weight.shape, generator=gen) / math.sqrt(self.WIDTHS[-1]))
            self.head.bias.zero_()
        self.requires_grad_(False)
        self.eval()

    @staticmethod
    def get_provided_features_list():
        return "features", "logits"

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        return {"isc": "logits", "fid": "features", "kid": "features", "prc": "features"}[metric]

    @staticmethod
    def can_be_compiled():
        return False

    @staticmethod
    def get_dummy_input_for_compile():
        return torch.zeros(1, 3, 32, 32, dtype=torch.uint8)

    def forward(self, x):
        if x.dtype != torch.uint8 or x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected uint8 (N, 3, H, W), got {x.dtype} {tuple(x.shape)}")
        out = self.from_levels(x.float())
        return tuple(out[name] for name in self.features_list)

    def from_levels(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``features`` and ``logits`` of float pixel levels in [0, 255] (N, 3, H, W): what :meth:`forward` computes
        on uint8 images, and what lets a test feed the official code's unrounded floats."""
        h = F.interpolate(x / 127.5 - 1, size=(32, 32), mode="bilinear", align_corners=False)
        for conv in self.convs:
            h = F.avg_pool2d(F.relu(conv(h)), 2)
        features = h.mean(dim=(2, 3))
        return {"features": features, "logits": self.head(features) * self.LOGIT_SCALE}


def register_feature_extractor(name: str, cls: type) -> None:
    """Register ``cls`` with torch-fidelity under ``name`` unless that name is taken (idempotent)."""
    if name not in FEATURE_EXTRACTORS_REGISTRY:
        torch_fidelity.register_feature_extractor(name, cls)


register_feature_extractor(TINY, TinyConvFeatureExtractor)


def torch_fidelity_inception_cache() -> Path:
    """Where torch-fidelity keeps the Inception weights it downloads (torch hub's checkpoint folder)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE


def inception_weights_path(explicit: str | os.PathLike | None = None) -> Path:
    """The Inception weights file: ``explicit`` (``--inception-weights``) or torch-fidelity's cache; else a
    :class:`JembenchError` naming the file, where to get it and where to put it."""
    if explicit:
        path = Path(explicit).expanduser()
        untrusted.check_file(path, "weights", label="--inception-weights",
                             fix=f"pass the path of {INCEPTION_FILE} (from {URL_INCEPTION_V3})")
        return path
    cached = torch_fidelity_inception_cache()
    if cached.is_file():
        return cached
    raise JembenchError(f"Inception weights for IS/FID/KID not found: download {INCEPTION_FILE} from "
                        f"{URL_INCEPTION_V3} and put it in {cached.parent}/ or pass --inception-weights PATH")


def feature_extractor_kwargs(name: str, weights: str | os.PathLike | None = None) -> dict:
    """torch-fidelity kwargs selecting feature extractor ``name`` with local weights (no download, ever)."""
    if name not in FEATURE_EXTRACTORS_REGISTRY:
        known = ", ".join(sorted(FEATURE_EXTRACTORS_REGISTRY))
        raise JembenchError(f"feature extractor {name!r} is not registered with torch-fidelity; set the protocol's "
                            f"feature_extractor to one of: {known}")
    kwargs: dict = {"feature_extractor": name}
    if name == INCEPTION:
        kwargs["feature_extractor_weights_path"] = str(inception_weights_path(weights))
    elif weights:
        path = Path(weights).expanduser()
        untrusted.check_file(path, "weights", label="feature extractor weights")
        kwargs["feature_extractor_weights_path"] = str(path)
    return kwargs


# ----------------------------------------------------------------------------------------------- caching
def jembench_cache_root() -> Path:
    """``$JEMBENCH_CACHE``, default ``~/.cache/jembench`` (read at call time)."""
    return Path(os.environ.get("JEMBENCH_CACHE") or Path.home() / ".cache" / "jembench")


def default_cache_root() -> Path:
    """``$JEMBENCH_CACHE/fidelity``, default ``~/.cache/jembench/fidelity``: torch-fidelity's feature cache."""
    return jembench_cache_root() / "fidelity"


def _fingerprint(path: str | None) -> str:
    """A short content hash of a weights file (empty when the extractor needs none)."""
    if not path:
        return ""
    return untrusted.sha256(path, "weights", label="feature extractor weights")[:10]


def prepare_cache(cache_root: str | os.PathLike, name: str | None) -> None:
    """Create the feature cache folder (one line naming it and ``$JEMBENCH_CACHE`` when it cannot be) and drop
    the damaged entries of cache ``name`` with a note, so that torch-fidelity recomputes them instead of failing
    on them in this and every later run (it loads an entry whenever the file exists). An entry is damaged when it
    is not a regular file or not an intact ``torch.save`` archive (its zip central directory and every member's
    CRC are checked: a truncated or bit-flipped file fails)."""
    root = Path(cache_root)
    try:
        root.mkdir(parents=True, exist_ok=True)
        entries = sorted(p for p in root.iterdir() if name and p.name.startswith(f"{name}-") and p.suffix == ".pt")
    except OSError as exc:
        raise JembenchError(f"feature cache folder {root} cannot be created or read ({exc.strerror}); set "
                            f"JEMBENCH_CACHE to a writable folder") from None
    for entry in entries:
        problem = _cache_entry_problem(entry)
        if problem:
            progress.warning(f"note: feature cache {entry} is unusable ({problem}); recomputing it")
            try:
                entry.unlink()
            except OSError as exc:
                raise JembenchError(f"feature cache {entry} is unusable ({problem}) and cannot be removed "
                                    f"({exc.strerror}); delete it or set JEMBENCH_CACHE to another folder") from None


def _cache_entry_problem(entry: Path) -> str | None:
    import zipfile

    try:
        with untrusted.open_binary(entry, "cache") as fh, zipfile.ZipFile(fh) as archive:
            bad = archive.testzip()
    except untrusted.UntrustedFileError as exc:
        return exc.what
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        return f"truncated or not a torch.save archive: {str(exc)[:80]}"
    return f"member {bad} fails its CRC check" if bad else None


def reference_cache_name(dataset: str, split: str, n: int, fe_kwargs: dict) -> str:
    """Cache key of a reference set's features: dataset, split, n and the weights' fingerprint (torch-fidelity
    appends the feature extractor's name and the feature layer)."""
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in dataset)[:40]
    exact = hashlib.sha256(dataset.encode()).hexdigest()[:8]  # folder:PATH — two paths never collide
    weights = _fingerprint(fe_kwargs.get("feature_extractor_weights_path"))
    return f"jembench-{safe}-{exact}-{split.replace('+', '_and_')}-n{n}" + (f"-w{weights}" if weights else "")


# ----------------------------------------------------------------------------------------------- metrics
def isc_split_count(requested: int, n: int) -> int:
    """Inception Score splits for ``n`` images: ``requested`` (at most n), or for 0 the official SADA-JEM rule
    ``max(1, n // 5000)`` (Task/eval_buffer.py:145 — about 1,000 selected images give 1 split, std 0)."""
    if requested == 0:
        return max(1, n // 5000)
    return max(1, min(requested, n))


class _Counted(Dataset):
    """A dataset whose reads advance a progress bar (torch-fidelity reads items one by one, in this process)."""

    def __init__(self, base: Dataset, bar):
        self.base, self.bar, self.reads = base, bar, 0

    def __len__(self) -> int:
        return length(self.base)

    def __getitem__(self, i: int):
        self.reads += 1
        self.bar.update(1)
        return self.base[i]


def fidelity_metrics(samples: torch.Tensor, reference: Dataset | None = None, *, reference_cache: str | None = None,
                     fe_kwargs: dict, isc: bool = True, fid: bool = True, kid: bool = True, isc_splits: int = 10,
                     isc_shuffle: bool = True, kid_subsets: int = 100, kid_subset_size: int = 1000,
                     device: str = "cpu", batch_size: int = 64, cache_root: str | os.PathLike | None = None,
                     seed: int = 2020, desc: str = "features") -> dict[str, float]:
    """IS (mean, std), FID and KID (mean, std) of uint8 ``samples`` against ``reference`` via torch-fidelity.

    ``samples``: uint8 (N, 3, H, W) from :func:`to_uint8_rgb`. ``reference``: a dataset of uint8 images (e.g.
    :class:`QuantizedDataset`), needed for FID / KID; with ``reference_cache`` its features are cached on disk
    and it is only read on a cache miss. ``isc_splits``: see :func:`isc_split_count`; ``isc_shuffle``: shuffle
    (seeded) before splitting, as torch-fidelity does by default — the official code splits the images in the
    order given (Task/inception.py ``get_inception_score``). The KID subset size shrinks to what the set sizes
    allow. torch-fidelity runs on CUDA or the CPU: any other ``device`` (e.g. ``mps``) extracts features on the
    CPU; on ``cuda:N`` it runs on GPU N. Feature extraction shows a progress bar named ``desc``
    (:mod:`jembench.progress`). Returns keys ``is``, ``is_std``, ``fid``, ``kid``, ``kid_std`` for the metrics
    asked for.
    """

    if len(samples) < 2:
        raise ValueError(f"need at least 2 samples for IS/FID/KID, got {len(samples)}")
    if (fid or kid) and reference is None:
        raise ValueError("FID / KID need a reference set")
    start = time.perf_counter()
    with progress.bar(desc=desc, unit="img") as bar:
        inputs = _Counted(UInt8Images(samples), bar)
        kwargs = dict(fe_kwargs)
        kwargs.update(input1=inputs, isc=isc, fid=fid, kid=kid, cuda=torch.device(device).type == "cuda",
                      batch_size=batch_size, isc_splits=isc_split_count(isc_splits, len(samples)),
                      samples_shuffle=isc_shuffle, kid_subsets=kid_subsets, rng_seed=seed, verbose=False,
                      save_cpu_ram=True,  # save_cpu_ram: DataLoader without worker forks (reads happen here)
                      cache=True, cache_root=str(cache_root or default_cache_root()))
        ref = None
        if fid or kid:
            assert reference is not None  # checked above
            ref = _Counted(reference, bar)
            kwargs.update(input2=ref, input2_cache_name=reference_cache,
                          kid_subset_size=max(2, min(kid_subset_size, len(samples), length(reference))))
            prepare_cache(kwargs["cache_root"], reference_cache)
        with devices.current(device):  # torch-fidelity moves work with .cuda(): onto this GPU, not GPU 0
            raw = torch_fidelity.calculate_metrics(**kwargs)
    ref_text = "" if ref is None else (f" + {len(ref)} reference images" if ref.reads else
                                       " + the reference's cached features")
    progress.unit_done(desc, f"{len(samples)} samples{ref_text}", time.perf_counter() - start)
    out = {}
    if isc:
        out["is"], out["is_std"] = raw[torch_fidelity.KEY_METRIC_ISC_MEAN], raw[torch_fidelity.KEY_METRIC_ISC_STD]
    if fid:
        out["fid"] = raw[torch_fidelity.KEY_METRIC_FID]
    if kid:
        out["kid"], out["kid_std"] = raw[torch_fidelity.KEY_METRIC_KID_MEAN], raw[torch_fidelity.KEY_METRIC_KID_STD]
    return {k: float(v) for k, v in out.items()}
