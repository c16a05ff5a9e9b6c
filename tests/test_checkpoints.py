"""Checkpoints: our format round-trips bit-exactly; official JEM checkpoints load and give the same logits."""

import torch
import torch.nn.functional as F
from torch import nn

from jembench.errors import JembenchError
from jembench.models import load_checkpoint, save_checkpoint
from jembench.sampling import UniformInit
from reference_models.wideresnet import wide_resnet


def test_round_trip_is_bit_exact(tmp_path):
    torch.manual_seed(0)
    kwargs = dict(depth=10, widen_factor=2, n_classes=10, in_channels=1, norm="batch")
    model = wide_resnet(**kwargs)
    model.train()
    model(torch.randn(8, 1, 8, 8))  # move the batch-norm running statistics away from their init
    opt = torch.optim.Adam(model.parameters())
    model(torch.randn(4, 1, 8, 8)).sum().backward()
    opt.step()
    buffer = {"images": torch.rand(20, 1, 8, 8), "labels": torch.arange(20) % 10, "reinit_freq": 0.05,
              "init": UniformInit((1, 8, 8)).state_dict()}
    path = tmp_path / "c.pt"
    save_checkpoint(path, arch="wrn", arch_kwargs=kwargs, model=model, method="jem", dataset="digits", n_classes=10,
                    image_shape=(1, 8, 8), config={"lr": 1e-4}, buffer=buffer, optimizer=opt.state_dict(),
                    epoch=3, iteration=42)
    loaded = load_checkpoint(path)
    for (k1, v1), (k2, v2) in zip(model.state_dict().items(), loaded.model.state_dict().items()):
        assert k1 == k2 and torch.equal(v1, v2)
    assert torch.equal(loaded.buffer, buffer["images"]) and torch.equal(loaded.buffer_labels, buffer["labels"])
    assert loaded.state["iteration"] == 42 and loaded.state["epoch"] == 3
    model.eval()
    x = torch.randn(5, 1, 8, 8)
    assert torch.equal(model(x), loaded.model(x))
    assert len(loaded.sha256) == 64 and loaded.method == "jem" and loaded.image_shape == (1, 8, 8)


# ---- an independent transcription of the official JEM code's network (wgrathwohl/JEM: models/wideresnet.py
# and train_wrn_ebm.py's F), used only to produce an official-format state dict and reference logits.
class _OfficialBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.lrelu = nn.LeakyReLU(0.2)
        self.bn1 = nn.Identity()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, bias=True)
        self.dropout = nn.Identity()
        self.bn2 = nn.Identity()
        self.conv2 = nn.Conv2d(cout, cout, 3, stride=stride, padding=1, bias=True)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=True))

    def forward(self, x):
        out = self.dropout(self.conv1(self.lrelu(self.bn1(x))))
        return self.conv2(self.lrelu(self.bn2(out))) + self.shortcut(x)


class _OfficialWRN(nn.Module):
    def __init__(self, depth, k):
        super().__init__()
        n = (depth - 4) // 6
        stages = [16, 16 * k, 32 * k, 64 * k]
        self.lrelu = nn.LeakyReLU(0.2)
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1, bias=True)
        layers, cin = [], 16
        for planes, stride in zip(stages[1:], (1, 2, 2)):
            blocks = []
            for s in [stride] + [1] * (n - 1):
                blocks.append(_OfficialBlock(cin, planes, s))
                cin = planes
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = layers
        self.bn1 = nn.Identity()
        self.last_dim = stages[3]
        self.linear = nn.Linear(stages[3], 10)

    def forward(self, x):
        out = self.layer3(self.layer2(self.layer1(self.conv1(x))))
        out = F.avg_pool2d(self.lrelu(self.bn1(out)), 8)
        return out.view(out.size(0), -1)


class _OfficialF(nn.Module):
    def __init__(self, depth=10, width=2, n_classes=10):
        super().__init__()
        self.f = _OfficialWRN(depth, width)
        self.energy_output = nn.Linear(self.f.last_dim, 1)
        self.class_output = nn.Linear(self.f.last_dim, n_classes)

    def classify(self, x):
        return self.class_output(self.f(x)).squeeze()


def test_official_jem_checkpoint_loads_with_same_logits(tmp_path):
    torch.manual_seed(0)
    official = _OfficialF(depth=16, width=2, n_classes=10)
    keys = list(official.state_dict())
    assert keys[0].startswith("f.") and any(k.startswith("class_output.") for k in keys)
    assert any(k.startswith("energy_output.") for k in keys)
    replay = torch.rand(50, 3, 32, 32) * 2 - 1
    path = tmp_path / "official.pt"
    torch.save({"model_state_dict": official.state_dict(), "replay_buffer": replay}, path)
    loaded = load_checkpoint(path, dataset="cifar10")
    x = torch.rand(4, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(loaded.model(x), official.classify(x), atol=1e-5)
    assert loaded.n_classes == 10 and loaded.dataset == "cifar10" and torch.equal(loaded.buffer, replay)
    assert loaded.model.f.layer1[0].conv1.out_channels == 32 and len(loaded.model.f.layer1) == 2


def test_non_checkpoint_and_truncated_files_are_clear_errors(tmp_path):
    import pytest

    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(JembenchError, match="truncated or not a PyTorch file"):
        load_checkpoint(bad)
    good = tmp_path / "good.pt"
    torch.save({"model_state_dict": _OfficialF().state_dict()}, good)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[:2000])
    with pytest.raises(JembenchError, match="truncated"):
        load_checkpoint(cut)
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(JembenchError, match="not a checkpoint"):
        load_checkpoint(tmp_path / "list.pt")
    with pytest.raises(JembenchError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


class _Evil:
    def __reduce__(self):
        import os
        return (os.system, ("touch /tmp/jembench_pwned",))


def test_checkpoint_needing_unpickling_is_refused(tmp_path):
    import os

    import pytest

    marker = "/tmp/jembench_pwned"
    if os.path.exists(marker):
        os.remove(marker)
    path = tmp_path / "evil.pt"
    torch.save({"model_state_dict": {}, "payload": _Evil()}, path)
    with pytest.raises(JembenchError, match="refusing to load"):
        load_checkpoint(path)
    assert not os.path.exists(marker)
