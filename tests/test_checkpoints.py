"""Checkpoints: our format round-trips bit-exactly; unreadable, truncated and code-carrying files are refused.
(Official JEM / JEM++ / SADA-JEM files: tests/test_importers.py.)"""

import torch
from official_models import official_model

from jembench.errors import JembenchError
from jembench.models import load_checkpoint, save_checkpoint
from jembench.sampling import UniformInit
from jembench.reference_models.wideresnet import wide_resnet


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


def test_non_checkpoint_and_truncated_files_are_clear_errors(tmp_path):
    import pytest

    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(JembenchError, match="truncated or not a PyTorch file"):
        load_checkpoint(bad)
    good = tmp_path / "good.pt"
    torch.save({"model_state_dict": official_model("jem").state_dict()}, good)
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
