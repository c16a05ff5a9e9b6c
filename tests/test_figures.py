"""jembench.figures: every figure type renders as PNG (known pixel size) + PDF (vector) in the shared style, from
small synthetic details and from the committed demo records; labels are short and inert; robustness curves
leave out inputs without a starting point; robustness-plot warns on mixed protocols; the report shows figures
at their natural size with their captions; ε prints as 4/255."""

from __future__ import annotations

import json
import math
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import REPO
from jembench import figures, metric_keys
from jembench.cli import main as cli_main
from jembench.metrics.fidelity import to_uint8_rgb
from jembench.report import build_report

DEMO = REPO / "results" / "runs" / "demo"
PX_COLUMN, PX_PAGE = round(figures.COLUMN * figures.DPI), round(figures.PAGE * figures.DPI)


def _record(method: str, suite: str) -> dict:
    return json.loads((DEMO / method / f"{suite}.json").read_text(encoding="utf-8"))


def _size(png: Path) -> tuple[int, int]:
    with Image.open(png) as im:
        return im.size


def _check_pair(png: Path) -> tuple[int, int]:
    """Both files exist; the PDF is a PDF with TrueType (not Type 3) fonts; returns the PNG's pixel size."""
    pdf = figures.vector_path(png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = pdf.read_bytes()
    assert data[:5] == b"%PDF-" and b"/Type3" not in data
    return _size(png)


@pytest.fixture(autouse=True)
def _no_matplotlib_warnings():
    """A missing glyph or a collapsed layout is a warning in matplotlib; here it is a failure."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        yield


# ----------------------------------------------------------------------------------------- reliability
def test_reliability_diagram_from_the_demo_record_is_column_wide(tmp_path):
    rec = _record("jem", "calibration")
    png = figures.reliability_diagram(rec["details"]["bins"], tmp_path / "rel.png", ece=rec["metrics"]["ece"],
                                      model=rec["model"]["name"], dataset=rec["dataset"])
    assert png == tmp_path / "rel.png"
    width, height = _check_pair(png)
    assert width == PX_COLUMN and height == round(3.9 * figures.DPI)  # exactly the figure size: never cropped


def test_reliability_diagram_survives_empty_bins_nan_and_hostile_names(tmp_path):
    bins = [{"lower": b / 4, "upper": (b + 1) / 4, "count": c, "accuracy": a, "confidence": f}
            for b, (c, a, f) in enumerate([(0, math.nan, math.nan), (3, 0.0, 0.4), (5, 1.0, 0.6), (0, math.nan,
                                                                                                   math.nan)])]
    png = figures.reliability_diagram(bins, tmp_path / "r.png", ece=math.nan, model="$\\frac{a}{$ x" * 20,
                                      dataset="folder:/secret/abs/path/mydata")
    assert _check_pair(png)[0] == PX_COLUMN


# ------------------------------------------------------------------------------------------ histograms
def test_ood_histograms_one_panel_per_set_single_and_double_column(tmp_path):
    rng = np.random.default_rng(0)
    s_in = torch.tensor(rng.normal(0, 1, 300))
    many = {"uniform": rng.normal(-3, 1, 200), "constant": np.zeros(50), "interp": rng.normal(-1, 1, 200),
            "folder:/abs/path/ood-set": torch.tensor([1.0, float("nan"), float("inf")])}
    png = figures.score_histograms(s_in, many, tmp_path / "h.png", label="−‖∂log p(x)/∂x‖", in_name="digits",
                                   bins=30, aurocs={"uniform": 0.99, "constant": 0.5, "interp": math.nan})
    assert _check_pair(png)[0] == PX_PAGE
    one = figures.score_histograms(s_in, {"uniform": rng.normal(-3, 1, 200)}, tmp_path / "one.png",
                                   label="log p(x)", in_name="cifar10")
    assert _check_pair(one)[0] == PX_COLUMN


def test_labels_are_short_display_names_never_paths_and_never_mathtext():
    assert figures.dataset_label("cifar10") == "CIFAR-10"
    assert figures.dataset_label("uniform") == "Uniform"
    assert figures.dataset_label("folder:/work/shared/data/cifar10-jpeg/") == "cifar10-jpeg"
    assert figures.dataset_label("folder:/x/y", "CIFAR-10 (JPEG q75 copy)") == "CIFAR-10 (JPEG q75 copy)"
    assert figures.record_dataset_label({"dataset": "folder:/a/b/tiny"}) == "tiny"
    assert figures.plain("a $x^2$ b") == r"a \$x^2\$ b"
    assert figures.plain("line\nbreak\x00" + "z" * 100, 20) == "line break" + "z" * 9 + "…"


# ---------------------------------------------------------------------------------------- sample grids
def test_sample_grid_upscales_by_nearest_neighbour_pixel_for_pixel(tmp_path):
    x = torch.randint(0, 256, (10, 3, 8, 8), dtype=torch.uint8)
    png = figures.sample_grid(x, tmp_path / "g.png", n=9)
    scale, pad = figures.TILE_PX // 8, 2
    side = 3 * (8 * scale + pad) + pad  # 9 images -> 3 x 3 tiles
    assert _check_pair(png) == (side, side)
    with Image.open(png) as im:
        pixels = np.asarray(im.convert("RGB"))
    for i in (0, 4, 8):
        r, c = divmod(i, 3)
        top, left = pad + r * (8 * scale + pad), pad + c * (8 * scale + pad)
        tile = pixels[top:top + 8 * scale, left:left + 8 * scale]
        expected = np.kron(x[i].permute(1, 2, 0).numpy(), np.ones((scale, scale, 1), dtype=np.uint8))
        assert np.array_equal(tile, expected)


def test_float_images_are_quantized_by_the_one_quantization(tmp_path):
    x = torch.rand(4, 1, 32, 32) * 2.2 - 1.1  # SGLD chains may leave [-1, 1]
    png = figures.sample_grid(x, tmp_path / "f.png")
    scale = 2  # 32 px tiles -> 64
    with Image.open(png) as im:
        pixels = np.asarray(im.convert("RGB"))
    assert np.array_equal(pixels[2:2 + 64:scale, 2:2 + 64:scale], to_uint8_rgb(x)[0].permute(1, 2, 0).numpy())


def test_conditional_grid_has_one_labelled_row_per_class(tmp_path):
    labels = torch.tensor([0] * 7 + [2] * 3 + [5] * 12)
    x = torch.randint(0, 256, (len(labels), 3, 32, 32), dtype=torch.uint8)
    names = ["plane", "car", "bird", "cat", "deer", "$dog$"]
    png = figures.sample_grid(x, tmp_path / "c.png", n=30, labels=labels, class_names=names)
    width, height = _check_pair(png)
    tile = 64 + 2
    assert height == 3 * tile + 2  # classes 0, 2, 5: three rows
    assert width > 10 * tile + 2  # 10 per row (n // 3 classes), plus the margin holding the class names
    rows, classes = figures._class_rows(labels.numpy(), 30)
    assert classes == [0, 2, 5] and [len(r) for r in rows] == [7, 3, 10]
    assert rows[2][0] == 10  # the first (most confident) images of each class


# ------------------------------------------------------------------------------------ robustness curves
def test_inputs_without_a_starting_point_are_left_out_not_counted_robust():
    # 5 inputs: misclassified clean (0), adversarials at 0.5 and 1.0, one attacked without success (None),
    # one never attacked for want of a starting point (None, counted by no_start)
    entry = {"l2": [0.0, 0.5, 1.0, None, None], "no_start": 1}
    xs = np.array([0.0, 0.75, 2.0])
    assert figures.accuracy_curve(entry["l2"], xs, no_start=1).tolist() == [75.0, 50.0, 25.0]  # of 4 attacked
    assert figures.accuracy_curve(entry["l2"], xs).tolist() == [80.0, 60.0, 40.0]  # what "robust" would claim
    curve = figures.curves({"boundary": {"k0": entry}}, "boundary")["k0"]
    assert (curve.n, curve.no_start) == (4, 1) and curve.accuracy[-1] == 25.0
    # per-input flags, when a record holds them, give the same curve
    flagged = {"l2": [0.0, 0.5, 1.0, None, None], "has_start": [True, True, True, True, False]}
    same = figures.curves({"boundary": {"k0": flagged}}, "boundary")["k0"]
    assert (same.n, same.no_start) == (4, 1) and np.array_equal(same.accuracy, curve.accuracy)


def test_pgd_curve_passes_through_the_records_metrics_at_the_grid():
    rec = _record("jem", "robustness")
    for norm in ("linf", "l2"):
        for k_name, curve in figures.curves(rec["details"], norm).items():
            entry = rec["details"]["pgd"][norm][k_name]
            at = np.searchsorted(curve.x, entry["eps"])
            assert np.allclose(curve.accuracy[at], entry["robust_acc"])
            assert curve.n == rec["details"]["n"] and curve.no_start == 0


def test_robustness_figures_from_the_demo_record(tmp_path):
    rec = _record("jem", "robustness")
    names = figures.robustness_figures(rec["details"], rec["model"]["name"], rec["dataset"],
                                       lambda suffix: tmp_path / f"robustness_{suffix}.png")
    assert names == ["robustness_pgd.png", "robustness_gradient_free.png"]
    for name in names:
        assert _check_pair(tmp_path / name)[0] == PX_PAGE


def test_robustness_plot_writes_png_and_pdf_and_warns_once_on_mixed_protocols(tmp_path, capsys):
    jem, softmax = DEMO / "jem" / "robustness.json", DEMO / "softmax" / "robustness.json"
    assert cli_main(["robustness-plot", str(softmax), str(jem), "-o", str(tmp_path / "same.png")]) == 0
    out, err = capsys.readouterr()
    assert "warning" not in err and (tmp_path / "same.pdf").is_file() and "same.pdf" in out
    assert _check_pair(tmp_path / "same.png")[0] == PX_PAGE
    other = json.loads(jem.read_text(encoding="utf-8"))
    other["protocol"] = dict(other["protocol"], name="robustness", hash="0123456789abcdef")
    (tmp_path / "other.json").write_text(json.dumps(other), encoding="utf-8")
    assert cli_main(["robustness-plot", str(softmax), str(tmp_path / "other.json"), "-o",
                     str(tmp_path / "mixed.png"), "--kind", "boundary"]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "2 different protocols" in err and "0123456" in err
    assert _check_pair(tmp_path / "mixed.png")[0] == PX_COLUMN  # one panel: one column
    assert cli_main(["robustness-plot", str(jem), "-o", str(tmp_path / "fig.jpg")]) == 2
    assert "must end in .png" in capsys.readouterr().err and not (tmp_path / "fig.jpg").exists()


# ------------------------------------------------------------------------------------- report and ε text
def test_report_shows_figures_at_natural_size_with_captions_and_vector_names(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(DEMO / "jem", run)
    page = build_report(run)
    rec = _record("jem", "calibration")
    png = run / rec["figures"][0]
    width, height = _size(png)
    assert f'width="{width}" height="{height}"' in page
    assert "Reliability diagram" in page and f"vector: <code>{png.with_suffix('.pdf').name}</code>" in page
    assert "max-width:32rem" not in page and "max-width:100%" in page


@pytest.mark.parametrize("suite", ["calibration", "robustness"])
def test_committed_demo_figures_are_what_the_code_draws_from_the_records(tmp_path, suite):
    """The README's figures stay in step with the code: redrawn from the committed records' details, they come
    out byte for byte as committed (PNG and PDF)."""
    for method in ("jem", "softmax"):
        rec = _record(method, suite)
        assert figures.redraw(rec, tmp_path) == rec["figures"]
        for name in rec["figures"]:
            assert figures.caption(name)
            for made in figures.files_of(tmp_path / name):
                assert made.read_bytes() == (DEMO / method / made.name).read_bytes(), f"{method}/{made.name}"
    assert figures.redraw(_record("jem", "ood"), tmp_path / "none") == []  # per-input scores are not in records


def test_eps_prints_as_a_fraction_of_255(capsys):
    assert [metric_keys.eps_label(e) for e in (0.0, 4 / 255, 8 / 255, 0.0313725, 0.5, 1.0, 0.03)] == \
        ["0", "4/255", "8/255", "8/255", "0.5", "1", "0.03"]
    assert metric_keys.eps_label(16 / 255) == "16/255" and metric_keys.eps_label(0.5, "l2") == "0.5"
    assert metric_keys.eps_label(2 / 255, "l2") == "0.00784314"  # L2 radii are never printed as /255
    assert cli_main(["leaderboard", str(DEMO), "--table", "robustness"]) == 0
    assert "ε=4/255" in capsys.readouterr().out
