"""The model contract and checkpoints.

An energy model is any ``nn.Module`` mapping images (N, C, H, W) in [-1, 1] to logits (N, n_classes); the
JEM identities in :mod:`jembench.energy` turn those into energies. Architectures are looked up by name in a
small registry (``jembench.reference_models.wideresnet`` registers ``wrn``), so a checkpoint names its architecture
and kwargs and loads without pickled code.

Checkpoints load always through ``torch.load(..., weights_only=True)`` (nothing in a checkpoint can execute
code), in two families of formats:

* ours (``format == "jembench"``): architecture + kwargs, weights, replay buffer, optimizer / scheduler,
  epoch / iteration, RNG states, the resolved training config and how the training went (the ``training`` block:
  :mod:`jembench.training_block`);
* the official JEM, JEM++ and SADA-JEM codes' (``{"model_state_dict": F.state_dict(), "replay_buffer": x}``,
  bare state dicts, ``module.`` prefixes, YOPO aliases, legacy serialization): :mod:`jembench.importers`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TypeGuard

import torch
from torch import nn

from . import atomic, catalog, importers, recipe, training_block, untrusted
from .errors import JembenchError

FORMAT = "jembench"
FORMAT_VERSION = 1

_ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {}


def register_architecture(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: make ``builder(**kwargs) -> nn.Module`` loadable by name from checkpoints."""

    def decorate(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _ARCHITECTURES[name] = builder
        return builder

    return decorate


def _discover(arch: str) -> None:
    """Load ``arch`` from the ``jembench.architectures`` entry points (pyproject.toml) when not registered yet."""
    from importlib.metadata import entry_points

    for ep in entry_points(group="jembench.architectures"):
        if ep.name == arch and arch not in _ARCHITECTURES:
            _ARCHITECTURES[arch] = ep.load()


def build_model(arch: str, kwargs: dict[str, Any], weights: dict | None = None, path: str = "checkpoint"
                ) -> nn.Module:
    """The network ``arch(**kwargs)``. With ``weights`` (the state dict it will load), the architecture is first
    built on the ``meta`` device — no memory — and refused if it asks for more numbers than ``weights`` hold
    (:func:`check_architecture_size`), so settings such as ``widen_factor = 10**6`` are one line, not an
    out-of-memory kill."""
    if arch not in _ARCHITECTURES:
        _discover(arch)
    if arch not in _ARCHITECTURES:
        known = ", ".join(sorted(_ARCHITECTURES)) or "none (reinstall jembench: pip install -e .)"
        raise JembenchError(f"unknown architecture {arch!r}; known: {known}")
    if weights is not None:
        check_architecture_size(arch, kwargs, weights, path)
    return _call_builder(arch, kwargs)


def _call_builder(arch: str, kwargs: dict[str, Any]) -> nn.Module:
    try:
        return _ARCHITECTURES[arch](**kwargs)
    except TypeError as exc:
        raise JembenchError(f"architecture {arch!r} does not accept {kwargs}: {exc}") from None
    except (ValueError, AssertionError, OverflowError) as exc:
        raise JembenchError(f"architecture {arch!r} cannot be built with {kwargs} ({exc}); fix the architecture "
                            f"settings of the checkpoint") from None


class _TooLarge(Exception):
    pass


def check_weights(weights: dict, path: str, file_bytes: int | None = None) -> None:
    """What a state dict must be before any network is built from it or loaded with it:

    * every tensor backed by bytes of its own: ``numel × element size`` at most its storage's size (an expanded,
      stride-0 tensor can declare a 10⁹-row head in a 4-byte storage, and the network built from that shape
      would need hundreds of GB), and all storages together at most the file's size;
    * floating point, except batch-norm step counters (``num_batches_tracked``, integers): integer, bool and
      complex weights are refused, because ``load_state_dict`` would cast them silently (a complex weight loses
      its imaginary part) and the model would be scored as if nothing were wrong.

    Shapes and ranks are checked by building the architecture on the meta device
    (:func:`check_architecture_size`) and loading with ``strict=True``."""
    storages: dict[int, int] = {}
    for key, t in weights.items():
        if not isinstance(t, torch.Tensor):
            continue
        storage = t.untyped_storage()
        if t.numel() and t.numel() * t.element_size() > storage.nbytes():
            raise JembenchError(f"checkpoint {path}: {str(key)[:80]!r} declares shape {tuple(t.shape)} "
                                f"({t.numel():,} values) but holds {storage.nbytes():,} bytes (an expanded or "
                                f"overlapping view); re-save the weights with tensor.clone()")
        storages[storage.data_ptr() if storage.nbytes() else id(t)] = storage.nbytes()
        counter = str(key).endswith("num_batches_tracked")
        if t.is_complex() or t.dtype == torch.bool or (not t.is_floating_point() and not counter):
            raise JembenchError(f"checkpoint {path}: weight {str(key)[:80]!r} is {t.dtype}, not floating point; "
                                f"jembench does not cast weights (it would change the model): re-save it with "
                                f"float weights")
    total = sum(storages.values())
    if file_bytes is not None and total > file_bytes + 1_000_000:
        raise JembenchError(f"checkpoint {path}: its tensors hold {total:,} bytes but the file has {file_bytes:,}; "
                            f"the file is malformed — re-save it")


def check_architecture_size(arch: str, kwargs: dict[str, Any], weights: dict, path: str) -> None:
    """Build ``arch(**kwargs)`` on the meta device, counting parameters and buffers as they are registered, and
    stop as soon as the count exceeds what ``weights`` can fill (strict loading needs every one of them; a little
    slack covers non-persistent buffers). Costs no memory and stops early however absurd the settings are."""
    have = sum(t.numel() for t in weights.values() if isinstance(t, torch.Tensor))
    budget = 2 * have + 1_000_000
    seen = [0]

    def count(_module, _name, tensor):
        if tensor is not None:
            seen[0] += tensor.numel()
            if seen[0] > budget:
                raise _TooLarge
        return None

    from torch.nn.modules import module as module_hooks

    handles = [module_hooks.register_module_parameter_registration_hook(count),
               module_hooks.register_module_buffer_registration_hook(count)]
    try:
        with torch.device("meta"):
            _call_builder(arch, kwargs)
    except (_TooLarge, MemoryError):  # MemoryError: a builder's own bookkeeping (e.g. a list per block) too big
        raise JembenchError(f"checkpoint {path}: architecture {arch!r} with {kwargs} needs more than "
                            f"{budget:,} weights but the checkpoint holds {have:,}; its architecture settings do "
                            f"not match its weights — re-save it with the settings it was trained with") from None
    except (RuntimeError, NotImplementedError):
        pass  # a builder that cannot run on the meta device: the real build below reports its own errors
    finally:
        for handle in handles:
            handle.remove()


@dataclass
class LoadedCheckpoint:
    """What a suite needs from a checkpoint: the model (eval mode) and what is known about it."""

    model: nn.Module
    method: str
    dataset: str
    n_classes: int
    image_shape: tuple[int, int, int]
    path: str
    sha256: str
    buffer: torch.Tensor | None = None  # replay-buffer images in [-1, 1], (N, C, H, W)
    buffer_labels: torch.Tensor | None = None
    init_state: dict | None = None  # the p_0 the buffer was initialised from (see jembench.sampling)
    config: dict = field(default_factory=dict)
    state: dict = field(default_factory=dict)  # the whole loaded dict (for resume)

    @property
    def name(self) -> str:
        return self.config.get("name") or f"{self.method}-{catalog.slug(self.dataset)}"  # a folder by its base name

    def describe(self) -> dict[str, Any]:
        """The ``model`` block of a record."""
        block: dict[str, Any] = {"name": self.name, "method": self.method, "dataset": self.dataset,
                                 "checkpoint": self.path, "sha256": self.sha256}
        block.update({k: self.config[k] for k in ("format", "log_px") if k in self.config})  # official imports
        training = training_block.from_checkpoint(self.state) if self.state.get("format") == FORMAT else None
        if training is not None:  # how its training went: recovered divergences, what chose best.pt
            block["training"] = training
        extra = self.state.get("extra") if self.state.get("format") == FORMAT else None
        found = extra.get("recipe") if isinstance(extra, dict) else None
        if recipe.problem(found) is None:  # what made these weights (jembench.recipe): a stale baseline shows
            block["recipe"] = found
            block["weights_sha256"] = recipe.weights_digest(self.state.get("model_state") or {})
        return block


def save_checkpoint(path: str | Path, *, arch: str, arch_kwargs: dict[str, Any], model: nn.Module, method: str,
                    dataset: str, n_classes: int, image_shape: tuple[int, ...], config: dict[str, Any],
                    buffer: dict | None = None, optimizer: dict | None = None, scheduler: dict | None = None,
                    epoch: int = 0, iteration: int = 0, rng: dict | None = None,
                    extra: dict | None = None, training: dict | None = None) -> None:
    """Write a checkpoint atomically (temp file + rename). Everything in it loads with weights_only=True.
    ``training``: the :mod:`jembench.training_block` (how the training went), copied into every record."""
    state = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "method": method,
        "dataset": dataset,
        "n_classes": int(n_classes),
        "image_shape": [int(s) for s in image_shape],
        "arch": arch,
        "arch_kwargs": dict(arch_kwargs),
        "model_state": _unwrap(model).state_dict(),
        "buffer": buffer,
        "optimizer": optimizer,
        "scheduler": scheduler,
        "epoch": int(epoch),
        "iteration": int(iteration),
        "rng": rng,
        "config": config,
        "extra": extra or {},
    }
    if training is not None:
        state["training"] = training
    atomic.torch_save(path, state)


def _unwrap(model: nn.Module) -> nn.Module:
    return getattr(model, "module", model)


def read_checkpoint_file(path: str | Path, trust: bool = False, kind: str = "checkpoint") -> dict:
    """``torch.load`` with ``weights_only=True`` through :mod:`jembench.untrusted`; every failure becomes a
    one-line :class:`JembenchError`."""
    return _as_dict(read_torch_file(path, trust, kind), path)


def _as_dict(state: Any, path: str | Path) -> dict:
    if not isinstance(state, dict):
        raise JembenchError(f"{path} holds a {type(state).__name__}, not a checkpoint dict; "
                            f"pass a file written by `jembench train` or the official JEM code")
    return state


def read_torch_file(path: str | Path, trust: bool = False, kind: str = "checkpoint") -> Any:
    """The object in a ``torch.save`` file of ``kind`` (:data:`jembench.untrusted.KINDS`), loaded with
    ``weights_only=True`` unless ``trust``; a missing, non-regular, oversized, truncated or code-carrying file is a
    one-line :class:`JembenchError` (:func:`jembench.untrusted.load_torch`)."""
    return untrusted.load_torch(path, kind, trust=trust)


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu", dataset: str | None = None,
                    trust: bool = False, uncond: bool = False) -> LoadedCheckpoint:
    """Load our checkpoints and the official JEM / JEM++ / SADA-JEM ones (:mod:`jembench.importers`) into a
    :class:`LoadedCheckpoint` (model in eval mode). ``uncond``: an official ``F`` trained with ``--uncond``,
    whose log p(x) is its ``energy_output`` head (:class:`jembench.importers.EnergyHeadJEM`)."""
    state, digest = untrusted.load_torch_and_digest(path, "checkpoint", trust=trust)
    assert digest is not None  # digest=True (the default) hashes what was loaded
    state = _as_dict(state, path)
    if state.get("format") == FORMAT:
        if uncond:
            raise JembenchError(f"--uncond applies to official checkpoints (an F scored by its energy_output head); "
                                f"{path} is a jembench checkpoint, which scores log p(x) as it was trained: drop "
                                f"--uncond")
        loaded = _load_ours(state, str(path), digest)
    elif importers.recognises(state):
        loaded = _load_official(state, str(path), digest, dataset, uncond=uncond)
    else:
        keys = ", ".join(repr(k)[:40] for k in list(state)[:6])
        raise JembenchError(f"{path} is neither a jembench checkpoint nor an official JEM / JEM++ / SADA-JEM one "
                            f"(keys: {keys}); pass a file written by `jembench train` or the official code")
    if dataset is not None and loaded.dataset not in (dataset, "unknown"):
        pass  # evaluating on another dataset than trained on is allowed (e.g. folder: copies of CIFAR-10)
    loaded.model.to(device).eval()
    return loaded


def _load_ours(state: dict, path: str, digest: str) -> LoadedCheckpoint:
    version = state.get("format_version")
    if version != FORMAT_VERSION:
        raise JembenchError(f"checkpoint {path} has format version {version}; this jembench reads version "
                            f"{FORMAT_VERSION}; use a matching jembench release")
    check_our_checkpoint(state, path)
    check_weights(state["model_state"], path, _file_bytes(path))
    model = build_model(state["arch"], state["arch_kwargs"], weights=state["model_state"], path=path)
    _load_weights(model, state["model_state"], path)
    buffer = state.get("buffer") or {}
    init = buffer.get("init")
    images = buffer.get("images")
    if isinstance(images, torch.Tensor) and images.dtype == torch.uint8:
        images = dequantize_images(images)  # a compact checkpoint (:func:`compact_checkpoint`)
    return LoadedCheckpoint(model=model, method=state["method"], dataset=state["dataset"],
                            n_classes=int(state["n_classes"]), image_shape=tuple(state["image_shape"]), path=path,
                            sha256=digest, buffer=images, buffer_labels=buffer.get("labels"),
                            init_state=init, config=state.get("config") or {}, state=state)


def _file_bytes(path: str) -> int | None:
    import os

    try:
        return os.stat(path).st_size
    except (OSError, ValueError):
        return None


def _load_official(state: dict, path: str, digest: str, dataset: str | None, uncond: bool) -> LoadedCheckpoint:
    """An official checkpoint (already read with ``weights_only=True``) on the CPU: the ``wrn`` architecture with
    the weights :func:`jembench.importers.official_weights` finds (``strict=True``), the replay buffer if the file
    has one, ``method`` from the layout (``unknown`` when it fits several methods). The weights are checked
    (:func:`check_weights`: floating point, their own bytes, within the file's size) and the network is first
    built on the meta device within what they can fill, so shapes read from a hostile file cannot allocate."""
    found = importers.official_weights(state, path)
    check_weights(state.get("model_state_dict", state), path, _file_bytes(path))
    model = build_model("wrn", found.arch_kwargs, weights=found.weights, path=path)
    _load_weights(model, found.weights, path)
    if uncond:
        model = importers.EnergyHeadJEM(model)
    return LoadedCheckpoint(model=model, method=found.method, dataset=dataset or "unknown",
                            n_classes=int(found.arch_kwargs["n_classes"]),
                            image_shape=_chw(importers.official_image_shape(found), path), path=path,
                            sha256=digest,
                            buffer=found.buffer,
                            config=importers.official_config(found, path, uncond), state=state)


#: sanity bounds of our checkpoint's fields (far beyond any real model: ImageNet has 1,000 classes)
MAX_CLASSES = 1_000_000
MAX_IMAGE_SIDE = 4096
MAX_CHANNELS = 64


def _bad(path: str, what: str) -> JembenchError:
    return JembenchError(f"checkpoint {path} is malformed: {what}; re-save it with `jembench train` / "
                         f"`jembench export`")


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def check_our_checkpoint(state: dict, path: str) -> None:
    """The structure of a jembench checkpoint (format 1), field by field, before anything is built from it:
    the wrong container type, a missing architecture, an absurd class count or image shape, weights that are
    not tensors, or a replay buffer of the wrong shape / dtype is one line naming the field."""
    for key, kind, label in (("method", str, "a string"), ("dataset", str, "a string"), ("arch", str, "a string"),
                             ("arch_kwargs", dict, "a mapping"), ("model_state", dict, "a mapping")):
        if key not in state:
            raise _bad(path, f"it has no {key!r} field")
        if not isinstance(state[key], kind):
            raise _bad(path, f"{key!r} is {type(state[key]).__name__}, not {label}")
    if not all(isinstance(k, str) for k in state["arch_kwargs"]):
        raise _bad(path, "'arch_kwargs' keys must be strings")
    bad = [k for k, v in state["model_state"].items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad or not state["model_state"]:
        raise _bad(path, f"'model_state' must map names to tensors (not: {bad[:3]})" if bad else
                   "'model_state' holds no weights")
    n = state.get("n_classes")
    if not _is_int(n) or not 1 <= n <= MAX_CLASSES:
        raise _bad(path, f"'n_classes' is {n!r}, not an integer in [1, {MAX_CLASSES:,}]")
    shape = state.get("image_shape")
    if (not isinstance(shape, (list, tuple)) or len(shape) != 3 or not all(_is_int(v) for v in shape)
            or not 1 <= shape[0] <= MAX_CHANNELS or not all(1 <= v <= MAX_IMAGE_SIDE for v in shape[1:])):
        raise _bad(path, f"'image_shape' is {shape!r}, not [channels, height, width] (channels <= {MAX_CHANNELS}, "
                         f"sides <= {MAX_IMAGE_SIDE})")
    for key in ("config", "extra"):
        if state.get(key) is not None and not isinstance(state[key], dict):
            raise _bad(path, f"{key!r} is {type(state[key]).__name__}, not a mapping")
    if "training" in state and (wrong := training_block.problem(state["training"])) is not None:
        raise _bad(path, wrong)
    name = (state.get("config") or {}).get("name")
    if name is not None and (not isinstance(name, str) or not 0 < len(name) <= 256):
        raise _bad(path, f"config 'name' is {str(name)[:40]!r}, not a string of 1 to 256 characters")
    for key in ("epoch", "iteration"):
        if key in state and not _is_int(state[key]):
            raise _bad(path, f"{key!r} is {state[key]!r}, not an integer")
    check_buffer(state.get("buffer"), tuple(shape), n, path)


def check_buffer(buffer: Any, image_shape: tuple[int, ...], n_classes: int, path: str) -> None:
    """A checkpoint's replay buffer: None, or a mapping whose ``images`` is a float or uint8 tensor
    (N, *image_shape) and whose ``labels`` (if any) is an integer tensor of N class indices."""
    if buffer is None:
        return
    if not isinstance(buffer, dict):
        raise _bad(path, f"'buffer' is {type(buffer).__name__}, not a mapping")
    images, labels = buffer.get("images"), buffer.get("labels")
    if images is None:
        return
    want = "x".join(map(str, image_shape))
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or tuple(images.shape[1:]) != image_shape:
        got = "x".join(map(str, images.shape)) if isinstance(images, torch.Tensor) else type(images).__name__
        raise _bad(path, f"replay buffer images are {got}, not N x {want}")
    if not (images.is_floating_point() or images.dtype == torch.uint8):
        raise _bad(path, f"replay buffer images are {images.dtype}, not float or uint8")
    if labels is not None:
        if (not isinstance(labels, torch.Tensor) or labels.shape != (len(images),) or labels.is_floating_point()
                or labels.is_complex() or labels.dtype == torch.bool):
            got = f"{labels.dtype} {tuple(labels.shape)}" if isinstance(labels, torch.Tensor) else type(labels).__name__
            raise _bad(path, f"replay buffer labels are {got}, not {len(images)} integer class indices")
        if len(labels) and not (0 <= int(labels.min()) and int(labels.max()) < n_classes):
            raise _bad(path, f"replay buffer labels lie outside [0, {n_classes})")


def quantize_images(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] float images → uint8 levels with the IS/FID quantizer's rounding
    (:func:`jembench.metrics.fidelity.to_uint8_rgb`: ⌊(x + 1)·127.5 + ½⌋), channels kept."""
    return ((images.detach().float().clamp(-1, 1) + 1) * 127.5 + 0.5).floor().clamp_(0, 255).to(torch.uint8)


def dequantize_images(levels: torch.Tensor) -> torch.Tensor:
    """uint8 levels → [-1, 1] floats; quantizing the result again gives the same levels, so IS / FID of a
    compact buffer equal those of the float buffer it was made from."""
    return levels.float() / 127.5 - 1.0


def compact_checkpoint(src: str | Path, dst: str | Path, buffer_n: int | None = 1000, seed: int = 0) -> dict:
    """Write a small, evaluation-only copy of a jembench checkpoint: the weights, config, architecture and ``training``
    block (:mod:`jembench.training_block`), and ``buffer_n`` replay-buffer chains (a seeded random subset, labels kept)
    stored as uint8 — what the suites need, without optimizer / scheduler / RNG state (so it cannot be resumed). Returns
    a summary."""
    state = read_checkpoint_file(src)
    if state.get("format") != FORMAT:
        raise JembenchError(f"{src} is not a jembench checkpoint; only those can be compacted")
    out = {k: state[k] for k in ("format", "format_version", "method", "dataset", "n_classes", "image_shape",
                                 "arch", "arch_kwargs", "model_state", "epoch", "iteration", "config")}
    out.update(optimizer=None, scheduler=None, rng=None,
               extra={"compacted_from": Path(src).name, "source_sha256": untrusted.sha256(src, "checkpoint")})
    training = training_block.from_checkpoint(state)  # the guard's count of an older file, too
    if training is not None and training_block.problem(training) is None:
        out["training"] = training
    buffer = state.get("buffer") or {}
    kept = 0
    images = buffer.get("images")
    n = 0 if images is None else (len(images) if buffer_n is None else min(int(buffer_n), len(images)))
    if images is not None and n > 0:  # ``buffer_n = 0`` keeps no buffer: an empty one is not one the suites use
        labels = buffer["labels"]
        idx = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:n].sort().values
        imgs = images[idx]
        out["buffer"] = dict(buffer, images=imgs if imgs.dtype == torch.uint8 else quantize_images(imgs),
                             labels=labels[idx])
        kept = n
    else:
        out["buffer"] = None
    atomic.torch_save(dst, out)
    return {"path": str(dst), "bytes": Path(dst).stat().st_size, "buffer_n": kept}


def state_dict_sha256(model: nn.Module) -> str:
    """SHA-256 of a module's parameters and buffers (names, dtypes, shapes and bytes, in ``state_dict`` order):
    the identity of an in-memory model in its records, as a checkpoint file's SHA-256 is for a file."""
    import hashlib

    digest = hashlib.sha256()
    for name, tensor in _unwrap(model).state_dict().items():
        if not isinstance(tensor, torch.Tensor):
            continue
        t = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}|{t.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def _chw(shape: tuple[int, ...], source: str) -> tuple[int, int, int]:
    """An image shape as (channels, height, width), the form every suite reads."""
    if len(shape) != 3:
        raise JembenchError(f"{source}: image shape {shape} is not (channels, height, width)")
    return int(shape[0]), int(shape[1]), int(shape[2])


def from_module(model: nn.Module, image_shape: tuple[int, ...], *, dataset: str, method: str = "custom",
                name: str | None = None, buffer: torch.Tensor | None = None, init_state: dict | None = None,
                path: str | None = None, device: str | torch.device = "cpu") -> LoadedCheckpoint:
    """Wrap any ``nn.Module`` that maps (N, C, H, W) images in [-1, 1] to logits (N, n_classes) into what a
    suite evaluates. ``n_classes`` comes from one probe forward pass on ``image_shape`` zeros; ``buffer`` is an
    optional replay buffer (images in [-1, 1], for the generation suite); ``path`` names where the weights came
    from (default: the module's class). The module is moved to ``device`` and put in eval mode."""
    if not isinstance(model, nn.Module):
        raise JembenchError(f"expected a torch.nn.Module mapping images in [-1, 1] to logits, got "
                            f"{type(model).__name__}")
    model.to(device).eval()
    shape = tuple(int(s) for s in image_shape)
    try:
        with torch.no_grad():
            logits = model(torch.zeros((2, *shape), device=device))
    except Exception as exc:  # noqa: BLE001 - any failure of user code is reported the same way
        raise JembenchError(f"{type(model).__name__} fails on a batch of {'x'.join(map(str, shape))} images "
                            f"({_brief(exc)}); evaluate it on a dataset of the image shape it takes") from None
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or logits.shape[0] != 2:
        got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise JembenchError(f"{type(model).__name__} must return logits of shape (N, n_classes), got {got} for "
                            f"N = 2; wrap it so that forward(x) returns the logits tensor")
    if not logits.is_floating_point():
        raise JembenchError(f"{type(model).__name__} returns {logits.dtype} logits; return floating-point logits")
    if buffer is not None:
        if not isinstance(buffer, torch.Tensor) or tuple(buffer.shape[1:]) != shape:
            got = tuple(buffer.shape) if isinstance(buffer, torch.Tensor) else type(buffer).__name__
            raise JembenchError(f"buffer must be a tensor of images (N, {', '.join(map(str, shape))}) in [-1, 1], "
                                f"got {got}")
        buffer = buffer.detach().cpu()
    label = name or type(model).__name__.lower()
    return LoadedCheckpoint(model=model, method=method, dataset=dataset, n_classes=int(logits.shape[1]),
                            image_shape=_chw(shape, path or f"<{type(model).__name__} module>"),
                            path=path or f"<{type(model).__name__} module>",
                            sha256=state_dict_sha256(model), buffer=buffer, init_state=init_state,
                            config={"name": label, "source": "nn.Module"})


def module_from_factory(spec: str) -> nn.Module:
    """``package.module:factory`` → ``factory()``, the model of a user's own code (``jembench eval --model``).
    The current directory is importable, as for ``python -m``."""
    import importlib
    import inspect
    import os
    import sys

    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise JembenchError(f"--model {spec!r} must look like package.module:factory (a function or class that "
                            f"builds the model with no arguments)")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise JembenchError(f"--model {spec!r}: cannot import {module_name!r} ({exc}); run from the folder that "
                            f"holds it or install its package") from None
    except SyntaxError as exc:
        raise JembenchError(f"--model {spec!r}: {exc.filename}:{exc.lineno} has a syntax error ({exc.msg}); fix "
                            f"the file") from None
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - the user's module failed while being imported
        raise JembenchError(f"--model {spec!r}: importing {module_name!r} fails ({_brief(exc)}); fix the module "
                            f"(run `python -c 'import {module_name}'` to see the traceback)") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise JembenchError(f"--model {spec!r}: {module_name} has no callable {attr!r}")
    try:
        inspect.signature(factory).bind()
    except TypeError as exc:
        raise JembenchError(f"--model {spec!r}: {attr}() cannot be called without arguments ({exc}); pass a "
                            f"function that builds the model with none, e.g. def build(): return Net(10)") from None
    except ValueError:
        pass  # no inspectable signature (a builtin): calling it tells
    try:
        model = factory()
    except JembenchError:
        raise
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - any failure of user code is reported the same way
        raise JembenchError(f"--model {spec!r}: {attr}() fails ({_brief(exc)}); fix the factory (run it in Python "
                            f"to see the traceback)") from None
    if not isinstance(model, nn.Module):
        raise JembenchError(f"--model {spec!r}: {attr}() returned a {type(model).__name__}, not a torch.nn.Module")
    return model


def _brief(exc: BaseException) -> str:
    """``TypeName: first line of the message`` (at most 160 characters)."""
    text = str(exc).splitlines()[0][:160] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def load_weights_file(model: nn.Module, path: str | Path) -> nn.Module:
    """Load a state dict saved with ``torch.save`` into ``model`` (``weights_only=True``): a bare state dict or
    one under ``state_dict`` / ``model_state_dict`` / ``model_state``."""
    state = read_checkpoint_file(path, kind="weights")
    for key in ("state_dict", "model_state_dict", "model_state"):
        if isinstance(state.get(key), dict):
            state = state[key]
            break
    _load_weights(model, state, str(path))
    return model


def load_class_gaussians(mean_path: str | Path, cov_path: str | Path, image_shape: tuple[int, ...],
                         n_classes: int, jitter: float = 1e-4):
    """The authors' ``<dataset>_mean.pt`` / ``<dataset>_cov.pt`` (read with ``weights_only=True``) as the
    informative p_0 of fresh chains (:func:`jembench.importers.class_gaussians` checks and factors them)."""
    return importers.class_gaussians(read_torch_file(mean_path, kind="stats"), read_torch_file(cov_path, kind="stats"),
                                     image_shape, n_classes, mean_path, cov_path, jitter)


def load_tensor_file(path: str | Path, what: str = "buffer") -> torch.Tensor:
    """A tensor saved with ``torch.save`` (``weights_only=True``), bare or under ``replay_buffer`` / ``images``."""
    state = read_torch_file(path, kind="buffer")
    if isinstance(state, dict):
        state = state.get("replay_buffer", state.get("images"))
    if not isinstance(state, torch.Tensor):
        raise JembenchError(f"{what} file {path} holds no tensor (bare, or under 'replay_buffer' / 'images'); "
                            f"save the images with torch.save(tensor, path)")
    return state


def _load_weights(model: nn.Module, weights: dict, path: str) -> None:
    check_weights(weights, path)
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as exc:
        detail = str(exc).splitlines()
        raise JembenchError(f"checkpoint {path} does not match its architecture ({' '.join(detail[:2])[:200]}); "
                            f"check the architecture settings it was saved with") from None
