"""Importers for the official checkpoints of JEM, JEM++ and SADA-JEM (read with ``weights_only=True``).

All three codebases save ``{"model_state_dict": f.state_dict(), "replay_buffer": buffer}`` of an ``F`` / ``CCF``
module (JEM train_wrn_ebm.py:255-262; JEMPP utils.py:159-166; SADAJEM utils.py:211-225): a Wide-ResNet trunk
under ``f.`` and two heads, ``class_output`` (the logits) and ``energy_output`` (one unit). Their trunks differ
in ways the state dict shows:

=====================  ======================================================================================
codebase               what its state dict holds
=====================  ======================================================================================
wgrathwohl/JEM         ``f.linear.*``: an unused 10-way head (wideresnet.py:102; always 10 outputs)
sndnyang/JEMPP         no ``f.linear``; the YOPO trunk registers ``conv1`` a second time as ``layer_one`` and
                       ``layer1..3`` + ``bn1`` as ``other_layers.0..3`` (models/wideresnet_yopo.py:80-91), so
                       every one of those tensors is saved twice, sharing storage (official-jempp.md A)
sndnyang/SADAJEM       no ``f.linear`` (models/wideresnet.py:97); ``module.`` prefixes when it was wrapped in
                       ``nn.DataParallel`` (models/jem_models.py:70-71)
=====================  ======================================================================================

Also accepted, as the official scripts accept them: a bare state dict (JEM attack_model.py:151-157, SADAJEM
bpda_eot_attack.py:49-56 and eval_sadajem.py:519-525) and files in torch's legacy (non-zip) serialization.

Every file maps onto jembench's ``wrn`` architecture (:mod:`jembench.reference_models.wideresnet`, same parameter
layout): ``module.`` is stripped, each YOPO alias is checked to hold exactly its canonical tensor and then dropped,
depth / width / norm / classes are read from the shapes, and the weights load with ``strict=True``. Anything else — a
missing key, a wrong shape, an alias that differs from its canonical tensor, a non-tensor value — is a one-line
error naming the file.

Which *method* trained a file is not always in it: ``f.linear`` means the JEM code, YOPO aliases the JEM++ code,
but a trunk with neither (SADA-JEM, or a JEM++ file re-saved without its aliases) is either. Such a checkpoint
loads with ``method = "unknown"`` and :func:`require_method` makes ``jembench eval`` ask for ``--method``
instead of guessing (a record must say what was evaluated).

The official ``F`` trained with ``--uncond`` scores p(x) with its ``energy_output`` head instead of
LSE(class_output) (JEM train_wrn_ebm.py:59-61, 111; JEMPP/SADAJEM models/jem_models.py); the file does not say
so (F and CCF have the same keys), so the caller does (``uncond=True``, ``jembench eval --uncond``), and the model
becomes :class:`EnergyHeadJEM`.
"""

from __future__ import annotations

import math
from typing import Any
import re
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .errors import JembenchError

#: the methods an official checkpoint can be declared as (``jembench eval --method``).
METHODS = ("jem", "jempp", "sada_jem", "softmax")
UNKNOWN = "unknown"

JEM_CODE = "wgrathwohl/JEM"
JEMPP_CODE = "sndnyang/JEMPP"
NO_LINEAR_CODE = "sndnyang/SADAJEM or sndnyang/JEMPP"

_ALIASES = (("f.layer_one.", "f.conv1."), ("f.other_layers.0.", "f.layer1."), ("f.other_layers.1.", "f.layer2."),
            ("f.other_layers.2.", "f.layer3."), ("f.other_layers.3.", "f.bn1."))
_REQUIRED = ("f.conv1.weight", "f.layer1.0.conv1.weight", "class_output.weight", "class_output.bias",
             "energy_output.weight", "energy_output.bias")


@dataclass
class OfficialWeights:
    """An official state dict in canonical form (no prefix, no aliases) and what its keys say about it."""

    weights: dict[str, torch.Tensor]
    arch_kwargs: dict
    codebase: str
    method: str  # jem / jempp, or UNKNOWN when the layout fits more than one method
    buffer: torch.Tensor | None


def recognises(state: dict) -> bool:
    """Whether ``state`` (a loaded ``.pt`` dict) is an official checkpoint: the ``model_state_dict`` format, or
    a bare state dict of an ``F`` / ``CCF`` (a ``class_output`` head, with or without ``module.``)."""
    if "model_state_dict" in state:
        return True
    return any(isinstance(k, str) and k.removeprefix("module.") == "class_output.weight" for k in state)


def official_weights(state: dict, path: str) -> OfficialWeights:
    """Validate and canonicalise an official checkpoint (dict format or bare state dict)."""
    if "model_state_dict" in state:
        raw = state["model_state_dict"]
        if not isinstance(raw, dict):
            raise JembenchError(f"checkpoint {path}: model_state_dict is a {type(raw).__name__}, not a state dict; "
                                f"re-save it with torch.save({{'model_state_dict': f.state_dict(), ...}})")
        buffer = _buffer(state.get("replay_buffer"), path)
    else:
        raw, buffer = state, None
    weights = _strip_module_prefix(raw, path)
    weights, had_aliases = _drop_yopo_aliases(weights, path)
    kwargs = official_arch_kwargs(weights, path)
    if kwargs["unused_linear"]:
        codebase, method = JEM_CODE, "jem"
    elif had_aliases:
        codebase, method = JEMPP_CODE, "jempp"
    else:
        codebase, method = NO_LINEAR_CODE, UNKNOWN
    if buffer is not None and buffer.shape[1] != kwargs["in_channels"]:
        raise JembenchError(f"checkpoint {path}: replay_buffer has {buffer.shape[1]} channels but the network takes "
                            f"{kwargs['in_channels']}; the file mixes two models")
    return OfficialWeights(weights, kwargs, codebase, method, buffer)


def _buffer(buffer, path: str) -> torch.Tensor | None:
    if buffer is None:
        return None
    if not isinstance(buffer, torch.Tensor) or buffer.dim() != 4 or not buffer.is_floating_point():
        got = tuple(buffer.shape) if isinstance(buffer, torch.Tensor) else type(buffer).__name__
        raise JembenchError(f"checkpoint {path}: replay_buffer must be a float tensor (N, C, H, W) in [-1, 1], "
                            f"got {got}; re-save the buffer or drop the key")
    return buffer


def _strip_module_prefix(raw: dict, path: str) -> dict[str, torch.Tensor]:
    """Keys without ``nn.DataParallel``'s ``module.`` (all keys carry it, or none does); values must be tensors."""
    bad = next((k for k, v in raw.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)), None)
    if bad is not None:
        raise JembenchError(f"checkpoint {path}: state-dict entry {str(bad)[:80]!r} is a "
                            f"{type(raw[bad]).__name__}, not a tensor; pass a state dict saved by the official code")
    prefixed = [k.startswith("module.") for k in raw]
    if any(prefixed) and not all(prefixed):
        first = next(k for k in raw if not k.startswith("module."))
        raise JembenchError(f"checkpoint {path}: some keys carry nn.DataParallel's 'module.' prefix and some do not "
                            f"(e.g. {first[:80]!r}); re-save one model's state dict")
    return {k.removeprefix("module."): v for k, v in raw.items()} if all(prefixed) and raw else dict(raw)


def expected_rank(key: str) -> int | None:
    """The number of dimensions the official WRN gives the tensor ``key`` (None: a key it does not have)."""
    if key.endswith("num_batches_tracked"):
        return 0
    if key.endswith((".bias", ".running_mean", ".running_var")):
        return 1
    if key.endswith(".weight"):
        name = key.rsplit(".", 2)
        if "conv" in key or "shortcut" in key or name[-2] == "layer_one":
            return 4
        if key.startswith(("class_output.", "energy_output.", "f.linear.")):
            return 2
        return 1  # a norm's affine weight
    return None


def check_ranks(weights: dict[str, torch.Tensor], path: str) -> None:
    """Every tensor has the rank the official WRN gives it (a 0-d convolution, a 1-d head, ...), before any shape
    is read from it."""
    for key, t in weights.items():
        want = expected_rank(key)
        if want is not None and t.dim() != want:
            raise JembenchError(f"checkpoint {path}: {key[:80]!r} is {t.dim()}-dimensional {tuple(t.shape)}, the "
                                f"official Wide-ResNet's is {want}-dimensional; the file is malformed — re-save it "
                                f"from the official code")


def _drop_yopo_aliases(weights: dict[str, torch.Tensor], path: str) -> tuple[dict[str, torch.Tensor], bool]:
    """The state dict without JEM++'s YOPO aliases, each checked to hold exactly its canonical tensor."""
    out, found = {}, False
    for key, value in weights.items():
        target = next((canon + key[len(alias):] for alias, canon in _ALIASES if key.startswith(alias)), None)
        if target is None:
            out[key] = value
            continue
        found = True
        canonical = weights.get(target)
        if canonical is None:
            raise JembenchError(f"checkpoint {path}: YOPO alias {key!r} has no canonical key {target!r}; the file "
                                f"is incomplete — re-save the model's full state_dict()")
        if canonical.shape != value.shape or canonical.dtype != value.dtype or not torch.equal(canonical, value):
            raise JembenchError(f"checkpoint {path}: YOPO alias {key!r} does not hold the same values as {target!r} "
                                f"(in the JEM++ code they are one tensor); the file was edited or corrupted — "
                                f"re-save it from the official code")
    return out, found


def official_arch_kwargs(weights: dict[str, torch.Tensor], path: str = "checkpoint") -> dict:
    """WRN depth / width / norm / classes / input channels (and whether the trunk has ``f.linear``) of a
    canonical official state dict; the trunk pools as the official one does (``avg_pool2d(out, 8)``, so non-square
    inputs such as CelebA's 3×39×32 see the same 8×8 window as in the official evaluation)."""
    missing = [k for k in _REQUIRED if k not in weights]
    if missing:
        raise JembenchError(f"checkpoint {path} lacks {missing[0]!r}"
                            + (f" (+{len(missing) - 1} more keys)" if len(missing) > 1 else "")
                            + "; it is not the official F/CCF Wide-ResNet (f.*, class_output.*, energy_output.*)")
    if any(k.startswith("f.layer4.") for k in weights):
        raise JembenchError(f"checkpoint {path} has an f.layer4 stage (SADA-JEM's 64-pixel WRN); only 32x32 "
                            f"models are supported")
    check_ranks(weights, path)
    blocks = {}
    for stage in (1, 2, 3):
        prefix = f"f.layer{stage}."
        blocks[stage] = len({k[len(prefix):].split(".")[0] for k in weights if k.startswith(prefix)})
    if len(set(blocks.values())) != 1:
        raise JembenchError(f"checkpoint {path}: its three WRN stages have {sorted(blocks.values())} blocks; an "
                            f"official WRN has the same number in each")
    if weights["f.conv1.weight"].dim() != 4 or weights["class_output.weight"].dim() != 2:
        raise JembenchError(f"checkpoint {path}: f.conv1.weight / class_output.weight have the wrong number of "
                            f"dimensions; it is not the official Wide-ResNet")
    widen, rest = divmod(weights["f.layer1.0.conv1.weight"].shape[0], 16)
    if rest or widen < 1:
        raise JembenchError(f"checkpoint {path}: f.layer1.0.conv1 has {weights['f.layer1.0.conv1.weight'].shape[0]} "
                            f"output channels, not a multiple of 16; it is not the official Wide-ResNet")
    if "f.bn1.running_mean" in weights:
        norm = "batch"
    elif any(k.startswith(("f.bn1.", "f.layer1.0.bn1.")) for k in weights):
        found = sorted(k for k in weights if k.startswith("f.bn1."))
        raise JembenchError(f"checkpoint {path} uses a norm other than none / batch ({', '.join(found)[:120]}); "
                            f"instance, layer and act norms cannot be told apart from the keys and are not supported")
    else:
        norm = None
    return {"depth": 6 * blocks[1] + 4, "widen_factor": widen, "n_classes": weights["class_output.weight"].shape[0],
            "in_channels": weights["f.conv1.weight"].shape[1], "norm": norm,
            "unused_linear": "f.linear.weight" in weights, "pool": "official"}


def official_config(found: OfficialWeights, path: str, uncond: bool = False) -> dict:
    """The ``config`` of an official checkpoint once loaded: its automatic name, the codebase it came from and
    how log p(x) is read from it (:func:`jembench.models.load_checkpoint` builds the model)."""
    return {"name": _auto_name(found.method, Path(path).stem),
            "source": f"official checkpoint ({found.codebase})", "format": found.codebase,
            "log_px": "energy_output head (F, --uncond)" if uncond else "logsumexp of class_output (CCF)",
            "arch": "wrn", "arch_kwargs": found.arch_kwargs}


def official_image_shape(found: OfficialWeights) -> tuple[int, ...]:
    """The image shape of an official checkpoint: its buffer's, else 32×32 with the network's input channels."""
    if found.buffer is not None:
        return tuple(found.buffer.shape[1:])
    return (found.arch_kwargs["in_channels"], 32, 32)


class EnergyHeadJEM(nn.Module):
    """The official ``F`` of a ``--uncond`` run as an energy model: log p(x) comes from the 1-unit
    ``energy_output`` head g(x), p(y|x) from ``class_output`` c(x) (JEM train_wrn_ebm.py:59-65; JEMPP and SADAJEM
    models/jem_models.py ``F``).

    ``forward`` returns the logits of that joint density, f(x)[y] = log p(x, y) + log Z = log_softmax(c(x))[y] +
    g(x) (JEM Eq. 4 with p(x, y) = p(y|x) p(x)). Every JEM identity then holds for the ``F`` model with no
    special case in any suite: LSE_y f(x)[y] = g(x) (the OOD score log p(x), its input gradient, SGLD on
    log p(x)), softmax(f(x)) = softmax(c(x)) and argmax f = argmax c (accuracy, calibration, max_y p(y|x),
    cross-entropy attacks), and f(x)[y] = log p(x, y) (class-conditional SGLD). Only the raw logit values differ
    from c(x), by the per-example constant g(x) − LSE(c(x)); logit *averages* over several inputs (EOT) therefore
    differ from averaging c(x).
    """

    log_px_head = "energy_output"

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    # the official layout stays reachable (``model.f``, ``model.class_output``, ``model.energy_output``)
    f = property(lambda self: self.net.f)
    class_output = property(lambda self: self.net.class_output)
    energy_output = property(lambda self: self.net.energy_output)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        net: Any = self.net  # the official F: f, class_output, energy_output are its submodules
        z = net.f(x)
        return F.log_softmax(net.class_output(z), dim=1) + net.energy_output(z)


def _auto_name(method: str, stem: str) -> str:
    return f"{method}-official-{stem}" if method != UNKNOWN else f"official-{stem}"


def resolve_method(ckpt, method: str | None) -> None:
    """Set ``ckpt.method`` for evaluation: ``method`` when given (a plain lower-case name), else the one the
    file implies. An official checkpoint whose layout fits several methods needs ``method`` — ``jembench eval``
    asks for ``--method`` instead of guessing, so a record never says ``unknown``. The automatic name of an
    official checkpoint follows the method."""
    if method is None:
        if ckpt.method == UNKNOWN:
            raise JembenchError(f"{ckpt.path} is an official checkpoint without f.linear or YOPO aliases "
                                f"({NO_LINEAR_CODE}), which does not say which method trained it; pass --method "
                                f"sada_jem or --method jempp (choices: {', '.join(METHODS)})")
        return
    if not re.fullmatch(r"[a-z][a-z0-9_]{0,39}", method):
        raise JembenchError(f"--method {method[:60]!r} must be a lower-case name such as {', '.join(METHODS)}")
    stem = Path(ckpt.path).stem
    if ckpt.config.get("format") and ckpt.config.get("name") == _auto_name(ckpt.method, stem):
        ckpt.config = {**ckpt.config, "name": _auto_name(method, stem)}
    ckpt.method = method


def class_gaussians(means: object, covs: object, image_shape: tuple[int, ...], n_classes: int,
                    mean_path: str | Path, cov_path: str | Path, jitter: float = 1e-4):
    """JEM++ / SADA-JEM's saved informative-init statistics (the tensors of ``mean_path`` and ``cov_path``, read
    by :func:`jembench.models.load_class_gaussians`) as a :class:`jembench.sampling.ClassGaussianInit`.

    The authors' files are bare tensors: ``<dataset>_mean.pt`` (C, D) and ``<dataset>_cov.pt`` (C, D, D), D = the
    flattened image size (JEMPP train_jempp.py:172-173, eval_jempp.py:57-58; SADAJEM multi_center.py:41-44).
    Their sampler draws from ``MultivariateNormal(mean_c, cov_c + 1e-4 I)`` and clamps to [-1, 1]
    (JEMPP train_jempp.py:162-182), which ``ClassGaussianInit`` does with the Cholesky factor of the same matrix.
    Both files must be finite, every covariance symmetric (Cholesky reads only one triangle, so an asymmetric
    matrix would be used as a different one without a word) and positive semi-definite up to the jitter.
    """
    from .sampling import ClassGaussianInit

    dim = math.prod(image_shape)
    for what, t, shape in (("class means", means, (n_classes, dim)), ("class covariances", covs,
                                                                       (n_classes, dim, dim))):
        if not isinstance(t, torch.Tensor) or tuple(t.shape) != shape or not t.is_floating_point():
            got = f"{t.dtype} {tuple(t.shape)}" if isinstance(t, torch.Tensor) else type(t).__name__
            src = mean_path if what == "class means" else cov_path
            raise JembenchError(f"{what} file {src} must hold a float tensor of shape {shape} (the official "
                                f"<dataset>_{'mean' if what == 'class means' else 'cov'}.pt), got {got}")
    assert isinstance(means, torch.Tensor) and isinstance(covs, torch.Tensor)  # checked just above
    for what, t, src in (("class means", means, mean_path), ("class covariances", covs, cov_path)):
        if not torch.isfinite(t).all():
            bad = int((~torch.isfinite(t)).flatten(1).any(1).nonzero()[0])
            raise JembenchError(f"{what} file {src}: class {bad} holds NaN or Inf values; pass the official "
                                f"<dataset>_{'mean' if what == 'class means' else 'cov'}.pt")
    eye = torch.eye(dim, dtype=torch.float64)
    trils = []
    for c in range(n_classes):
        cov = covs[c].double()
        scale = float(cov.abs().max()) or 1.0
        asymmetry = float((cov - cov.T).abs().max())
        if asymmetry > 1e-5 * scale:  # float32 round-off of a symmetric matrix is ~1e-7 of its scale
            raise JembenchError(f"class covariances file {cov_path}: class {c}'s covariance is not symmetric (its "
                                f"largest |C - C^T| is {asymmetry:.3g}); pass the official <dataset>_cov.pt")
        # Cholesky of C + jitter I succeeds exactly when every eigenvalue of C exceeds -jitter: C is positive
        # semi-definite up to the jitter the official sampler adds (JEMPP train_jempp.py:176)
        factor, info = torch.linalg.cholesky_ex(cov + jitter * eye)
        if info.item() != 0:
            raise JembenchError(f"class covariances file {cov_path}: class {c}'s covariance + {jitter:g} I is not "
                                f"positive definite (the covariance is not positive semi-definite); pass the "
                                f"official <dataset>_cov.pt")
        trils.append(factor.float())
    return ClassGaussianInit(means.float(), torch.stack(trils), tuple(image_shape))
