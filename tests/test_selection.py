"""The split that chooses ``best.pt`` gets the method's input noise (JEM: σ = .03 on its hold-out, as the official
``transform_test`` adds it, train_wrn_ebm.py:146-150, :190-192), and ``best.pt`` is the checkpoint of the best
*noisy* accuracy — checked against the clean hold-out images and an independent draw of the documented noise
stream."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from jembench.data import load_dataset
from jembench.models import load_checkpoint, read_checkpoint_file
from jembench.reference_models.config import resolve_config
from jembench.reference_models.train_loop import train
from jembench.reference_models.training_data import accuracy_on, holdout_split, selection_noise, training_data

HOLDOUT = 300


class _Probe(nn.Module):
    """Records every input it sees; predicts class 0."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        return torch.zeros(len(x), 10)


def _clean_holdout() -> tuple[torch.Tensor, torch.Tensor]:
    """The hold-out images and labels, read independently of the training data's own selection set."""
    base = load_dataset("digits", "train")
    valid, _ = holdout_split(len(base), HOLDOUT, 1234)
    images, labels = zip(*(base[i] for i in valid))
    return torch.stack(images), torch.as_tensor(labels)


def _cfg(**overrides):
    return resolve_config("jem", "tiny", {"dataset": "digits", "holdout": HOLDOUT, "select_best": "validation",
                                          **overrides})


def _documented_noise(seed: int, iteration: int, n: int, shape: tuple[int, ...]) -> torch.Tensor:
    """ε for the n images of the selection split at the evaluation after ``iteration``, as documented (written out
    here, not taken from jembench): image i's ε_i = ``torch.randn(shape)`` from a CPU generator seeded with word i
    of ``SeedSequence([seed, iteration]).generate_state(n)``."""
    words = np.random.SeedSequence([seed, iteration]).generate_state(n)
    return torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(int(w))) for w in words])


def _noisy_accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, sigma: float, seed: int,
                    iteration: int) -> float:
    """Accuracy on ``images`` + σ·ε with the documented ε of the evaluation after ``iteration``."""
    x = images + sigma * _documented_noise(seed, iteration, len(images), tuple(images.shape[1:]))
    with torch.no_grad():
        return 100.0 * int((model(x).argmax(1) == labels).sum()) / len(images)


@pytest.mark.parametrize("sigma", [0.0, 0.3])
def test_the_images_that_choose_best_pt_get_the_selection_noise(sigma):
    """What the network sees when ``best.pt`` is chosen = the clean hold-out images + σ·ε with the documented ε:
    each image's own stream, so it does not depend on the batch size; N(0, σ²) (mean 0 and standard deviation σ
    within 5 standard errors over 300 × 64 pixels: SE of the mean σ/√n, of the standard deviation ≈ σ/√(2n)),
    independent of the images; fresh at each evaluation, the same when repeated (resume). σ = 0: the clean images
    exactly."""
    cfg = _cfg(select_noise=sigma)
    data = training_data(cfg, rank=0, world=1)
    clean, _ = _clean_holdout()
    seen = {}
    for iteration, batch_size in ((17, 100), (34, 100), (17, 7)):
        probe = _Probe()
        accuracy_on(probe, data.select, torch.device("cpu"), batch_size=batch_size, noise_std=cfg.select_noise,
                    noise_seeds=selection_noise(cfg.seed, iteration, len(data.select)))
        seen.setdefault(iteration, []).append(torch.cat(probe.seen))
    residual = seen[17][0] - clean
    if sigma == 0:
        assert torch.equal(seen[17][0], clean) and torch.equal(seen[34][0], clean)
        return
    expected = sigma * _documented_noise(cfg.seed, 17, HOLDOUT, tuple(clean.shape[1:]))
    assert torch.allclose(residual, expected, atol=1e-6)
    n = residual.numel()
    assert abs(float(residual.mean())) < 5 * sigma / n ** 0.5
    assert abs(float(residual.std()) - sigma) < 5 * sigma / (2 * n) ** 0.5
    assert abs(float(torch.corrcoef(torch.stack([residual.flatten(), clean.flatten()]))[0, 1])) < 5 / n ** 0.5
    assert torch.equal(seen[17][0], seen[17][1])  # the same evaluation draws the same noise, in any batch size
    assert not torch.allclose(seen[34][0] - clean, residual)  # another evaluation draws afresh


def test_each_process_scores_its_share_with_the_noise_a_single_process_gives_those_images(monkeypatch):
    """Under DDP rank r of W scores images r, r + W, ... of the split (jembench.distributed's rank and world size,
    patched here: no process group is needed to see what one rank classifies) with exactly the noise a single
    process gives those images, so the summed accuracy — and the best.pt decision — does not depend on W."""
    from jembench import distributed

    cfg = _cfg(select_noise=0.3)
    data = training_data(cfg, rank=0, world=1)
    seeds = selection_noise(cfg.seed, 17, len(data.select))
    whole = _Probe()
    accuracy_on(whole, data.select, torch.device("cpu"), noise_std=0.3, noise_seeds=seeds)
    single = torch.cat(whole.seen)
    monkeypatch.setattr(distributed, "world_size", lambda: 3)
    monkeypatch.setattr(distributed, "all_reduce_mean", lambda t: t / 3)  # one rank's counts stand for the sum
    for rank in range(3):
        monkeypatch.setattr(distributed, "rank", lambda rank=rank: rank)
        probe = _Probe()
        accuracy_on(probe, data.select, torch.device("cpu"), batch_size=40, noise_std=0.3, noise_seeds=seeds)
        assert torch.equal(torch.cat(probe.seen), single[rank::3])


def test_best_pt_is_the_checkpoint_of_the_best_noisy_validation_accuracy(tmp_path):
    """Every ``select`` event's accuracy is the noisy one: for the final weights (``last.pt``) it equals an
    independent evaluation under the documented noise stream and differs from the clean accuracy; ``best.pt`` is
    the first evaluation of the highest noisy accuracy, and says so (``training.selected_on``). The noise comes
    from a stream of its own: the training itself is bit for bit that of a run that selects without noise."""
    sigma = 1.0  # large, so that noisy and clean hold-out accuracies differ clearly
    cfg = _cfg(select_noise=sigma, epochs=3, sgld_steps=2)
    last = train(cfg, tmp_path / "noisy", progress=False)
    events = [json.loads(line) for line in (tmp_path / "noisy" / "events.jsonl").read_text().splitlines()]
    selects = [e for e in events if e["event"] == "select"]
    assert [e["iteration"] for e in selects] == [17, 34, 51] and all(e["noise"] == sigma for e in selects)

    images, labels = _clean_holdout()
    final = load_checkpoint(last).model
    noisy = _noisy_accuracy(final, images, labels, sigma, cfg.seed, 51)
    clean = _noisy_accuracy(final, images, labels, 0.0, cfg.seed, 51)
    assert selects[-1]["accuracy"] == pytest.approx(noisy, abs=1e-9)
    assert abs(noisy - clean) > 2.0

    accuracies = [e["accuracy"] for e in selects]
    chosen = selects[accuracies.index(max(accuracies))]
    assert [e["saved"] for e in selects] == [a > max(accuracies[:i], default=-1) for i, a in enumerate(accuracies)]
    best = read_checkpoint_file(tmp_path / "noisy" / "best.pt")
    assert best["iteration"] == chosen["iteration"]
    assert best["training"]["selected_on"] == {"split": "validation", "noise": sigma, "accuracy": chosen["accuracy"],
                                               "iteration": chosen["iteration"]}
    again = _noisy_accuracy(load_checkpoint(tmp_path / "noisy" / "best.pt").model, images, labels, sigma, cfg.seed,
                            chosen["iteration"])
    assert again == pytest.approx(chosen["accuracy"], abs=1e-9)  # best.pt's own weights, the noisy accuracy

    plain = read_checkpoint_file(train(cfg.replace(select_noise=0.0), tmp_path / "clean", progress=False))
    ours = read_checkpoint_file(last)
    assert all(torch.equal(ours["model_state"][k], v) for k, v in plain["model_state"].items())
