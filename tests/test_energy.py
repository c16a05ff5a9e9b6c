"""The JEM identities equal their direct formulas (Grathwohl et al. 2020, Eq. 4-6)."""

import math

import torch

from jembench import energy


def test_identities_match_direct_formulas():
    torch.manual_seed(0)
    logits = torch.randn(7, 5, dtype=torch.float64) * 3
    y = torch.tensor([0, 4, 2, 2, 1, 3, 0])
    direct_lse = torch.tensor([math.log(sum(math.exp(v) for v in row)) for row in logits.tolist()],
                              dtype=torch.float64)
    assert torch.allclose(energy.log_px_unnormalized(logits), direct_lse)
    assert torch.allclose(energy.energy(logits), -direct_lse)
    assert torch.equal(energy.joint_energy(logits, y), -logits[torch.arange(7), y])
    probs = torch.exp(logits) / torch.exp(logits).sum(1, keepdim=True)
    assert torch.allclose(energy.p_y_given_x(logits), probs)
    assert torch.allclose(energy.log_p_y_given_x(logits), torch.log(probs))
    # p(y|x) = p(x, y) / p(x): exp(-E(x,y)) / exp(-E(x)), Z cancels (Eq. 6)
    ratio = torch.exp(-energy.joint_energy(logits, y) + energy.energy(logits))
    assert torch.allclose(ratio, probs[torch.arange(7), y])


def test_lse_is_stable_for_large_logits():
    logits = torch.tensor([[1000.0, 1000.0]])
    assert torch.allclose(energy.log_px_unnormalized(logits), torch.tensor([1000.0 + math.log(2)]))
