"""The fake accelerator (tests/fake_device.py) catches what breaks or slows a GPU run — and jembench passes it.

Part 1 shows the checker can fail: each rule on a one-line example, its random streams, and that its arithmetic
is the CPU's. Part 2 (tests/test_device_paths.py) runs every trainer and every suite on it.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fake_device import DEVICE, NAME, DeviceMixing, DeviceTensor, monitor


@pytest.fixture
def mon():
    with monitor() as m:
        yield m


def test_ops_mixing_cpu_and_device_tensors_are_refused(mon):
    x = torch.ones(3, device=DEVICE)
    with pytest.raises(DeviceMixing, match="mixes a CPU tensor of shape"):
        x + torch.ones(3)
    with pytest.raises(DeviceMixing, match="mixes a CPU tensor"):
        x[torch.tensor([0, 1])]  # an index on the host: CUDA copies it (a sync); here it is refused
    with pytest.raises(DeviceMixing, match=f"{NAME}:0, {NAME}:1"):
        x + torch.ones(3, device=f"{NAME}:1")
    assert torch.equal((x * torch.tensor(2.0)).cpu(), torch.full((3,), 2.0))  # a 0-dim CPU tensor is a scalar


def test_a_cpu_generator_cannot_draw_device_tensors(mon):
    with pytest.raises(DeviceMixing, match="CPU torch.Generator"):
        torch.randn(3, generator=torch.Generator().manual_seed(0), device=DEVICE)
    with pytest.raises(DeviceMixing, match="CPU torch.Generator"):
        torch.empty(3, device=DEVICE).normal_(generator=torch.Generator())


def test_numpy_of_a_device_tensor_raises_as_on_cuda(mon):
    with pytest.raises(TypeError, match="can't convert fakegpu:0 device type tensor to numpy"):
        torch.ones(2, device=DEVICE).numpy()
    assert torch.ones(2, device=DEVICE).cpu().numpy().tolist() == [1.0, 1.0]


def test_non_blocking_copies_need_pinned_memory(mon):
    with pytest.raises(DeviceMixing, match="non_blocking host-to-device copy from unpinned memory"):
        torch.ones(2).to(DEVICE, non_blocking=True)


def test_host_syncs_are_counted_per_call_site_and_kind(mon):
    x = torch.arange(6.0, device=DEVICE)
    x.sum().item()
    bool((x > 2).any())
    x[x > 2]
    x.nonzero()
    x.tolist()
    x.cpu()
    torch.tensor([1.0, 2.0], device=DEVICE)
    x + 1  # no sync
    torch.rand(4, device=DEVICE)  # no sync
    site = "tests/test_fake_device.py:test_host_syncs_are_counted_per_call_site_and_kind"
    assert mon.all_syncs() == {(site, "item"): 2, (site, "data-dependent"): 2, (site, "d2h"): 2, (site, "h2d"): 1}


def test_hot_scopes_are_counted_per_call():
    with monitor(hot=("tests/test_fake_device.py:_hot",)) as m:
        for _ in range(3):
            _hot(torch.ones(2, device=DEVICE))
        torch.ones(2, device=DEVICE).sum().item()  # outside the scope
    assert m.calls["tests/test_fake_device.py:_hot"] == 3
    assert m.syncs_in("tests/test_fake_device.py:_hot") == {("tests/test_fake_device.py:_hot", "item"): 3}
    assert m.per_call("tests/test_fake_device.py:_hot") == {("tests/test_fake_device.py:_hot", "item"): 1}


def _hot(x: torch.Tensor) -> float:
    return (x * 2).sum().item()


def test_each_device_has_its_own_random_stream(mon):
    torch.manual_seed(0)
    a = torch.rand(3, device=DEVICE)
    torch.rand(5)  # the CPU stream does not move the device's
    cpu_state = torch.get_rng_state()
    torch.randn_like(a)  # an op without a generator argument draws from the device's stream too
    assert torch.equal(torch.get_rng_state(), cpu_state)
    torch.manual_seed(0)
    a = torch.rand(3, device=DEVICE)
    b = torch.rand(3, device=DEVICE)
    torch.manual_seed(0)
    assert torch.equal(torch.rand(3, device=DEVICE).cpu(), a.cpu())
    assert torch.equal(torch.rand(3, device=DEVICE).cpu(), b.cpu())
    with torch.random.fork_rng(devices=[0], device_type=NAME):
        torch.rand(7, device=DEVICE)
    after = torch.rand(3, device=DEVICE)
    torch.manual_seed(0)
    torch.rand(6, device=DEVICE)
    assert torch.equal(torch.rand(3, device=DEVICE).cpu(), after.cpu())  # fork_rng restored the device stream


def test_arithmetic_and_autograd_are_the_cpus(mon):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(64, 2))
    x = torch.randn(5, 3, 6, 6)
    cpu_out = net(x)
    cpu_out.logsumexp(1).sum().backward()
    cpu_grads = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    net.to(DEVICE)
    assert all(isinstance(p, DeviceTensor) and isinstance(p, nn.Parameter) for p in net.parameters())
    out = net(x.to(DEVICE))
    out.logsumexp(1).sum().backward()
    assert out.device == torch.device(DEVICE)
    assert torch.equal(out.detach().cpu(), cpu_out.detach())
    assert all(torch.equal(p.grad.cpu(), g) for p, g in zip(net.parameters(), cpu_grads))


def test_saved_device_tensors_load_with_weights_only(mon, tmp_path):
    torch.save({"w": torch.arange(3.0, device=DEVICE)}, tmp_path / "t.pt")
    on_cpu = torch.load(tmp_path / "t.pt", map_location="cpu", weights_only=True)["w"]
    assert type(on_cpu) is torch.Tensor and on_cpu.tolist() == [0.0, 1.0, 2.0]
    on_device = torch.load(tmp_path / "t.pt", weights_only=True)["w"]
    assert on_device.device == torch.device(DEVICE)
