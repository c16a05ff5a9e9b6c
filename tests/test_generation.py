"""Generation (JEM Table 1, App. B): the one uint8 quantization, IS/FID/KID through real torch-fidelity with a
small feature extractor registered here (no network), the reference-statistics cache, the sample sources, and
the CLI (including the error without Inception weights)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image
from torch.utils.data import Dataset

from jembench.data import load_dataset, stack_dataset
from jembench.errors import JembenchError
from jembench.metrics import fidelity
from jembench.metrics.fidelity import (INCEPTION_FILE, QuantizedDataset, feature_extractor_kwargs, fidelity_metrics,
                                       reference_cache_name, to_uint8_rgb)
from jembench.metrics.sample_selection import select
from jembench.models import load_checkpoint
from jembench.sampling import ClassGaussianInit
from jembench.suites import EvalContext, generation
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from test_eval_helpers import is_png, make_wrn_checkpoint, protocol, run_cli


# ---------------------------------------------------------------------------------------- quantization
def test_to_uint8_rgb_values_round_trip_and_grey_expansion():
    x = torch.tensor([-1.0, 1.0, 0.0, -2.0, 2.0, 2 / 255 - 1]).view(1, 1, 2, 3)
    q = to_uint8_rgb(x)
    assert q.dtype == torch.uint8 and q.shape == (1, 3, 2, 3)
    assert q[0, 0].flatten().tolist() == [0, 255, 128, 0, 255, 1]  # 0 -> 127.5 rounds half up
    assert torch.equal(q[:, 0], q[:, 1]) and torch.equal(q[:, 0], q[:, 2])  # grey repeated to RGB
    levels = torch.arange(256)
    assert torch.equal(to_uint8_rgb((levels.float() / 255 * 2 - 1).view(1, 1, 16, 16)).flatten()[:256], levels)
    rgb = torch.rand(2, 3, 4, 4) * 2 - 1
    assert torch.equal(to_uint8_rgb(rgb)[1], to_uint8_rgb(rgb[1]))  # (C, H, W) items quantize the same
    for bad in (q, torch.zeros(1, 2, 4, 4)):
        with pytest.raises(ValueError):
            to_uint8_rgb(bad)


@pytest.mark.parametrize("channels", [1, 3])
def test_quantized_images_equal_what_save_image_writes(tmp_path, channels):
    x = torch.rand(1, channels, 8, 8) * 2.4 - 1.2
    path = tmp_path / "x.png"
    torchvision.utils.save_image((x + 1) / 2, path)
    png = torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1)
    assert torch.equal(png, to_uint8_rgb(x)[0])


# ------------------------------------------------------------------------------------ FID through fidelity
class PixelPoolExtractor(FeatureExtractorBase):
    """Test extractor: 4×4 average-pooled RGB pixels (48-d) and a fixed linear map of them, centred per image
    (5 logits)."""

    W = torch.randn(48, 5, generator=torch.Generator().manual_seed(1)) * 4

    def __init__(self, name, features_list, **kwargs):
        super().__init__(name, features_list)

    @staticmethod
    def get_provided_features_list():
        return "pool", "logits"

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        return {"isc": "logits", "fid": "pool", "kid": "pool"}[metric]

    @staticmethod
    def can_be_compiled():
        return False

    @staticmethod
    def get_dummy_input_for_compile():
        return torch.zeros(1, 3, 8, 8, dtype=torch.uint8)

    def forward(self, x):
        assert x.dtype == torch.uint8 and x.shape[1] == 3
        pool = F.adaptive_avg_pool2d(x.float() / 255, 4).flatten(1)
        out = {"pool": pool, "logits": (pool - pool.mean(1, keepdim=True)) @ self.W}
        return tuple(out[n] for n in self.features_list)


TEST_FE = "test-pixel-pool"
fidelity.register_feature_extractor(TEST_FE, PixelPoolExtractor)


def _frechet(a: np.ndarray, b: np.ndarray) -> float:
    """FID computed independently: ‖μ_a − μ_b‖² + tr(Σ_a + Σ_b − 2 (Σ_a Σ_b)^½) with scipy's sqrtm."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s_a @ s_b).real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a + s_b - 2 * covmean))


@pytest.fixture(scope="module")
def digits_train():
    return load_dataset("digits", "train")


class _Counting(Dataset):
    def __init__(self, base):
        self.base, self.reads = base, 0

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        self.reads += 1
        return self.base[i]


def test_fid_of_a_set_with_itself_is_zero_and_grows_with_noise(digits_train, tmp_path):
    x, _ = stack_dataset(digits_train)
    kw = feature_extractor_kwargs(TEST_FE)
    reference = _Counting(QuantizedDataset(digits_train))
    cache = reference_cache_name("digits", "train", len(reference), kw)
    common = dict(reference_cache=cache, fe_kwargs=kw, cache_root=tmp_path, kid_subsets=20)
    extractor = PixelPoolExtractor(TEST_FE, ["pool"])
    ref_features = extractor(to_uint8_rgb(x))[0].double().numpy()
    fids, kids = [], []
    for sigma in (0.0, 0.1, 0.3):
        noisy = x + sigma * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
        result = fidelity_metrics(to_uint8_rgb(noisy), reference, **common)
        expected = _frechet(extractor(to_uint8_rgb(noisy))[0].double().numpy(), ref_features)
        assert result["fid"] == pytest.approx(expected, rel=1e-3, abs=1e-6)
        fids.append(result["fid"])
        kids.append(result["kid"])
        if sigma == 0.0:
            reads = reference.reads
    assert abs(fids[0]) < 1e-6 and abs(kids[0]) < 1e-3
    assert fids[0] < fids[1] < fids[2] and kids[0] < kids[1] < kids[2]
    # the reference was read on the first call only; its features and FID statistics are cached on disk by name
    assert len(reference) <= reads == reference.reads <= len(reference) + 1
    cached = sorted(p.name for p in tmp_path.iterdir())
    assert any(n.startswith(cache) and TEST_FE in n and "stat-fid" in n for n in cached), cached
    assert reference_cache_name("digits", "train", 100, kw) != cache
    assert reference_cache_name("folder:/a/b", "train", 5, kw) != reference_cache_name("folder:/a_b", "train", 5, kw)


def test_inception_score_equals_independent_computation(digits_train, tmp_path):
    x, _ = stack_dataset(digits_train, limit=400)
    images = to_uint8_rgb(x)
    result = fidelity_metrics(images, fe_kwargs=feature_extractor_kwargs(TEST_FE), fid=False, kid=False,
                              isc_splits=1, cache_root=tmp_path)
    logits = PixelPoolExtractor(TEST_FE, ["logits"])(images)[0].double()
    p = logits.softmax(1)
    kl = (p * (p.log() - p.mean(0, keepdim=True).log())).sum(1).mean()  # IS = exp E_x KL(p(y|x) ‖ p(y))
    assert result["is"] == pytest.approx(math.exp(kl.item()), rel=1e-6)
    assert result["is"] > 1.2 and set(result) == {"is", "is_std"}


# ----------------------------------------------------------------------------------- inception weights
def test_inception_weights_found_in_torch_fidelity_cache_or_explicit(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    with pytest.raises(JembenchError) as info:
        feature_extractor_kwargs("inception-v3-compat")
    msg = str(info.value)
    assert INCEPTION_FILE in msg and "--inception-weights" in msg
    assert str(tmp_path / "th" / "hub" / "checkpoints") in msg
    cached = tmp_path / "th" / "hub" / "checkpoints" / INCEPTION_FILE
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"not really weights")
    assert feature_extractor_kwargs("inception-v3-compat")["feature_extractor_weights_path"] == str(cached)
    own = tmp_path / "mine.pth"
    own.write_bytes(b"x")
    assert feature_extractor_kwargs("inception-v3-compat", own)["feature_extractor_weights_path"] == str(own)
    with pytest.raises(JembenchError, match="no-such.pth"):
        feature_extractor_kwargs("inception-v3-compat", tmp_path / "no-such.pth")
    with pytest.raises(JembenchError, match="not registered"):
        feature_extractor_kwargs("inception-v4")


def test_cli_without_inception_weights_fails_fast_with_one_clear_line(tmp_path):
    ckpt = make_wrn_checkpoint(tmp_path / "wrn.pt")
    home = tmp_path / "torch-home"
    proc = run_cli("eval", "--suite", "generation", ckpt, "--out", tmp_path / "gen.json",
                   env={"TORCH_HOME": str(home)}, timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert INCEPTION_FILE in lines[0] and str(home / "hub" / "checkpoints") in lines[0]
    assert "--inception-weights PATH" in lines[0] and "Traceback" not in proc.stderr
    assert not (tmp_path / "gen.json").exists()


# ------------------------------------------------------------------------------------------- the suite
def _gen_protocol(**extra):
    table = dict(sources=["buffer", "fresh", "conditional"], feature_extractor=TEST_FE, n_samples=30,
                 sgld={"n_steps": 3}, isc_splits=2, kid_subsets=5, kid_subset_size=50, grid_n=16)
    return protocol("generation", **{**table, **extra})


def test_sources_buffer_fresh_conditional_and_ensemble(tmp_path, monkeypatch):
    monkeypatch.setenv("JEMBENCH_CACHE", str(tmp_path / "cache"))
    a = make_wrn_checkpoint(tmp_path / "a.pt", buffer_n=100, seed=0)
    b = make_wrn_checkpoint(tmp_path / "b.pt", buffer_n=50, seed=1)
    ckpt = load_checkpoint(a)
    ctx = EvalContext(dataset="digits", out_dir=tmp_path, batch_size=64,
                      record_path=tmp_path / "gen.json", ensemble=(str(a), str(b)))
    record = generation.run(ckpt, _gen_protocol(), ctx)
    sources = ("buffer", "fresh", "conditional", "ensemble")
    assert set(record["metrics"]) == {f"{m}/{s}" for m in ("is", "fid", "kid") for s in sources}
    assert all(math.isfinite(v) for v in record["metrics"].values())
    n = {s: record["details"]["sources"][s]["n"] for s in sources}
    assert n == {"buffer": 100, "fresh": 30, "conditional": 10, "ensemble": 150}
    with torch.no_grad():  # conditional = top 10% of the buffer by max_y p(y|x), computed independently
        conf = F.softmax(ckpt.model(ckpt.buffer), 1).max(1).values
    assert record["details"]["conditional"]["min_confidence"] == pytest.approx(conf.sort(descending=True)
                                                                               .values[9].item(), rel=1e-5)
    assert record["details"]["fresh"]["init"] == "uniform U(-1, 1)"
    assert sorted(record["figures"]) == sorted(f"gen_samples_{s}.png" for s in sources)
    assert all(is_png(tmp_path / f) for f in record["figures"])
    assert "not comparable" in generation.format_table(record)


def test_conditional_falls_back_to_fresh_without_buffer_and_top_fraction(tmp_path, monkeypatch):
    monkeypatch.setenv("JEMBENCH_CACHE", str(tmp_path / "cache"))
    conf = torch.tensor([0.2, 0.9, 0.5, 0.95, 0.1, 0.7, 0.3, 0.8, 0.6, 0.4, 0.85])
    labels = torch.zeros(len(conf), dtype=torch.long)
    assert select(conf, labels, "top", 0.25, 10).tolist() == [3, 1]  # int(.25·11) = 2, most confident first
    ckpt = load_checkpoint(make_wrn_checkpoint(tmp_path / "nobuf.pt", buffer_n=None))
    ctx = EvalContext(dataset="digits", out_dir=tmp_path, record_path=tmp_path / "g.json")
    record = generation.run(ckpt, _gen_protocol(n_samples=40, grid_n=0), ctx)
    assert set(record["details"]["sources"]) == {"fresh", "conditional"}
    assert record["details"]["conditional"]["pool"] == "fresh" and record["details"]["sources"]["conditional"]["n"] == 4
    assert any("no replay buffer" in note for note in record["details"]["notes"]) and record["figures"] == []


def test_informative_init_from_checkpoint_or_fitted_to_training_set(tmp_path, monkeypatch):
    monkeypatch.setenv("JEMBENCH_CACHE", str(tmp_path / "cache"))
    x, y = stack_dataset(load_dataset("digits", "train"))
    cfg = _gen_protocol(init="informative").settings
    ctx = EvalContext(dataset="digits", out_dir=tmp_path)
    plain = load_checkpoint(make_wrn_checkpoint(tmp_path / "u.pt"))  # buffer initialised from U(-1, 1)
    init, source = generation.initial_distribution(plain, cfg, ctx)
    assert isinstance(init, ClassGaussianInit) and "fitted to 1437" in source
    class_means = torch.stack([x[y == c].reshape(-1, 64).mean(0) for c in range(10)])
    assert torch.allclose(init.means, class_means, atol=1e-5)
    stored = ClassGaussianInit.fit(x[:200], y[:200], 10)
    ckpt = load_checkpoint(make_wrn_checkpoint(tmp_path / "g.pt", init_state=stored.state_dict()))
    init, source = generation.initial_distribution(ckpt, cfg, ctx)
    assert source == "class Gaussians stored in the checkpoint" and torch.equal(init.means, stored.means)
    samples = init.sample(torch.arange(20) % 10, "cpu")
    assert samples.shape == (20, 1, 8, 8) and samples.min() >= -1 and samples.max() <= 1


@pytest.mark.parametrize("table,field", [({"sources": ["buffer", "gan"]}, "sources"), ({"init": "gauss"}, "init"),
                                         ({"conditional_selection": {"is_ratio": 0}},
                                          "conditional_selection.is_ratio"),
                                         ({"buffer_selection": {"is_ratio": 0.5}}, "rule = 'all' takes no"),
                                         ({"feature_extractor": "nope"}, "nope"),
                                         ({"sgld": {"n_steps": -1}}, "sgld.n_steps"),
                                         ({"sgld": {"noise": -0.01}}, "sgld.noise")])
def test_bad_protocol_values_are_one_line_errors(tmp_path, table, field):
    ckpt = load_checkpoint(make_wrn_checkpoint(tmp_path / "wrn.pt", buffer_n=None))
    with pytest.raises(JembenchError, match=field) as info:
        generation.run(ckpt, _gen_protocol(**table), EvalContext(dataset="digits", out_dir=tmp_path))
    assert "\n" not in str(info.value)


def test_cli_end_to_end_tiny_preset_with_overrides_and_ensemble(tmp_path):
    ckpt = make_wrn_checkpoint(tmp_path / "wrn.pt", buffer_n=60)
    out = tmp_path / "out" / "gen.json"
    proc = run_cli("eval", "--suite", "generation", "--preset", "tiny", ckpt, "--out", out, "--n-samples", "40",
                   "--steps", "4", "--init", "informative", "--ensemble",
                   env={"JEMBENCH_CACHE": str(tmp_path / "cache")})
    assert proc.returncode == 0, proc.stderr
    record = json.loads(out.read_text())
    sources = ("buffer", "fresh", "conditional", "ensemble")
    assert set(record["metrics"]) == {f"{m}/{s}" for m in ("is", "fid", "kid") for s in sources}
    table = record["protocol"]["table"]
    assert record["protocol"]["name"] == "generation-tiny+cli"
    assert (table["n_samples"], table["sgld"]["n_steps"], table["init"]) == (40, 4, "informative")
    from jembench.protocols import load_protocol
    assert record["protocol"]["hash"] != load_protocol("generation-tiny").hash  # overrides change the hash
    assert record["details"]["sources"]["fresh"]["n"] == 40 and "fitted" in record["details"]["fresh"]["init"]
    assert all(is_png(out.parent / f) for f in record["figures"]) and len(record["figures"]) == 4
    assert any(p.name.endswith(".pt") for p in (tmp_path / "cache" / "fidelity").iterdir())
    assert "FID ↓" in proc.stdout and "jembench-tiny-conv" in proc.stdout


def test_interrupted_generation_resumes_at_the_first_missing_batch_of_fresh_chains(tmp_path, monkeypatch):
    """Fresh chains are saved batch by batch beside the record; a run killed in batch 2 of 3 resumes there, runs
    only the missing batches, gives the record an uninterrupted run gives, and jembench.evaluation.run_suite removes
    the partial files once the record is written. Files of another protocol are never mixed in."""
    from jembench.evaluation import run_suite

    monkeypatch.setenv("JEMBENCH_CACHE", str(tmp_path / "cache"))
    ckpt = load_checkpoint(make_wrn_checkpoint(tmp_path / "c.pt", buffer_n=None))
    proto = _gen_protocol(sources=["fresh"], n_samples=40, grid_n=0)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    full = run_suite(ckpt, "generation", proto, tmp_path / "a" / "gen.json", batch_size=16, seed=3)
    calls = []
    real_sgld = generation.sgld

    def counted(*args, **kwargs):
        calls.append(1)
        if fail_at and len(calls) == fail_at:
            raise KeyboardInterrupt  # the process dies in the middle of this batch
        return real_sgld(*args, **kwargs)

    monkeypatch.setattr(generation, "sgld", counted)
    record_path = tmp_path / "b" / "gen.json"
    fail_at = 2
    with pytest.raises(KeyboardInterrupt):
        run_suite(ckpt, "generation", proto, record_path, batch_size=16, seed=3)
    partial = sorted(p.name for p in record_path.parent.glob("gen.partial*"))
    assert partial == [f"gen.partial.{proto.hash}.fresh_00000.pt"] and not record_path.exists()
    calls.clear()
    fail_at = 0
    resumed = run_suite(ckpt, "generation", proto, record_path, batch_size=16, seed=3)
    assert len(calls) == 2  # batches 2 and 3 only
    assert resumed["metrics"] == full["metrics"]
    assert record_path.is_file() and not list(record_path.parent.glob("gen.partial*"))
    # another protocol (or seed) never reads the files of this one and recomputes every batch
    fail_at = 3
    with pytest.raises(KeyboardInterrupt):
        run_suite(ckpt, "generation", proto, record_path, batch_size=16, seed=3)
    calls.clear()
    fail_at = 0
    other = _gen_protocol(sources=["fresh"], n_samples=40, grid_n=0, sgld={"n_steps": 4})
    third = run_suite(ckpt, "generation", other, record_path, batch_size=16, seed=3)
    assert len(calls) == 3 and third["details"]["fresh"]["sgld"]["n_steps"] == 4
