"""Independent transcriptions of the official model classes, used by the tests to write checkpoints exactly as
each codebase writes them and to compute reference outputs. Written from the official sources (cited per
class); deliberately imports nothing from jembench or reference_models, so a test comparing jembench's import
of these files with these modules compares two separate readings of the official code.

Parameter *names* follow the official attribute names (they are what a state dict is made of); everything else
is written independently.
"""

from __future__ import annotations

import torch
import torch.nn.functional as tf
from torch import nn


class Identity(nn.Module):
    """The official ``Identity`` / ``get_norm(n, None)``: no parameters."""

    def forward(self, x):
        return x


def get_norm(channels: int, norm: str | None) -> nn.Module:
    """JEM wideresnet.py:66-76, JEMPP/SADAJEM models/norms.py ``get_norm`` (none and batch only)."""
    if norm in (None, "none"):
        return Identity()
    if norm == "batch":
        return nn.BatchNorm2d(channels, momentum=0.9)
    raise ValueError(f"transcription covers norm None / 'batch', not {norm!r}")


class wide_basic(nn.Module):  # noqa: N801 - the official class name
    """Pre-activation block (JEM wideresnet.py:42-63; JEMPP wideresnet_yopo.py:37-58; SADAJEM wideresnet.py:37-61):
    out = dropout(conv1(lrelu(bn1(x)))); out = conv2(lrelu(bn2(out))); out += shortcut(x)."""

    def __init__(self, in_planes: int, planes: int, stride: int, norm: str | None, leak: float = 0.2):
        super().__init__()
        self.lrelu = nn.LeakyReLU(leak)
        self.bn1 = get_norm(in_planes, norm)
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, padding=1, bias=True)
        self.dropout = Identity()  # dropout_rate 0.0 (every official default)
        self.bn2 = get_norm(planes, norm)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=True)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, kernel_size=1, stride=stride, bias=True))

    def forward(self, x):
        h = self.conv1(self.lrelu(self.bn1(x)))
        h = self.dropout(h)
        h = self.conv2(self.lrelu(self.bn2(h)))
        h += self.shortcut(x)
        return h


def _stages(owner: nn.Module, depth: int, k: int, norm: str | None) -> list[nn.Sequential]:
    assert (depth - 4) % 6 == 0
    n = (depth - 4) // 6
    layers, cin = [], 16
    for planes, stride in ((16 * k, 1), (32 * k, 2), (64 * k, 2)):
        blocks = []
        for s in [stride] + [1] * (n - 1):
            blocks.append(wide_basic(cin, planes, s, norm))
            cin = planes
        layers.append(nn.Sequential(*blocks))
    owner.last_dim = 64 * k
    return layers


class _Trunk(nn.Module):
    """The WRN body the three codebases share: conv1 → layer1..3 → lrelu(bn1) → avg_pool2d(8) → features
    (JEM wideresnet.py:114-124; JEMPP wideresnet_yopo.py:107-123; SADAJEM wideresnet.py:109-125 at 32 px)."""

    yopo = False  # JEM++: conv1 again as ``layer_one`` and layer1..3 + bn1 again in ``other_layers``

    def __init__(self, depth: int, k: int, norm: str | None = None):
        super().__init__()
        self.lrelu = nn.LeakyReLU(0.2)
        self.conv1 = nn.Conv2d(3, 16, kernel_size=3, stride=1, padding=1, bias=True)
        if self.yopo:  # registered between conv1 and layer1, as in the official class
            self.layer_one = self.conv1
            self.other_layers = nn.ModuleList()
        self.layer1, self.layer2, self.layer3 = _stages(self, depth, k, norm)
        self.bn1 = get_norm(64 * k, norm)
        if self.yopo:
            for module in (self.layer1, self.layer2, self.layer3, self.bn1):
                self.other_layers.append(module)

    def forward(self, x, *unused, **unused_kw):  # JEM++'s forward(x, vx=None, feature=True)
        out = self.layer3(self.layer2(self.layer1(self.conv1(x))))
        out = tf.avg_pool2d(self.lrelu(self.bn1(out)), 8)  # 32x32 inputs: an 8x8 map -> 1x1
        return out.view(out.size(0), -1)


class JEMWideResNet(_Trunk):
    """wgrathwohl/JEM wideresnet.py:79-124, with an unused ``linear`` (always 10 outputs, because F never passes
    num_classes)."""

    def __init__(self, depth: int, k: int, norm: str | None = None):
        super().__init__(depth, k, norm)
        self.linear = nn.Linear(64 * k, 10)


class YOPOWideResNet(_Trunk):
    """sndnyang/JEMPP models/wideresnet_yopo.py:60-123: ``layer_one`` is ``conv1`` registered a second time and
    ``other_layers`` holds layer1..3 and bn1 again (:80-91); no ``linear`` (:94-95)."""

    yopo = True


class SADAWideResNet(_Trunk):
    """sndnyang/SADAJEM models/wideresnet.py:64-125 on 32x32 inputs (no layer4): no ``linear`` (:97)."""


TRUNKS = {"jem": JEMWideResNet, "jempp": YOPOWideResNet, "sada_jem": SADAWideResNet}


class F(nn.Module):
    """The official ``F`` (JEM train_wrn_ebm.py:52-65; JEMPP / SADAJEM models/jem_models.py): forward(x) is the
    1-unit ``energy_output`` head (log p(x) of a ``--uncond`` model), classify(x) the ``class_output`` logits."""

    def __init__(self, trunk: nn.Module, n_classes: int = 10):
        super().__init__()
        self.f = trunk
        self.energy_output = nn.Linear(trunk.last_dim, 1)
        self.class_output = nn.Linear(trunk.last_dim, n_classes)

    def forward(self, x, y=None):
        return self.energy_output(self.f(x)).squeeze()

    def classify(self, x):
        return self.class_output(self.f(x)).squeeze()


class CCF(F):
    """The official ``CCF`` (default, not ``--uncond``): log p(x) = logsumexp of the class logits."""

    def forward(self, x, y=None):
        logits = self.classify(x)
        if y is None:
            return logits.logsumexp(1)
        return torch.gather(logits, 1, y[:, None])


def official_model(codebase: str, depth: int = 10, width: int = 2, norm: str | None = None, n_classes: int = 10,
                   uncond: bool = False, seed: int = 0) -> F:
    """A randomly initialised official ``F`` / ``CCF`` of ``codebase`` (``jem``, ``jempp``, ``sada_jem``); with
    batch norm, the running statistics are moved off their initial values by a few train-mode forwards."""
    torch.manual_seed(seed)
    model = (F if uncond else CCF)(TRUNKS[codebase](depth, width, norm), n_classes)
    if norm == "batch":
        model.train()
        with torch.no_grad():
            for _ in range(3):
                model.classify(torch.randn(8, 3, 32, 32) * 0.5 + 0.1)
    return model.eval()
