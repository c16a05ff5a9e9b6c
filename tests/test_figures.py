"""jembench.figures: what each figure says — the data its artists draw, its titles and labels, its text extents —
read back from matplotlib, never its bytes (which depend on the matplotlib / FreeType / fontTools builds of the
machine). Every figure type renders as PNG (known pixel size) + PDF (vector) in the pinned style, from small
synthetic details and from the committed records; long labels stay inside the canvas without overlapping; every
text is drawn in matplotlib's bundled DejaVu Sans, whatever fonts the system has and whatever the user's
matplotlibrc says; the files carry no dates, versions or host names; committed figures match what the code draws
from their records (tolerance-based image comparison)."""

from __future__ import annotations

import copy
import json
import math
import re
import shutil
import socket
import warnings
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch
from matplotlib.testing.compare import compare_images
from PIL import Image

from conftest import REPO
from figure_checks import foreign_fonts, layout_problems, repository_labels, texts
from jembench import figures, metric_keys
from jembench.cli import main as cli_main
from jembench.metrics.fidelity import to_uint8_rgb
from jembench.records import set_label
from jembench.report import build_report

DEMO = REPO / "results" / "runs" / "demo"
CPU = REPO / "results" / "runs" / "cifar10-cpu"
PX_COLUMN, PX_PAGE = round(figures.COLUMN * figures.DPI), round(figures.PAGE * figures.DPI)
#: RMS difference (0-255 scale) a committed PNG may have from a redraw (matplotlib's compare_images). Measured on
#: the committed figures: half a figure shifted by one pixel (a layout rounding of another build) 3.3; one bar
#: 0.1 lower 10-23, one PGD curve missing 10.7, the title lost 44-61. Smaller data errors are caught by the tests
#: that read the artists back, which do not depend on pixels at all.
TOLERANCE = 5.0
#: the longest dataset / OOD-set label in suites/ and results/, and two 120-character ones (words; one word)
LONGEST = repository_labels()[0]
LONG_120 = ("Tiny ImageNet 32 (a CIFAR-100 stand-in of 2,000 test images, resized by the shorter side and "
            "centre-cropped to 32×32 px)")
WIDE_120 = "W" * 120


def _record(folder: Path, method: str, suite: str) -> dict:
    name = f"{suite}.json" if folder == DEMO else f"last-{suite}.json"
    return json.loads((folder / method / name).read_text(encoding="utf-8"))


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


def _title(ax) -> str:
    return ax.get_title().replace("\n", " ")


@pytest.fixture(autouse=True)
def _no_matplotlib_warnings():
    """A missing glyph or a collapsed layout is a warning in matplotlib; here it is a failure."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        yield


# ----------------------------------------------------------------------------------------- reliability
def test_reliability_diagram_from_the_demo_record_is_column_wide(tmp_path):
    rec = _record(DEMO, "jem", "calibration")
    png = figures.reliability_diagram(rec["details"]["bins"], tmp_path / "rel.png", ece=rec["metrics"]["ece"],
                                      model=rec["model"]["name"], dataset=rec["dataset"])
    assert png == tmp_path / "rel.png"
    width, height = _check_pair(png)
    assert width == PX_COLUMN and height == round(3.9 * figures.DPI)  # exactly the figure size: never cropped


def test_reliability_diagram_draws_the_records_bins_and_names_them():
    """Read back from the artists: bars = the record's per-bin accuracy at the bins' edges, gap bars from
    accuracy to confidence split by sign, counts below; the title names model, dataset label, ECE, bins and n."""
    rec = _record(CPU, "softmax_sam", "calibration")
    bins = rec["details"]["bins"]
    fig = figures.draw_reliability(bins, ece=rec["metrics"]["ece"], model=rec["model"]["name"],
                                   dataset=rec["dataset"], dataset_display=rec["dataset_label"])
    top, bottom = fig.axes
    full = [b for b in bins if b["count"]]
    acc, gaps_over, gaps_under = top.containers
    assert [p.get_x() for p in acc] == pytest.approx([b["lower"] for b in full])
    assert [p.get_width() for p in acc] == pytest.approx([b["upper"] - b["lower"] for b in full])
    assert [p.get_height() for p in acc] == pytest.approx([b["accuracy"] for b in full])
    over = [b for b in full if b["confidence"] > b["accuracy"]]
    assert np.allclose([(p.get_y(), p.get_height()) for p in gaps_over],
                       [(b["accuracy"], b["confidence"] - b["accuracy"]) for b in over])
    assert len(gaps_under) == sum(b["confidence"] < b["accuracy"] for b in full)
    assert [p.get_height() for p in bottom.containers[0]] == pytest.approx([b["count"] for b in full])
    n = sum(b["count"] for b in full)
    share = round(100 * sum(b["count"] for b in over) / n)
    assert f"over-confident gap ({share}% of inputs)" in texts(fig)
    assert _title(top) == (f"softmax_sam-cifar10-cpu CIFAR-10 (JPEG q75 copy) ECE = {rec['metrics']['ece']:.2f}% "
                           f"({len(bins)} bins, n = {n})")  # the dataset label, in full (it was clipped)
    assert layout_problems(fig) == []


def test_reliability_diagram_survives_empty_bins_nan_and_hostile_names(tmp_path):
    bins = [{"lower": b / 4, "upper": (b + 1) / 4, "count": c, "accuracy": a, "confidence": f}
            for b, (c, a, f) in enumerate([(0, math.nan, math.nan), (3, 0.0, 0.4), (5, 1.0, 0.6), (0, math.nan,
                                                                                                   math.nan)])]
    png = figures.reliability_diagram(bins, tmp_path / "r.png", ece=math.nan, model="$\\frac{a}{$ x" * 20,
                                      dataset="folder:/secret/abs/path/mydata")
    assert _check_pair(png)[0] == PX_COLUMN
    fig = figures.draw_reliability(bins, ece=math.nan, model="模型 $x$ α", dataset="folder:/secret/abs/path/mydata")
    title = fig.axes[0].get_title()
    assert title.startswith(r"?? \$x\$ α · mydata") and "ECE = nan" in title and "secret" not in title
    assert layout_problems(fig) == [] and foreign_fonts(fig) == []  # no fallback font for the CJK name


# ------------------------------------------------------------------------------------------ histograms
def test_ood_histograms_one_panel_per_set_single_and_double_column(tmp_path):
    rng = np.random.default_rng(0)
    s_in = torch.tensor(rng.normal(0, 1, 300))
    many = {"uniform": rng.normal(-3, 1, 200), "constant": np.zeros(50), "interp": rng.normal(-1, 1, 200),
            "folder:/abs/path/ood-set": torch.tensor([1.0, float("nan"), float("inf")])}
    data = figures.histogram_data(s_in, many, 30)
    png = figures.score_histograms(data, tmp_path / "h.png", label="−‖∂log p(x)/∂x‖", in_name="digits",
                                   aurocs={"uniform": 0.99, "constant": 0.5, "interp": math.nan})
    assert _check_pair(png)[0] == PX_PAGE
    one = figures.score_histograms(figures.histogram_data(s_in, {"uniform": rng.normal(-3, 1, 200)}, 100),
                                   tmp_path / "one.png", label="log p(x)", in_name="cifar10")
    assert _check_pair(one)[0] == PX_COLUMN
    fig = figures.draw_score_histograms(data, label="log p(x)", in_name="digits", aurocs={"uniform": 0.99})
    titles = [_title(ax) for ax in fig.axes[:4]]
    assert titles == ["Uniform AUROC 0.990 · n = 200", "Constant n = 50", "Interp n = 200",
                      "ood-set n = 3 · 2 non-finite left out"]  # a folder by its name, never its path
    assert figures.draw_score_histograms(figures.histogram_data(s_in, {}, 10), label="s", in_name="x").axes[0] \
        .get_title().startswith("(no OOD set)")


def test_ood_histograms_draw_each_sides_share_of_inputs_per_bin():
    """The steps drawn are the share of each side's finite scores per bin on bins spanning both sides,
    recomputed here with numpy; the stored data survives JSON (what a record holds) and draws the same."""
    rng = np.random.default_rng(1)
    s_in, s_out = rng.normal(0, 1, 400), np.append(rng.normal(2, 0.5, 250), [np.inf, np.nan])
    data = figures.histogram_data(s_in, {"svhn": s_out}, 25)
    stored = json.loads(json.dumps(data))
    assert stored == data and stored["sets"]["svhn"]["n"] == 252 and stored["sets"]["svhn"]["nonfinite"] == 2
    fig = figures.draw_score_histograms(stored, label="log p(x)", in_name="cifar10", aurocs={"svhn": 0.25},
                                        set_labels={"svhn": "SVHN (10k test subset)"})
    ax = fig.axes[0]
    finite = s_out[np.isfinite(s_out)]
    edges = np.linspace(min(s_in.min(), finite.min()), max(s_in.max(), finite.max()), 26)
    filled, step = ax.patches[:2]
    assert np.allclose(filled.get_data().values, np.histogram(s_in, edges)[0] / 400)
    assert np.allclose(step.get_data().values, np.histogram(finite, edges)[0] / 250)
    assert np.allclose(step.get_data().edges, edges)
    assert ax.get_title() == "SVHN (10k test subset)\nAUROC 0.250 · n = 252\n2 non-finite left out"
    assert ax.get_xlabel() == "log p(x)" and ax.get_ylabel() == "share of inputs"
    assert "in-distribution: CIFAR-10 (n = 400)" in texts(fig)


def test_committed_ood_labels_no_longer_run_into_each_other():
    """The committed CIFAR-10 runs' six OOD sets (the titles that overlapped: "Interp · AUROC 0.570Tiny
    ImageNet 32 (CIFAR-100 stand-in) · AUROC 0.658CelebA (6k subset, …") drawn with their labels and AUROCs."""
    rec = _record(CPU, "jem", "ood")
    d = rec["details"]
    rng = np.random.default_rng(0)
    labels = {n: set_label(rec, n) for n in d["sets"]}  # stored once, with each set
    data = figures.histogram_data(rng.normal(3, 0.4, 500), {n: rng.normal(3, 0.5, 500) for n in labels}, 50)
    fig = figures.draw_score_histograms(data, label=d["scores"]["log_px"], in_name=rec["dataset"],
                                        in_display=rec["dataset_label"], set_labels=labels,
                                        aurocs={n: s["scores"]["log_px"]["auroc"] for n, s in d["sets"].items()})
    titles = [_title(ax) for ax in fig.axes]
    assert titles[4] == "Tiny ImageNet 32 (CIFAR-100 stand-in) AUROC 0.658 · n = 500"
    assert titles[5].startswith("CelebA (6k subset, 32×32) AUROC")
    assert layout_problems(fig) == []


def test_labels_are_short_display_names_never_paths_and_never_mathtext():
    assert figures.dataset_label("cifar10") == "CIFAR-10"
    assert figures.dataset_label("uniform") == "Uniform"
    assert figures.dataset_label("folder:/work/shared/data/cifar10-jpeg/") == "cifar10-jpeg"
    assert figures.dataset_label("folder:/x/y", "CIFAR-10 (JPEG q75 copy)") == "CIFAR-10 (JPEG q75 copy)"
    assert figures.record_dataset_label({"dataset": "folder:/a/b/tiny"}) == "tiny"
    assert figures.plain("a $x^2$ b") == r"a \$x^2\$ b"
    assert figures.plain("line\nbreak\x00" + "z" * 100, 20) == "line break" + "z" * 9 + "…"
    assert figures.plain("模型 α ∞ ε ‖∂") == "?? α ∞ ε ‖∂"  # what DejaVu Sans lacks is a '?', not another font


def test_fit_wraps_at_parts_then_words_and_cuts_what_does_not_fit():
    size = 9
    narrow = figures.labels.text_width("Tiny ImageNet 32 (CIFAR-100", size) + 1
    assert figures.fit(["jem", "CIFAR-10"], 400, size) == "jem · CIFAR-10"
    assert figures.fit(["softmax_sam-cifar10-cpu", "CIFAR-10 (JPEG q75 copy)"], 150, size) == \
        "softmax_sam-cifar10-cpu\nCIFAR-10 (JPEG q75 copy)"  # a part moves to its own line before words break
    assert figures.fit(["Tiny ImageNet 32 (CIFAR-100 stand-in)"], narrow / 0.97, size) == \
        "Tiny ImageNet 32 (CIFAR-100\nstand-in)"
    cut = figures.fit([WIDE_120], 100, size, max_lines=2).split("\n")
    assert len(cut) == 2 and cut[1].endswith("…")
    assert all(figures.labels.text_width(line, size) <= 100 for line in cut)
    assert figures.fit(["$a$", "b$"], 400, size) == r"\$a\$ · b\$"  # escaped after layout: no split escapes


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
    rows, classes = figures.sample_grids.class_rows(labels.numpy(), 30)
    assert classes == [0, 2, 5] and [len(r) for r in rows] == [7, 3, 10]
    assert rows[2][0] == 10  # the first (most confident) images of each class
    fig = figures.draw_sample_grid(x, n=30, labels=labels, class_names=names)
    assert texts(fig) == ["plane", "bird", r"\$dog\$"] and layout_problems(fig) == []


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
    rec = _record(DEMO, "jem", "robustness")
    for norm in ("linf", "l2"):
        for k_name, curve in figures.curves(rec["details"], norm).items():
            entry = rec["details"]["pgd"][norm][k_name]
            at = np.searchsorted(curve.x, entry["eps"])
            assert np.allclose(curve.accuracy[at], entry["robust_acc"])
            assert curve.n == rec["details"]["n"] and curve.no_start == 0


def test_robustness_figure_draws_the_records_curves():
    """Every line drawn, read back: PGD lines pass through the record's robust accuracies at its ε grid;
    decision-based lines are, at every x, the share of attacked inputs whose adversarial is farther than x
    (recomputed here from the per-input distances); one line per K, labelled, titled by model and dataset."""
    rec = _record(CPU, "jem", "robustness")
    d = rec["details"]
    fig = figures.draw_robustness([rec])
    panels = {ax.get_title().split(" · ")[0]: ax for ax in fig.axes}
    assert set(panels) == {"PGD L∞", "PGD L2", "boundary (L2)", "pointwise (L0)"}
    assert fig.get_suptitle() == "jem-cifar10-cpu · CIFAR-10 (JPEG q75 copy)"
    for title, family, norm, field in (("PGD L∞", "pgd", "linf", "min_eps"), ("PGD L2", "pgd", "l2", "min_eps"),
                                       ("boundary (L2)", "boundary", None, "l2"),
                                       ("pointwise (L0)", "pointwise", None, "l0")):
        entries = d[family][norm] if norm else d[family]
        lines = [ln for ln in panels[title].get_lines() if not ln.get_label().startswith("_")]
        assert [ln.get_label().split(",")[0] for ln in lines] == [f"K={k[1:]}" for k in entries]
        for line, entry in zip(lines, entries.values()):
            x, y = line.get_xdata(), line.get_ydata()
            if family == "pgd":
                assert np.allclose(y[np.searchsorted(x, entry["eps"])], entry["robust_acc"])
            else:
                attacked = [v for v, skip in zip(entry[field], entry.get("no_start_inputs") or [False] * d["n"])
                            if not skip]
                dist = np.array([np.inf if v is None else v for v in attacked])
                assert np.allclose(y, [100 * np.mean(dist > v) for v in x])
                assert f"n = {len(attacked)}" in line.get_label()
    assert layout_problems(fig) == []


def test_robustness_figures_from_the_demo_record(tmp_path):
    rec = _record(DEMO, "jem", "robustness")
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


# ------------------------------------------------------------------------------- long labels, every figure
def _robustness(label: str, records: int):
    rec = _record(DEMO, "jem", "robustness")
    recs = [dict(copy.deepcopy(rec), model={"name": f"{label[:i]}{i}"}, dataset_label=label)
            for i in range(records)]  # boundary panels hold the longest legend entries (no-start counts)
    return figures.draw_robustness(recs)


def _histograms(label: str, sets: int):
    rng = np.random.default_rng(0)
    names = [f"set{i}" for i in range(sets)]
    data = figures.histogram_data(rng.normal(0, 1, 300), {n: rng.normal(1, 1, 300) for n in names}, 50)
    return figures.draw_score_histograms(data, label=label, in_name="cifar10", in_display=label,
                                         aurocs=dict.fromkeys(names, 0.5), set_labels=dict.fromkeys(names, label))


def _reliability(label: str):
    rec = _record(DEMO, "jem", "calibration")
    return figures.draw_reliability(rec["details"]["bins"], ece=rec["metrics"]["ece"], model=label,
                                    dataset="cifar10", dataset_display=label)


def _grid(label: str):
    x = torch.randint(0, 256, (30, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    return figures.draw_sample_grid(x, n=30, labels=torch.arange(10).repeat(3), class_names=[label] * 10)


FIGURES = {"reliability": _reliability, "histograms-6-sets": lambda s: _histograms(s, 6),
           "histograms-1-set": lambda s: _histograms(s, 1), "robustness-1-record": lambda s: _robustness(s, 1),
           "robustness-2-records": lambda s: _robustness(s, 2), "conditional-grid": _grid}


@pytest.mark.parametrize("label", [LONGEST, LONG_120, WIDE_120], ids=["longest-in-repo", "120-words", "120-W"])
@pytest.mark.parametrize("kind", list(FIGURES))
def test_long_labels_stay_inside_the_canvas_without_overlapping(kind, label):
    """Every text's rendered extent (after a draw at the PNG's resolution) lies inside the canvas, and no two
    text boxes overlap, with the label everywhere a figure shows one (model, dataset, OOD sets, classes)."""
    assert len(LONG_120) == len(WIDE_120) == 120 and len(LONGEST) >= 37
    fig = FIGURES[kind](label)
    assert layout_problems(fig) == []
    shown = " ".join(texts(fig)).replace("\n", " ")
    assert label[:10] in shown  # the label is there (wrapped or cut), not dropped


# ----------------------------------------------------------------------------- fonts and determinism
def test_every_text_is_drawn_in_the_bundled_font_whatever_the_system_has(tmp_path):
    """Each drawn text resolves to the DejaVu Sans inside matplotlib (not a system copy, not a fallback such
    as Liberation or Noto), and the PDFs embed nothing else."""
    bundled = {matplotlib.ft2font.FT2Font(str(p)).postscript_name
               for p in (Path(matplotlib.get_data_path()) / "fonts" / "ttf").glob("DejaVuSans*.ttf")}
    for kind, draw in FIGURES.items():
        fig = draw(LONGEST)
        assert foreign_fonts(fig) == [], kind
        if kind in ("reliability", "robustness-1-record"):  # mathtext (oblique y); ∞, ε, ‖
            pdf = figures.vector_path(figures.save(fig, tmp_path / f"{kind}.png")).read_bytes()
            embedded = {e.decode() for e in re.findall(rb"/BaseFont /(?:[A-Z]{6}\+)?([\w-]+)", pdf)}
            assert embedded and embedded <= bundled, (kind, embedded)


def test_files_are_the_same_every_time_and_carry_no_date_version_or_host(tmp_path):
    fig = _reliability(LONGEST)
    first = figures.save(fig, tmp_path / "a.png")
    again = figures.save(_reliability(LONGEST), tmp_path / "b.png")
    for suffix in (".png", ".pdf"):
        assert first.with_suffix(suffix).read_bytes() == again.with_suffix(suffix).read_bytes(), suffix
    pdf = first.with_suffix(".pdf").read_bytes()
    info_ref = re.search(rb"/Info (\d+) 0 R", pdf)
    info = re.search(rb"\n" + info_ref.group(1) + rb" 0 obj\n(.*?)endobj", pdf, re.S).group(1) if info_ref else b""
    with Image.open(first) as im:
        png_text = " ".join(f"{k}={v}" for k, v in im.info.items() if isinstance(v, str))
    assert not set(im.info) & {"Software", "Creation Time", "Author"}
    for forbidden in ("CreationDate", "ModDate", "Producer", "Creator", "atplotlib", matplotlib.__version__,
                      socket.gethostname()):
        assert forbidden.encode() not in info and forbidden not in png_text, forbidden
    assert b"atplotlib" not in pdf  # not even in a compressed stream (a 9-letter chance match is negligible)


def test_the_users_matplotlibrc_cannot_change_a_figure(tmp_path):
    """rcParams set by a user (matplotlibrc, a notebook) do not reach jembench's figures: same bytes, same size."""
    plain_png = figures.save(_reliability("jem"), tmp_path / "default.png")
    with matplotlib.rc_context({"font.family": "serif", "font.size": 14, "axes.titlesize": 20,
                                "savefig.bbox": "tight", "savefig.dpi": 72, "savefig.transparent": True,
                                "text.usetex": True, "mathtext.fontset": "stix", "axes.prop_cycle":
                                matplotlib.cycler(color=["k"]), "lines.linewidth": 5}):
        user_png = figures.save(_reliability("jem"), tmp_path / "user.png")
    assert user_png.read_bytes() == plain_png.read_bytes()
    assert user_png.with_suffix(".pdf").read_bytes() == plain_png.with_suffix(".pdf").read_bytes()


# ------------------------------------------------------------------------- committed figures and redraw
COMMITTED = [(DEMO, "jem", "calibration"), (DEMO, "softmax", "calibration"), (DEMO, "jem", "robustness"),
             (DEMO, "softmax", "robustness"), (CPU, "softmax_sam", "calibration"), (CPU, "jem", "robustness")]


@pytest.mark.parametrize("folder,method,suite", COMMITTED, ids=[f"{f.name}-{m}-{s}" for f, m, s in COMMITTED])
def test_committed_figures_say_what_their_records_hold(tmp_path, folder, method, suite):
    """The README's and results/' figures stay in step with the code and the records: redrawn from the committed
    records' details they match the committed PNGs within :data:`TOLERANCE` (RMS, matplotlib's image
    comparison: a pixel-level check that survives other FreeType / matplotlib builds, unlike bytes); their
    layouts are clean (that the data and titles are right is read back from the artists above)."""
    rec = _record(folder, method, suite)
    assert figures.redraw(rec, tmp_path) == rec["figures"]
    for name in rec["figures"]:
        assert figures.caption(name)
        assert _size(tmp_path / name) == _size(folder / method / name)
        assert compare_images(str(folder / method / name), str(tmp_path / name), tol=TOLERANCE) is None, name
        assert figures.vector_path(folder / method / name).is_file()
    assert figures.redraw(_record(DEMO, "jem", "ood"), tmp_path / "none") == []  # committed before histograms


def test_redraw_command_draws_beside_each_record_and_never_outside(tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(DEMO / "jem", run)
    for f in run.glob("*.p*"):
        f.unlink()
    assert cli_main(["redraw", str(run)]) == 0
    out = capsys.readouterr().out
    assert "redrew 3 figure(s) of 5 record(s)" in out and str(run / "calibration_reliability.png") in out
    assert sorted(p.name for p in run.glob("*.pdf")) == ["calibration_reliability.pdf", "robustness_gradient_free.pdf",
                                                         "robustness_pgd.pdf"]
    hostile = json.loads((run / "calibration.json").read_text())
    hostile["figures"] = ["../escaped_reliability.png"]
    (run / "calibration.json").write_text(json.dumps(hostile))
    assert cli_main(["redraw", str(run / "calibration.json")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a PNG file name beside the record" in err
    assert not (tmp_path / "escaped_reliability.png").exists()


# ------------------------------------------------------------------------------------- report and ε text
def test_report_shows_figures_at_natural_size_with_captions_and_vector_names(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(DEMO / "jem", run)
    page = build_report(run)
    rec = _record(DEMO, "jem", "calibration")
    png = run / rec["figures"][0]
    width, height = _size(png)
    assert f'width="{width}" height="{height}"' in page
    assert "Reliability diagram" in page and f"vector: <code>{png.with_suffix('.pdf').name}</code>" in page
    assert "max-width:32rem" not in page and "max-width:100%" in page


def test_eps_prints_as_a_fraction_of_255(capsys):
    assert [metric_keys.eps_label(e) for e in (0.0, 4 / 255, 8 / 255, 0.0313725, 0.5, 1.0, 0.03)] == \
        ["0", "4/255", "8/255", "8/255", "0.5", "1", "0.03"]
    assert metric_keys.eps_label(16 / 255) == "16/255" and metric_keys.eps_label(0.5, "l2") == "0.5"
    assert metric_keys.eps_label(2 / 255, "l2") == "0.00784314"  # L2 radii are never printed as /255
    fig = figures.draw_robustness([_record(DEMO, "jem", "robustness")], kinds=["linf"])
    assert {"16/255", "32/255", "48/255", "64/255"} <= set(texts(fig))
    assert cli_main(["leaderboard", str(DEMO), "--table", "robustness"]) == 0
    assert "ε=4/255" in capsys.readouterr().out
