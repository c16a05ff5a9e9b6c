"""OOD detection (JEM §5.3): metrics against scikit-learn and brute force, the gradient score against finite
differences, the three scores on a JEM trained on digits, skipped / resized sets, and the CLI end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from matplotlib.testing.compare import compare_images
from PIL import Image
from sklearn.metrics import average_precision_score, roc_auc_score

from jembench.errors import JembenchError
from jembench.figures import redraw
from jembench.metrics.detection import detection_metrics
from jembench.metrics.ood_scores import SCORES, score_tensor
from jembench.models import load_checkpoint
from jembench.suites import EvalContext, ood, ood_sets
from jembench.reference_models.wideresnet import wide_resnet
from test_eval_helpers import is_png, make_wrn_checkpoint, protocol, run_cli

SCORE_NAMES = ["log_px", "max_py", "grad_norm"]


# ------------------------------------------------------------------------------------------ detection metrics
def _brute_force(s_in: np.ndarray, s_out: np.ndarray) -> dict[str, float]:
    """AUROC as a pair count, AP as Σ (R_k − R_{k−1}) P_k over thresholds, FPR95 by scanning thresholds."""
    diff = s_in[:, None] - s_out[None, :]
    auroc = ((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size
    ap, last_recall, fpr95 = 0.0, 0.0, 1.0
    for t in np.sort(np.unique(np.concatenate([s_in, s_out])))[::-1]:
        tp, fp = (s_in >= t).sum(), (s_out >= t).sum()
        recall = tp / len(s_in)
        ap += (recall - last_recall) * tp / (tp + fp)
        last_recall = recall
        if recall >= 0.95:
            fpr95 = min(fpr95, fp / len(s_out))
    return {"auroc": auroc, "aupr": ap, "fpr95": fpr95}


def test_detection_metrics_equal_sklearn_and_brute_force():
    rng = np.random.default_rng(0)
    s_in = np.round(rng.normal(1.0, 1.0, 300), 1)  # rounded: ties between and within the sets
    s_out = np.round(rng.normal(0.0, 1.0, 200), 1)
    got = detection_metrics(torch.from_numpy(s_in), s_out)
    labels = np.r_[np.ones(300), np.zeros(200)]
    assert got["auroc"] == pytest.approx(roc_auc_score(labels, np.r_[s_in, s_out]), abs=1e-12)
    assert got["aupr"] == pytest.approx(average_precision_score(labels, np.r_[s_in, s_out]), abs=1e-12)
    expected = _brute_force(s_in, s_out)
    for key in ("auroc", "aupr", "fpr95"):
        assert got[key] == pytest.approx(expected[key], abs=1e-12), key
    assert 0.7 < got["auroc"] < 0.85  # d' = 1: AUROC = Φ(1/√2) ≈ .76


def test_detection_hand_built_cases():
    perfect = detection_metrics([5.0, 6.0, 7.0], [1.0, 2.0])
    assert perfect == {"auroc": 1.0, "aupr": 1.0, "fpr95": 0.0, "in_tied": False, "out_tied": False,
                       "auroc_se": 0.0}
    same = detection_metrics(np.full(50, 3.0), np.full(80, 3.0))
    assert same["auroc"] == 0.5 and same["fpr95"] == 1.0 and same["in_tied"] and same["out_tied"]
    assert same["aupr"] == pytest.approx(50 / 130)  # precision at the only threshold = share of positives
    reversed_ = detection_metrics([1.0, 2.0], [5.0, 6.0])
    assert reversed_["auroc"] == 0.0 and reversed_["fpr95"] == 1.0
    assert detection_metrics([np.inf, 1.0], [-np.inf, 0.0])["auroc"] == 1.0  # infinities keep their order
    assert all(np.isnan(v) for v in detection_metrics([np.nan, 1.0], [0.0]).values())
    with pytest.raises(ValueError):
        detection_metrics([], [1.0])


# ------------------------------------------------------------------------------------------------- scores
def _small_model(in_channels: int = 1) -> torch.nn.Module:
    torch.manual_seed(0)
    return wide_resnet(depth=10, widen_factor=1, n_classes=10, in_channels=in_channels).double().eval()


def test_grad_score_equals_finite_differences_even_under_no_grad():
    model = _small_model()
    x = torch.rand(3, 1, 8, 8, dtype=torch.float64) * 2 - 1
    with torch.no_grad():  # the score must switch gradients back on by itself
        got = score_tensor(model, x, ["grad_norm"], batch_size=2)["grad_norm"]
        h, dim = 1e-6, x[0].numel()
        for i in range(len(x)):
            eye = torch.eye(dim, dtype=torch.float64).view(dim, 1, 8, 8) * h
            lse_plus = torch.logsumexp(model(x[i] + eye), 1)
            lse_minus = torch.logsumexp(model(x[i] - eye), 1)
            fd_grad = (lse_plus - lse_minus) / (2 * h)  # ∂ LSE f(x) / ∂x_j by central differences
            assert got[i].item() == pytest.approx(-fd_grad.norm().item(), rel=1e-5)
    assert got.dtype == torch.float32 and got.shape == (3,)
    assert all(p.grad is None for p in model.parameters())  # input gradients only


def test_logit_scores_match_definitions_and_batching_is_exact():
    model = _small_model()
    x = torch.rand(5, 1, 8, 8, dtype=torch.float64) * 2 - 1
    batched = score_tensor(model, x, SCORE_NAMES, batch_size=5)
    single = score_tensor(model, x, SCORE_NAMES, batch_size=1)
    with torch.no_grad():
        logits = model(x)
    assert torch.allclose(batched["log_px"].double(), torch.log(torch.exp(logits).sum(1)), rtol=1e-6)
    assert torch.allclose(batched["max_py"].double(), (torch.exp(logits) / torch.exp(logits).sum(1, keepdim=True))
                          .max(1).values, rtol=1e-6)
    for name in SCORE_NAMES:
        assert torch.allclose(batched[name], single[name], rtol=1e-5, atol=1e-7), name
    assert {s.name for s in SCORES.values()} >= set(SCORE_NAMES)


# ------------------------------------------------------------------------------- a JEM trained on digits
def test_three_scores_rank_uniform_noise_below_data_for_trained_jem(tiny_jem_checkpoint, tmp_path):
    ckpt = load_checkpoint(tiny_jem_checkpoint)
    ctx = EvalContext(dataset="digits", out_dir=tmp_path, record_path=tmp_path / "ood.json")
    record = ood.run(ckpt, protocol("ood", sets=["uniform"], scores=SCORE_NAMES, n_out=360), ctx)
    aurocs = {s: record["metrics"][f"auroc/uniform/{s}"] for s in SCORE_NAMES}
    print("AUROC digits vs uniform:", aurocs)
    assert all(a > 0.7 for a in aurocs.values()), aurocs  # chance is 0.5; SE ≈ .015 at n = 360
    assert record["details"]["sets"]["uniform"]["n"] == 360


# -------------------------------------------------------------------------------------------- the suite
def _synthetic(name: str, x_in: torch.Tensor, n: int, batch: int, lam: float = 0.5) -> torch.Tensor:
    cfg = protocol("ood", n_out=n, batch_size=batch, interp_lambda=lam).settings
    images = ood_sets.synthetic_images(ood_sets.OODSet(name, name, name), 0, x_in, cfg,
                                       EvalContext(dataset="digits"), [])
    out = torch.cat(list(images.batches))
    assert len(out) == images.n == n
    return out


def test_synthetic_sets_follow_their_definitions():
    x_in = torch.arange(10, dtype=torch.float32).view(10, 1, 1, 1).expand(10, 1, 2, 2) / 10
    constant = _synthetic("constant", x_in, 7, 3)
    assert constant.shape == (7, 1, 2, 2) and (constant == 0).all()
    interp = _synthetic("interp", x_in, 200, 64)
    pair_sums = interp[:, 0, 0, 0] * 2 * 10  # (a + b) for pixel values a/10, b/10
    assert torch.allclose(pair_sums, pair_sums.round(), atol=1e-4) and (interp == interp[:, :, :1, :1]).all()
    firsts = _synthetic("interp", x_in, 200, 64, lam=1.0)
    assert not torch.equal(firsts, interp)  # λ = 1 gives x_a; with λ = .5, a ≠ b so never a plain image twice
    uniform = _synthetic("uniform", x_in, 5000, 1000)
    assert uniform.min() >= -1 and uniform.max() <= 1 and abs(uniform.mean()) < 0.02


def _image_folder(root, split, size, n_per_class, classes=("a", "b"), seed=0):
    rng = np.random.default_rng(seed)
    for c in classes:
        (root / split / c).mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(root / split / c / f"{i}.png")
    return root


def test_folder_sets_are_resized_and_missing_sets_skipped_with_notes(tmp_path, capsys):
    id_root = _image_folder(_image_folder(tmp_path / "id", "train", 8, 3), "test", 8, 20)
    ood_root = _image_folder(tmp_path / "far", "test", 16, 15, classes=("x",), seed=1)
    Image.new("RGB", (12, 10), (200, 30, 30)).save(ood_root / "test" / "x" / "z-odd-size.png")  # mixed sizes batch
    ckpt = load_checkpoint(make_wrn_checkpoint(tmp_path / "rgb.pt", in_channels=3, n_classes=2,
                                               dataset=f"folder:{id_root}"))
    ctx = EvalContext(dataset=f"folder:{id_root}", data_root=tmp_path / "no-data", download=False, out_dir=tmp_path,
                      batch_size=16, record_path=tmp_path / "ood.json")
    sets = [f"folder:{ood_root}", f"folder:{tmp_path / 'missing'}", "cifar100", "uniform"]
    record = ood.run(ckpt, protocol("ood", sets=sets, scores=SCORE_NAMES, hist_bins=10), ctx)
    notes = " | ".join(record["details"]["notes"])
    assert "far: images resized from 3×16×16 to 3×8×8 (shorter side + centre crop)" in notes  # the base name
    # a missing folder's note says what an OOD set needs: the test split only
    assert f"skipped missing: {tmp_path / 'missing' / 'test'} does not exist; an OOD folder needs only " \
           f"PATH/test/<class>/<image>" in notes and "skipped CIFAR-100" in notes
    assert set(record["details"]["sets"]) == {"far", "uniform"}  # metric-key names: base names, never paths
    assert record["details"]["sets"]["far"]["n"] == 16 and record["details"]["sets"]["far"]["label"] == "far"
    assert len(record["metrics"]) == 2 * 3 * 3 and "auroc/far/log_px" in record["metrics"]
    assert not any(str(tmp_path) in key for key in record["metrics"])
    assert "skipped CIFAR-100" in capsys.readouterr().err  # visible while running, not only in the record
    assert "note: skipped CIFAR-100" in ood.format_table(record)
    assert all(is_png(tmp_path / f) for f in record["figures"]) and len(record["figures"]) == 3
    # the record keeps each figure's binned histograms (every score counted once), so it can be drawn again
    hist = record["details"]["histograms"]
    assert set(hist) == set(SCORE_NAMES) and hist["log_px"]["bins"] == 10
    far = hist["log_px"]["sets"]["far"]
    assert sum(far["out"]) + far["nonfinite"] == far["n"] == 16
    assert sum(far["in"]) + hist["log_px"]["in_nonfinite"] == hist["log_px"]["n_in"]
    redrawn = tmp_path / "redrawn"
    assert sorted(redraw(json.loads(json.dumps(record)), redrawn)) == sorted(record["figures"])
    for name in record["figures"]:
        assert compare_images(str(tmp_path / name), str(redrawn / name), tol=0) is None


@pytest.mark.parametrize("table,field", [({"sets": ["cifar1000"]}, "cifar1000"), ({"scores": ["energy"]}, "scores"),
                                         ({"interp_lambda": 2}, "interp_lambda"), ({"n_out": -1}, "n_out")])
def test_bad_protocol_values_are_one_line_errors(tmp_path, table, field):
    ckpt = load_checkpoint(make_wrn_checkpoint(tmp_path / "wrn.pt", buffer_n=None))
    with pytest.raises(JembenchError, match=field) as info:
        ood.run(ckpt, protocol("ood", **table), EvalContext(dataset="digits", out_dir=tmp_path))
    assert "\n" not in str(info.value)


def test_cli_end_to_end_writes_record_and_histograms(tmp_path):
    ckpt = make_wrn_checkpoint(tmp_path / "wrn.pt")
    out = tmp_path / "out" / "ood.json"
    proc = run_cli("eval", "--suite", "ood", "--preset", "tiny", ckpt, "--out", out, "--no-download",
                   "--data-root", tmp_path / "no-data")
    assert proc.returncode == 0, proc.stderr
    record = json.loads(out.read_text())
    expected = {f"{m}/{s}/{score}" for m in ("auroc", "aupr", "fpr95") for s in ("uniform", "constant", "interp")
                for score in SCORE_NAMES}
    assert set(record["metrics"]) == expected
    assert all(0.0 <= v <= 1.0 for v in record["metrics"].values())
    assert "channel mismatch" in record["details"]["notes"][0] and "skipped SVHN" in proc.stdout
    assert "in-distribution is the positive class" in record["details"]["convention"]
    assert sorted(record["figures"]) == [f"ood_hist_{s}.png" for s in sorted(SCORE_NAMES)]
    assert all(is_png(out.parent / f) for f in record["figures"])
    assert "AUROC" in proc.stdout and "−‖∂log p(x)/∂x‖" in proc.stdout
