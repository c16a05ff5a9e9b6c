"""The multi-GPU crashes of issue 25, reproduced on the CPU where they can be, and the settings that replaced
unannounced behaviour (the DDP global batch).

* nccl reduces CUDA tensors only: the agreement on a stop request all-reduced a CPU tensor — every collective now
  runs on :func:`jembench.distributed.collective_device` (checked here with nccl's rule on a gloo group);
* ``--device cuda:0`` under torchrun put every rank on GPU 0: refused, ``cuda`` maps to ``cuda:<local rank>``;
* resuming with more saved GPU RNG states than visible GPUs raised: one state (the run's device) is saved, and
  an old checkpoint's list is indexed, never restored whole;
* the global batch under DDP: ``ddp_batch`` (default ``global``: the papers' batch, split over the ranks).
"""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist

from fake_device import DEVICE, NAME, install

from jembench import distributed, seeding
from jembench.errors import JembenchError
from jembench.reference_models.training_data import per_rank_batch


@pytest.fixture
def gloo_group(tmp_path):
    """A one-process gloo group (what torchrun sets up, without torchrun)."""
    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


def test_collectives_run_where_the_backend_needs_them(gloo_group, monkeypatch):
    """Under nccl every tensor of a collective must be on the rank's GPU. Here the backend's device is the fake
    accelerator and all_reduce refuses any tensor elsewhere (nccl's rule), then reduces a CPU copy with gloo: the
    stop-request flag (made on the CPU), the guard's check (made on the device) and the log row all pass."""
    install()
    seen = []
    real = dist.all_reduce

    def nccl_rule(t, op=dist.ReduceOp.SUM, **kw):
        seen.append(t.device)
        if t.device != torch.device(DEVICE):
            raise RuntimeError(f"Tensors must be CUDA and dense (got a tensor on {t.device})")  # nccl's message
        work = t.cpu()
        real(work, op=op, **kw)
        t.copy_(work)

    monkeypatch.setattr(distributed, "collective_device", lambda backend=None: torch.device(DEVICE))
    monkeypatch.setattr(dist, "all_reduce", nccl_rule)
    assert distributed.any_rank(True) is True and distributed.any_rank(False) is False  # a CPU flag
    on_device = torch.tensor([1.0, 5.0], device=DEVICE)
    out = distributed.all_reduce_max(on_device)
    assert out.device == on_device.device and out.cpu().tolist() == [1.0, 5.0]
    assert distributed.all_reduce_mean(torch.tensor([2.0])).tolist() == [2.0]  # back on the caller's device
    assert seen and set(seen) == {torch.device(DEVICE)}


def test_collective_device_follows_the_backend():
    assert distributed.collective_device("gloo") == torch.device("cpu")
    if torch.cuda.is_available():
        assert distributed.collective_device("nccl").type == "cuda"


def test_gather_to_main_and_broadcast_outside_and_inside_a_group(gloo_group):
    assert distributed.gather_to_main({"a": 1}) == [{"a": 1}]
    assert distributed.broadcast_from_main({"r": 2}) == {"r": 2}


@pytest.mark.parametrize("device, local_rank, expected", [
    ("cuda", 1, "cuda:1"), ("cpu", 1, "cpu"), (f"{NAME}", 1, f"{NAME}:1"), ("cuda", 0, "cuda:0")])
def test_device_for_rank_under_torchrun(monkeypatch, device, local_rank, expected):
    monkeypatch.setenv("RANK", str(local_rank))
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", str(local_rank))
    assert distributed.device_for_rank(device) == expected


def test_an_explicit_gpu_under_torchrun_is_refused(monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    with pytest.raises(JembenchError, match="--device cuda:0 under torchrun would put all 2 processes on that one "
                                            "device; pass --device cuda .*CUDA_VISIBLE_DEVICES"):
        distributed.device_for_rank("cuda:0")
    monkeypatch.setenv("WORLD_SIZE", "1")  # one process: an explicit GPU is fine
    assert distributed.device_for_rank("cuda:3") == "cuda:3"


def test_rng_restore_with_more_saved_device_states_than_devices():
    """An old checkpoint holds one state per GPU of the machine that wrote it (here 3, on a machine with 2 fake
    devices): the state of the run's device index is restored — never all of them (``set_rng_state_all`` of 3
    states raises with 2 devices) — and a state saved on device 1 continues on device 0."""
    install()
    mod = torch.get_device_module(NAME)
    states = []
    for seed in (11, 12, 13):
        torch.manual_seed(seed)
        states.append(mod.get_rng_state(0))
    old = dict(seeding.rng_state(), **{NAME: states})
    assert seeding.set_rng_state(old, f"{NAME}:1") is True
    torch.manual_seed(12)
    expected = torch.rand(4, device=f"{NAME}:0").cpu()
    seeding.set_rng_state(old, f"{NAME}:1")
    assert torch.equal(torch.rand(4, device=f"{NAME}:1").cpu(), expected)  # device 1 got saved state #1

    torch.manual_seed(5)
    saved = seeding.rng_state(f"{NAME}:1")  # the new format: the run's device only
    assert saved["device"]["type"] == NAME and NAME not in saved
    after = torch.rand(3, device=f"{NAME}:1").cpu()
    assert seeding.set_rng_state(saved, f"{NAME}:0") is True
    assert torch.equal(torch.rand(3, device=f"{NAME}:0").cpu(), after)


def test_a_cpu_state_cannot_continue_a_device_stream():
    install()
    assert seeding.set_rng_state(seeding.rng_state("cpu"), DEVICE) is False  # the caller warns
    assert seeding.set_rng_state(seeding.rng_state("cpu"), "cpu") is True


@pytest.mark.parametrize("batch, world, how, expected", [(64, 1, "global", 64), (64, 2, "global", 32),
                                                         (64, 4, "global", 16), (64, 2, "per-rank", 64)])
def test_the_global_batch_is_split_over_the_ranks(batch, world, how, expected):
    assert per_rank_batch(batch, world, how) == expected


def test_a_global_batch_that_does_not_split_is_refused():
    with pytest.raises(JembenchError, match="--batch-size 64 is the global batch and does not split over 3 "
                                            "processes; use a multiple of 3, or --ddp-batch per-rank"):
        per_rank_batch(64, 3, "global")
