"""The official generation protocols against independent transcriptions of the papers' own arithmetic:
SADA-JEM's ``cond_is_fid`` per-class top-k (Task/eval_buffer.py:17-50; JEM++'s ``cond_fid`` is the same,
eval_jempp.py:275-307), the IS split rule ``max(1, N // 5000)`` (Task/eval_buffer.py:145) with consecutive splits
(Task/inception.py ``get_inception_score``), the train + test FID reference (Task/eval_buffer.py:89-91), and the
float-versus-uint8 image hand-off (Task/eval_buffer.py:11-14, 71-77). Fast: small registered feature extractors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import ConcatDataset

from jembench.data import load_dataset, stack_dataset
from jembench.metrics.fidelity import (TINY, QuantizedDataset, TinyConvFeatureExtractor, feature_extractor_kwargs,
                                       fidelity_metrics, isc_split_count, to_uint8_rgb)
from jembench.metrics.sample_selection import Selection, select, top_k_count
from jembench.models import dequantize_images, load_checkpoint
from jembench.protocols import load_protocol
from jembench.suites import EvalContext, generation
from test_eval_helpers import make_wrn_checkpoint, protocol
from test_generation import TEST_FE, PixelPoolExtractor, _frechet

N_CLASSES = 10


# ------------------------------------------------------------------------- the official arithmetic, transcribed
def official_cond_is_fid_images(classify, buffer: torch.Tensor, n_classes: int, ratio: float) -> torch.Tensor:
    """The images SADA-JEM's cond_is_fid hands to eval_is_fid (Task/eval_buffer.py:17-50), step by step: classify
    ``N // 100`` chunks of 100 without gradients (predicted class = argmax of the logits, confidence = max
    softmax); split buffer and confidences by predicted class with boolean masks; per class keep ``int(n·ratio)``
    (ratio < 1) or ``int(ratio)`` images, at most n, chosen by torch.topk of the confidences; concatenate."""
    chunks = buffer.size(0) // 100
    predicted, confidence = [], []
    with torch.no_grad():
        for i in range(chunks):
            logits = classify(buffer[i * 100:(i + 1) * 100])
            predicted.append(logits.max(1)[1])
            confidence.append(nn.Softmax(dim=1)(logits).max(1)[0])
    predicted, confidence = torch.cat(predicted), torch.cat(confidence)
    kept = []
    for c in range(n_classes):
        images_c, conf_c = buffer[predicted == c], confidence[predicted == c]
        k = min(int(len(conf_c) * ratio) if ratio < 1 else int(ratio), len(conf_c))
        kept.append(images_c[torch.topk(conf_c, k)[1]])
    return torch.cat(kept)


def official_inception_score(probs: np.ndarray, splits: int) -> tuple[float, float]:
    """Task/inception.py get_inception_score after the network: consecutive slices, exp(mean KL(p(y|x) ‖ p(y)))."""
    scores = []
    n = probs.shape[0]
    for i in range(splits):
        part = probs[i * n // splits:(i + 1) * n // splits]
        kl = part * (np.log(part) - np.log(part.mean(0, keepdims=True)))
        scores.append(np.exp(kl.sum(1).mean()))
    return float(np.mean(scores)), float(np.std(scores))


# --------------------------------------------------------------------------------- a crafted replay buffer
class IndexedLogits(nn.Module):
    """A 'classifier' of 1×2×2 images that encode their own index i in two grey levels (i // 256, i % 256),
    returning row i of a fixed logits table — so selected images name the buffer rows they came from."""

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.register_buffer("table", table)

    def forward(self, x):
        levels = ((x[:, 0].flatten(1)[:, :2] + 1) * 127.5).round().long()
        return self.table[levels[:, 0] * 256 + levels[:, 1]]


def crafted_buffer(n: int, seed: int = 0) -> tuple[torch.Tensor, IndexedLogits]:
    """``n`` images whose predicted classes have very different sizes (class c drawn with weight (c + 1)², class 9
    never predicted) and whose confidences tie often (the winning logit takes one of three values)."""
    gen = torch.Generator().manual_seed(seed)
    weights = torch.tensor([(c + 1.0) ** 2 for c in range(N_CLASSES - 1)] + [0.0])
    label = torch.multinomial(weights, n, replacement=True, generator=gen)
    height = torch.tensor([1.0, 2.0, 3.0])[torch.randint(0, 3, (n,), generator=gen)]
    table = torch.nn.functional.one_hot(label, N_CLASSES).float() * height[:, None]
    idx = torch.arange(n)
    levels = torch.stack([idx // 256, idx % 256, torch.zeros(n, dtype=torch.long), torch.zeros(n, dtype=torch.long)], 1)
    images = dequantize_images(levels.to(torch.uint8)).view(n, 1, 2, 2)
    return images, IndexedLogits(table)


def rows_of(images: torch.Tensor) -> list[int]:
    """Buffer rows encoded in (float or uint8) crafted images."""
    levels = images[:, 0].flatten(1)[:, :2]
    if levels.dtype != torch.uint8:
        levels = ((levels + 1) * 127.5).round()
    levels = levels.long()
    return (levels[:, 0] * 256 + levels[:, 1]).tolist()


@pytest.mark.parametrize("ratio", [0.1, 0.9, 0.5, 100, 10000])
def test_per_class_top_k_equals_the_official_cond_is_fid_selection(ratio):
    buffer, model = crafted_buffer(1000)
    official = rows_of(official_cond_is_fid_images(model, buffer, N_CLASSES, ratio))
    pool = generation._pool_from_images(model, buffer, "cpu", batch_size=64)  # the suite's own classification
    ours = generation._selected(pool, Selection(rule="per_class_top", is_ratio=ratio, chunk=100), N_CLASSES, "b")
    assert rows_of(ours.is_pool.images) == official  # same images, same order, ties broken alike
    counts = torch.bincount(pool.label, minlength=N_CLASSES).tolist()
    assert ours.info["class_counts"] == counts and counts[-1] == 0 and len(set(counts)) > 5  # sizes differ
    assert len(official) == sum(top_k_count(c, ratio) for c in counts)


def test_the_official_code_cannot_take_a_remainder_and_jembench_drops_it():
    """With 1,050 images the official class masks (1,000 long) no longer fit the buffer: IndexError. jembench's
    chunk = 100 scores the first 1,000, i.e. exactly what the official code scores on that 1,000-image buffer."""
    buffer, model = crafted_buffer(1050)
    with pytest.raises(IndexError):
        official_cond_is_fid_images(model, buffer, N_CLASSES, 0.1)
    official = rows_of(official_cond_is_fid_images(model, buffer[:1000], N_CLASSES, 0.9))
    with torch.no_grad():
        logits = model(buffer)
    ours = select(logits.softmax(1).max(1).values, logits.max(1).indices, "per_class_top", 0.9, N_CLASSES, chunk=100)
    assert ours.tolist() == official and max(official) < 1000


def test_the_jem_paper_protocol_says_what_app_b_does():
    """JEM App. B: "top 10 percentile samples with the highest p(y|x)". The official protocols' selection, splits
    and references are compared with the official code's values in tests/test_official_settings.py."""
    jem = load_protocol("generation").settings
    assert jem.conditional_selection == Selection(rule="top", is_ratio=0.1) and jem.isc_splits == 10
    for name in ("generation-sadajem-official", "generation-jempp-official"):
        assert load_protocol(name).settings.feature_extractor == "inception-v3-compat", name


def test_buffer_source_scores_the_per_class_selection_with_its_two_set_sizes(tmp_path, monkeypatch):
    monkeypatch.setenv("JEMBENCH_CACHE", str(tmp_path / "cache"))
    ckpt = load_checkpoint(make_wrn_checkpoint(tmp_path / "c.pt", buffer_n=500))
    proto = protocol("generation", sources=["buffer"], feature_extractor=TEST_FE, isc_splits=0, isc_shuffle=False,
                     kid_subsets=5, kid_subset_size=50, grid_n=0,
                     buffer_selection={"rule": "per_class_top", "is_ratio": 0.1, "fid_ratio": 0.9, "chunk": 100})
    record = generation.run(ckpt, proto, EvalContext(dataset="digits", out_dir=tmp_path))
    info = record["details"]["sources"]["buffer"]
    counts = info["class_counts"]
    assert sum(counts) == 500
    assert info["n_is"] == sum(int(0.1 * c) for c in counts) and info["n"] == sum(int(0.9 * c) for c in counts)
    assert info["is_splits"] == 1 and info["is_std"] == 0.0  # max(1, N // 5000)
    assert {"is/buffer", "fid/buffer", "kid/buffer"} == set(record["metrics"])
    assert "n (IS / FID)" in generation.format_table(record) and f"{info['n_is']} / {info['n']}" in \
        generation.format_table(record)


# ------------------------------------------------------------------------------------------- IS splits
def test_is_split_count_is_the_official_rule_and_its_splits_are_consecutive(tmp_path):
    assert [isc_split_count(0, n) for n in (2, 999, 1000, 4999, 5000, 9999, 10000, 25000)] == [1] * 6 + [2, 5]
    assert isc_split_count(10, 1000) == 10 and isc_split_count(10, 4) == 4
    images = torch.randint(0, 256, (10000, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    kw = feature_extractor_kwargs(TEST_FE)
    probs = PixelPoolExtractor(TEST_FE, ["logits"])(images)[0].double().softmax(1).numpy()
    for n, splits in ((1000, 1), (10000, 2)):
        result = fidelity_metrics(images[:n], fe_kwargs=kw, fid=False, kid=False, isc_splits=0, isc_shuffle=False,
                                  cache_root=tmp_path)
        mean, std = official_inception_score(probs[:n], splits)
        assert result["is"] == pytest.approx(mean, rel=1e-6) and result["is_std"] == pytest.approx(std, abs=1e-6)
    ten = fidelity_metrics(images[:1000], fe_kwargs=kw, fid=False, kid=False, isc_splits=10, isc_shuffle=False,
                           cache_root=tmp_path)
    assert ten["is"] == pytest.approx(official_inception_score(probs[:1000], 10)[0], rel=1e-6)
    assert ten["is"] < fidelity_metrics(images[:1000], fe_kwargs=kw, fid=False, kid=False, isc_splits=0,
                                        cache_root=tmp_path)["is"]  # 10 splits of 100 score lower than 1 of 1000


# ------------------------------------------------------------------------------------------ FID reference
def test_train_plus_test_reference_has_both_splits_and_fid_does_not_see_their_order(tmp_path, monkeypatch):
    monkeypatch.setenv("JEMBENCH_CACHE", str(tmp_path / "cache"))
    ckpt = load_checkpoint(make_wrn_checkpoint(tmp_path / "c.pt", buffer_n=300))
    proto = protocol("generation", sources=["buffer"], feature_extractor=TEST_FE, reference_split="train+test",
                     kid_subsets=5, kid_subset_size=50, grid_n=0)
    record = generation.run(ckpt, proto, EvalContext(dataset="digits", out_dir=tmp_path))
    ref = record["details"]["reference"]
    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    assert ref["split"] == "train+test" and ref["split_sizes"] == [len(train), len(test)] == [1437, 360]
    assert ref["n"] == 1797 and "train_and_test" in ref["cache_name"]
    extractor = PixelPoolExtractor(TEST_FE, ["pool"])
    both = torch.cat([stack_dataset(train)[0], stack_dataset(test)[0]])
    samples = to_uint8_rgb(ckpt.buffer)
    expected = _frechet(extractor(samples)[0].double().numpy(), extractor(to_uint8_rgb(both))[0].double().numpy())
    assert record["metrics"]["fid/buffer"] == pytest.approx(expected, rel=1e-4)
    reversed_reference = QuantizedDataset(ConcatDataset([test, train]), list(range(1797))[::-1])  # no cache name
    shuffled = fidelity_metrics(samples, reversed_reference, fe_kwargs=feature_extractor_kwargs(TEST_FE), isc=False,
                                kid=False, cache_root=tmp_path / "other")
    assert shuffled["fid"] == pytest.approx(record["metrics"]["fid/buffer"], rel=1e-6)


# -------------------------------------------------------------------------------------- image hand-off
@pytest.mark.parametrize("sigma", [0.05, 0.2])
def test_uint8_quantization_moves_fid_by_under_one_percent_of_the_official_float_images(sigma):
    """The official code feeds (clamp(x) + 1) / (2 + 1e-5) · 255 unrounded; torch-fidelity takes uint8. With the
    tiny conv extractor's features (which accept float levels), FID against the same reference moves by < 1 %."""
    extractor = TinyConvFeatureExtractor(TINY, ["features"])
    train, _ = stack_dataset(load_dataset("digits", "train"))
    test, _ = stack_dataset(load_dataset("digits", "test"))
    x = (test + sigma * torch.randn(test.shape, generator=torch.Generator().manual_seed(0))).repeat(1, 3, 1, 1)
    reference = extractor.from_levels(to_uint8_rgb(train).float())["features"].double().numpy()
    official = extractor.from_levels((x.clamp(-1, 1) + 1) / (2 + 1e-5) * 255)["features"].double().numpy()
    ours = extractor.from_levels(to_uint8_rgb(x).float())["features"].double().numpy()
    fid_official, fid_ours = _frechet(official, reference), _frechet(ours, reference)
    assert abs(fid_ours - fid_official) < 0.01 * fid_official
    assert math.isfinite(fid_ours) and fid_ours > 0
