"""The device-dependent guarantees, on every device there is: the CPU, the fake accelerator (tests/fake_device.py)
and CUDA when a GPU is present (skipped with the reason otherwise; ``make gpu-smoke`` runs the end-to-end checks
on a GPU machine).

* resume on the device continues every random stream: N + N iterations equal 2N uninterrupted (bit for bit where
  the arithmetic is deterministic — the fake device; within a stated tolerance on CUDA, whose cuDNN backward
  kernels may accumulate in another order; the CPU case is tests/test_resume.py's);
* suites on the device agree with the CPU within :mod:`benchmarks.device_compare`'s tolerances (accelerators);
* the robustness micro-batch replays the device's random stream: chunked equals unchunked;
* the memory check looks at the memory where the buffer lives;
* precision is a scope: bf16 autocast inside, every flag back afterwards, and the record says which.
"""

from __future__ import annotations

import pytest
import torch

import fake_device
from benchmarks.device_compare import compare

import jembench
from jembench import memory, precision
from jembench.errors import JembenchError
from jembench.refine import RefinedClassifier
from jembench.sampling import ReplayBuffer, SGLDConfig, UniformInit

NO_GPU = "no CUDA GPU here: this case runs where one is present"
DEVICES = ["cpu", pytest.param(fake_device.DEVICE, id="fake"),
           pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_GPU))]


ACCELERATORS = DEVICES[1:]  # where a guarantee is about the device (the CPU case is tests/test_resume.py's, and
#                             comparing the CPU with itself proves nothing)


@pytest.fixture(params=DEVICES)
def device(request):
    yield from _on(request.param)


@pytest.fixture(params=ACCELERATORS)
def accelerator(request):
    yield from _on(request.param)


def _on(name: str):
    if name.startswith(fake_device.NAME):
        with fake_device.monitor():  # strict: a device-mixing bug on the way fails the test
            yield name
    else:
        yield name


def _weights(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def test_resume_on_the_device_equals_an_uninterrupted_run(accelerator, tmp_path):
    device = accelerator
    common = dict(progress=False, device=device, dataset="digits", log_every=2, sgld_steps=2)
    straight = jembench.train("jem", "tiny", tmp_path / "straight", max_iters=4, **common)
    jembench.train("jem", "tiny", tmp_path / "resumed", max_iters=2, **common)
    resumed = jembench.train("jem", "tiny", tmp_path / "resumed", resume=True, max_iters=4, **common)
    a, b = _weights(straight), _weights(resumed)
    tensors = [(a["model_state"][k], b["model_state"][k]) for k in a["model_state"]]
    tensors.append((a["buffer"]["images"], b["buffer"]["images"]))
    for x, y in tensors:
        if device == "cuda":  # cuDNN's backward may sum in another order: the same run, not the same bits
            torch.testing.assert_close(y, x, rtol=1e-3, atol=1e-4)
        else:
            assert torch.equal(x, y)
    assert a["extra"]["environment"]["device"] == str(torch.device(device))


@pytest.mark.parametrize("suite", ["accuracy", "ood"])
def test_suites_on_the_device_agree_with_the_cpu(accelerator, suite, tiny_jem_checkpoint, tmp_path):
    device = accelerator
    records = [jembench.evaluate(tiny_jem_checkpoint, suite, preset="tiny", device=d, progress=False,
                                 out=tmp_path / d.replace(":", "-") / f"{suite}.json") for d in ("cpu", device)]
    failures, _ = compare(*records)
    assert not failures
    assert records[1]["environment"]["device"] == str(torch.device(device))


def test_micro_batch_replays_the_devices_stream(device):
    torch.manual_seed(0)
    from jembench.reference_models.wideresnet import wide_resnet

    model = wide_resnet(depth=10, widen_factor=1, n_classes=3, in_channels=1, norm="batch").eval().to(device)
    x = (torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1).to(device)
    out = []
    for micro in (0, 4):
        refined = RefinedClassifier(model, SGLDConfig(n_steps=2, noise=0.01), n_draws=3, input_noise=0.03,
                                    micro_batch=micro)
        torch.manual_seed(3)
        with torch.no_grad():
            out.append(refined(x).cpu())
        out.append(torch.rand(2, device=device).cpu())  # where the stream was left
    torch.testing.assert_close(out[2], out[0], rtol=1e-5, atol=1e-6)
    assert torch.equal(out[1], out[3])


def test_the_memory_check_looks_where_the_buffer_lives(device, monkeypatch):
    shape = (1, 8, 8)
    if device.startswith(fake_device.NAME):
        monkeypatch.setitem(fake_device.MEMORY, "free", 1 << 20)  # 1 MiB free on the fake device
        with pytest.raises(JembenchError, match=rf"needs .* but only 1.0 MiB of {device} memory is available"):
            ReplayBuffer(10_000, 10, UniformInit(shape), device)
    elif device == "cuda":
        free, _ = torch.cuda.mem_get_info()
        with pytest.raises(JembenchError, match="of cuda memory is available"):
            memory.require_buffer(free // 256 + 1, shape, device)
    ReplayBuffer(100, 10, UniformInit(shape), device)  # small enough anywhere


def test_precision_is_a_scope_and_is_recorded(device):
    before = precision.settings(device)
    dev_type = torch.device(device).type
    model = torch.nn.Linear(4, 2).to(device)
    with precision.scope("bf16", device):
        inside = precision.settings(device)
        assert torch.is_autocast_enabled(dev_type)
        if dev_type != fake_device.NAME:  # (the fake device has no autocast kernels: it passes ops through)
            assert model(torch.ones(3, 4, device=device)).dtype == torch.bfloat16  # the forward ran in bf16
    assert model(torch.ones(3, 4, device=device)).dtype == torch.float32
    assert inside["precision"] == "bf16" and inside["autocast"] == "bfloat16"
    assert precision.settings(device) == before and before["precision"] == "fp32"
    assert inside["tf32_matmul"] == (device == "cuda") and inside["cudnn_benchmark"] == (device == "cuda")
    with pytest.raises(JembenchError, match="precision 'fp16' is not one of fp32, tf32, bf16"):
        with precision.scope("fp16", device):
            pass


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA GPUs: runs where they are present")
def test_libraries_that_call_cuda_use_the_selected_gpu():
    """torch-fidelity moves its Inception network with ``.cuda()``: inside :func:`jembench.devices.current` that is
    the GPU of ``--device cuda:1``, not GPU 0."""
    from jembench import devices

    with devices.current("cuda:1"):
        assert torch.zeros(1).cuda().device == torch.device("cuda:1")
    assert torch.zeros(1).cuda().device == torch.device("cuda:0")
