"""Generation suite faults (issue 15) and the fresh chains' p_0: a NaN / Inf replay buffer gives no FID, a buffer
of the wrong shape or dtype is a one-line error, diverged fresh chains are not scored, nothing-to-score is an error,
and checkpoints that record only the informative init's kind get it refitted (and cached)."""

from __future__ import annotations

import torch

import pytest
from jembench.cli import main
from jembench.errors import JembenchError
from jembench.models import load_checkpoint
from jembench.sampling import ClassGaussianInit, UniformInit
from jembench.suites import EvalContext, generation
from test_eval_helpers import make_wrn_checkpoint, protocol
from test_generation import TEST_FE


def _proto(**extra):
    table = dict(sources=["buffer", "fresh", "conditional"], feature_extractor=TEST_FE, n_samples=20,
                 sgld={"n_steps": 2}, kid_subsets=5, kid_subset_size=10, grid_n=0)
    return protocol("generation", **{**table, **extra})


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("JEMBENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_nan_buffer_gives_no_fid_and_the_conditional_samples_come_from_fresh_chains(tmp_path, cache):
    ckpt = load_checkpoint(make_wrn_checkpoint(tmp_path / "c.pt", buffer_n=50))
    ckpt.buffer[3, 0, 2, 2] = float("nan")
    ckpt.buffer[7, 0, 0, 0] = float("inf")
    record = generation.run(ckpt, _proto(), EvalContext(dataset="digits", out_dir=tmp_path))
    assert not any(key.endswith("/buffer") for key in record["metrics"])
    assert {"fid/fresh", "fid/conditional"} <= set(record["metrics"])
    assert record["details"]["conditional"]["pool"] == "fresh"
    assert any("2 of 50 images" in n and "NaN/Inf" in n for n in record["details"]["notes"])
    assert "NaN/Inf" in generation.format_table(record)
    with pytest.raises(JembenchError, match="nothing could be scored.*NaN/Inf") as info:
        generation.run(ckpt, _proto(sources=["buffer"]), EvalContext(dataset="digits", out_dir=tmp_path))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("bad,message", [(torch.zeros(10, 1, 4, 4), r"shape \(10, 1, 4, 4\)"),
                                         (torch.zeros(10, 64), r"shape \(10, 64\)"),
                                         (torch.zeros(0, 1, 8, 8), r"shape \(0, 1, 8, 8\)"),
                                         (torch.zeros(10, 1, 8, 8, dtype=torch.uint8), "dtype uint8.*dequantize")])
def test_buffer_of_the_wrong_shape_or_dtype_is_a_one_line_error(tmp_path, cache, capsys, bad, message):
    ckpt_path = make_wrn_checkpoint(tmp_path / "c.pt", buffer_n=None)
    ckpt = load_checkpoint(ckpt_path)
    ckpt.buffer = bad
    with pytest.raises(JembenchError, match=message) as info:
        generation.run(ckpt, _proto(), EvalContext(dataset="digits", out_dir=tmp_path))
    assert "\n" not in str(info.value) and "float images (N, 1, 8, 8) in [-1, 1]" in str(info.value)
    buffer_file = tmp_path / "buffer.pt"
    torch.save(bad, buffer_file)
    out = tmp_path / "out" / "gen.json"
    code = main(["eval", str(ckpt_path), "--suite", "generation", "--preset", "tiny", "--buffer", str(buffer_file),
                 "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "replay buffer" in err[0] and not out.exists()


def test_diverged_fresh_chains_are_not_scored(tmp_path, cache, monkeypatch):
    real = generation.sgld

    def diverging(model, x0, config, **kwargs):
        x = real(model, x0, config, **kwargs)
        x[0] = float("nan")
        return x

    monkeypatch.setattr(generation, "sgld", diverging)
    ckpt = load_checkpoint(make_wrn_checkpoint(tmp_path / "c.pt", buffer_n=50))
    record = generation.run(ckpt, _proto(), EvalContext(dataset="digits", out_dir=tmp_path, batch_size=8))
    assert "fid/fresh" not in record["metrics"] and {"fid/buffer", "fid/conditional"} <= set(record["metrics"])
    assert record["details"]["fresh"]["non_finite"] == 3  # the first chain of each of 3 batches
    assert any(n.startswith("fresh: 3 of 20 fresh images are NaN/Inf") for n in record["details"]["notes"])


def test_checkpoint_init_refits_class_gaussians_a_checkpoint_only_names_and_caches_them(tmp_path, cache):
    kind_only = ClassGaussianInit(torch.zeros(10, 64), torch.zeros(10, 64, 64), (1, 8, 8)).checkpoint_state()
    assert kind_only["stored"] is False and "means" not in kind_only
    ckpt = load_checkpoint(make_wrn_checkpoint(tmp_path / "g.pt", init_state=kind_only))
    cfg = _proto(init="checkpoint", informative_fit_n=500).settings
    ctx = EvalContext(dataset="digits", out_dir=tmp_path)
    init, source = generation.initial_distribution(ckpt, cfg, ctx)
    assert isinstance(init, ClassGaussianInit) and "fitted to 500 digits training images (fitted now" in source
    cached = generation.informative_cache_path("digits", 500)
    assert cached.is_file() and str(cache) in str(cached)
    again, source_again = generation.initial_distribution(ckpt, cfg, ctx)
    assert f"(cache {cached})" in source_again and torch.equal(again.scale_trils, init.scale_trils)
    cached.write_bytes(b"damaged")  # a damaged cache is refitted, never trusted
    _, source_damaged = generation.initial_distribution(ckpt, cfg, ctx)
    assert "fitted now" in source_damaged
    plain = load_checkpoint(make_wrn_checkpoint(tmp_path / "u.pt", init_state=UniformInit((1, 8, 8)).state_dict()))
    init, source = generation.initial_distribution(plain, cfg, ctx)
    assert isinstance(init, UniformInit) and source == "uniform U(-1, 1) (the checkpoint's p_0)"
    plain.init_state = None
    assert "records no p_0" in generation.initial_distribution(plain, cfg, ctx)[1]
    record = generation.run(ckpt, _proto(init="checkpoint", informative_fit_n=500, sources=["fresh"]), ctx)
    assert "cache" in record["details"]["fresh"]["init"] and "fid/fresh" in record["metrics"]
