"""Wide Residual Networks (Zagoruyko & Komodakis 2016) with the official JEM code's parameter layout.

The module tree matches the JEM repository's ``F`` wrapper exactly — ``f.`` (the WRN trunk: ``conv1``,
``layer1..3`` of ``wide_basic`` blocks, ``bn1``, an unused ``linear``), ``energy_output.`` and
``class_output.`` — so an official checkpoint's ``model_state_dict`` loads with ``strict=True`` (JEM++ / SADA-JEM
trunks have no ``linear``: ``unused_linear=False``; :mod:`jembench.importers` maps their files onto this module).
Differences from the official code, none of which changes the parameters: the final pooling of jembench's own
models is adaptive (``pool="adaptive"``: equal to ``avg_pool2d(out, 8)`` on 32×32 inputs, and also valid for 8×8
digits); checkpoints imported from the official code pool as it does (``pool="official"``: ``avg_pool2d(out, 8)``,
JEM wideresnet.py:123, which on CelebA's 3×39×32 ``Resize(32)`` inputs averages the top-left 8×8 of the 10×8 final
map). ``forward`` returns the class logits f(x) directly (the energy model contract of :mod:`jembench.models`).

JEM uses no normalisation (``norm=None``); JEM++ / SADA-JEM use batch norm (``norm="batch"``). Batch norm
keeps the official code's ``nn.BatchNorm2d(n, momentum=0.9)`` (PyTorch convention: the new batch gets weight
.9 in the running statistics), so official running statistics mean the same thing here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from jembench.models import register_architecture


def _norm(channels: int, norm: str | None) -> nn.Module:
    if norm is None or norm == "none":
        return nn.Identity()
    if norm == "batch":
        return nn.BatchNorm2d(channels, momentum=0.9)
    if norm == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if norm == "layer":
        return nn.GroupNorm(1, channels)
    raise ValueError(f"unknown norm {norm!r}; use none, batch, instance or layer")


class WideBasic(nn.Module):
    """Pre-activation residual block: (norm → leaky ReLU → conv → dropout) × 2 + shortcut."""

    def __init__(self, in_planes: int, planes: int, dropout_rate: float, stride: int, norm: str | None,
                 leak: float = 0.2):
        super().__init__()
        self.lrelu = nn.LeakyReLU(leak)
        self.bn1 = _norm(in_planes, norm)
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, padding=1, bias=True)
        self.dropout = nn.Identity() if dropout_rate == 0.0 else nn.Dropout(p=dropout_rate)
        self.bn2 = _norm(planes, norm)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=True)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, kernel_size=1, stride=stride, bias=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.dropout(self.conv1(self.lrelu(self.bn1(x))))
        out = self.conv2(self.lrelu(self.bn2(out)))
        return out + self.shortcut(x)


POOLS = ("adaptive", "official")  # the whole final map / the official avg_pool2d(out, 8)


class WideResNetTrunk(nn.Module):
    """WRN-depth-k feature extractor (the official ``Wide_ResNet``); returns pooled features (N, 64k)."""

    def __init__(self, depth: int, widen_factor: int, in_channels: int = 3, norm: str | None = None,
                 dropout_rate: float = 0.0, leak: float = 0.2, n_classes: int = 10, unused_linear: bool = True,
                 pool: str = "adaptive"):
        super().__init__()
        if pool not in POOLS:
            raise ValueError(f"WRN pool must be one of {', '.join(POOLS)}, got {pool!r}")
        self.pool = pool
        if (depth - 4) % 6 != 0 or depth < 10:
            raise ValueError(f"WRN depth must be 6n+4 with n >= 1 (10, 16, 22, 28, ...), got {depth}")
        n = (depth - 4) // 6
        stages = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.in_planes = 16
        self.lrelu = nn.LeakyReLU(leak)
        self.conv1 = nn.Conv2d(in_channels, stages[0], kernel_size=3, stride=1, padding=1, bias=True)
        self.layer1 = self._layer(stages[1], n, dropout_rate, 1, norm)
        self.layer2 = self._layer(stages[2], n, dropout_rate, 2, norm)
        self.layer3 = self._layer(stages[3], n, dropout_rate, 2, norm)
        self.bn1 = _norm(stages[3], norm)
        self.last_dim = stages[3]
        if unused_linear:  # unused; in the JEM code's state dict (wideresnet.py:102), not in JEM++'s / SADA-JEM's
            self.linear = nn.Linear(stages[3], n_classes)

    def _layer(self, planes: int, n_blocks: int, dropout_rate: float, stride: int, norm: str | None) -> nn.Sequential:
        blocks = []
        for s in [stride] + [1] * (n_blocks - 1):
            blocks.append(WideBasic(self.in_planes, planes, dropout_rate, s, norm))
            self.in_planes = planes
        return nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layer3(self.layer2(self.layer1(self.conv1(x))))
        out = self.lrelu(self.bn1(out))
        if self.pool == "official":
            return F.avg_pool2d(out, 8).flatten(1)
        return F.adaptive_avg_pool2d(out, 1).flatten(1)


class JEMWideResNet(nn.Module):
    """The official JEM ``F``: WRN trunk + class head (logits f(x)) + an energy head (unused by JEM's loss)."""

    def __init__(self, depth: int = 28, widen_factor: int = 10, n_classes: int = 10, in_channels: int = 3,
                 norm: str | None = None, dropout_rate: float = 0.0, unused_linear: bool = True,
                 pool: str = "adaptive"):
        super().__init__()
        self.f = WideResNetTrunk(depth, widen_factor, in_channels=in_channels, norm=norm, dropout_rate=dropout_rate,
                                 unused_linear=unused_linear, pool=pool)
        self.energy_output = nn.Linear(self.f.last_dim, 1)
        self.class_output = nn.Linear(self.f.last_dim, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.class_output(self.f(x))


@register_architecture("wrn")
def wide_resnet(depth: int = 28, widen_factor: int = 10, n_classes: int = 10, in_channels: int = 3,
                norm: str | None = None, dropout_rate: float = 0.0, unused_linear: bool = True,
                pool: str = "adaptive") -> JEMWideResNet:
    """``unused_linear=False``: the JEM++ / SADA-JEM trunk, whose ``f.linear`` is commented out
    (JEMPP models/wideresnet_yopo.py:94-95, SADAJEM models/wideresnet.py:97). ``pool="official"``: the official
    fixed ``avg_pool2d(out, 8)`` (imported checkpoints), ``"adaptive"``: the whole final map."""
    return JEMWideResNet(depth, widen_factor, n_classes, in_channels, norm, dropout_rate, unused_linear, pool)
