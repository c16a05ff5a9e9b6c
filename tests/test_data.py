"""Dataset registry: torchvision loaders parse small files written here in their real on-disk formats."""

import pickle

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from conftest import SHARED_CIFAR
from jembench.data import dataset_info, load_dataset, stack_dataset, synthetic_ood
from jembench.errors import JembenchError


def _cifar_images(n, seed):
    return np.random.default_rng(seed).integers(0, 256, size=(n, 3072), dtype=np.uint8)


def _write_cifar10(root, n=4):
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True)
    batches = {}
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        data = _cifar_images(n, i)
        labels = [(i + j) % 10 for j in range(n)]
        with open(base / name, "wb") as fh:
            pickle.dump({"data": data, "labels": labels, "batch_label": name}, fh)
        batches[name] = (data, labels)
    with open(base / "batches.meta", "wb") as fh:
        pickle.dump({"label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                                     "ship", "truck"], "num_cases_per_batch": n}, fh)
    return batches


def test_cifar10_pickles_parse_to_signed_images(tmp_path):
    batches = _write_cifar10(tmp_path)
    train = load_dataset("cifar10", "train", tmp_path, download=False)
    test = load_dataset("cifar10", "test", tmp_path, download=False)
    assert len(train) == 20 and len(test) == 4
    x, y = test[1]
    data, labels = batches["test_batch"]
    expected = torch.tensor(data[1].reshape(3, 32, 32), dtype=torch.float32) / 255 * 2 - 1
    assert torch.allclose(x, expected, atol=1e-6) and y == labels[1]


def test_cifar100_pickles_parse(tmp_path):
    base = tmp_path / "cifar-100-python"
    base.mkdir()
    data = _cifar_images(6, 7)
    for name in ("train", "test"):
        with open(base / name, "wb") as fh:
            pickle.dump({"data": data, "fine_labels": [0, 99, 5, 6, 7, 8], "coarse_labels": [0] * 6}, fh)
    with open(base / "meta", "wb") as fh:
        pickle.dump({"fine_label_names": [f"c{i}" for i in range(100)]}, fh)
    ds = load_dataset("cifar100", "test", tmp_path, download=False)
    x, y = ds[1]
    assert y == 99 and x.shape == (3, 32, 32)
    assert torch.allclose(x, torch.tensor(data[1].reshape(3, 32, 32), dtype=torch.float32) / 255 * 2 - 1)
    assert dataset_info("cifar100").n_classes == 100


def test_svhn_mat_parses_and_maps_label_10_to_0(tmp_path):
    folder = tmp_path / "svhn"
    folder.mkdir()
    X = np.random.default_rng(0).integers(0, 256, size=(32, 32, 3, 3), dtype=np.uint8)
    scipy.io.savemat(folder / "test_32x32.mat", {"X": X, "y": np.array([[10], [1], [9]], dtype=np.uint8)})
    ds = load_dataset("svhn", "test", tmp_path, download=False)
    labels = [ds[i][1] for i in range(3)]
    assert labels == [0, 1, 9]
    expected = torch.tensor(X[:, :, :, 2], dtype=torch.float32).permute(2, 0, 1) / 255 * 2 - 1
    assert torch.allclose(ds[2][0], expected, atol=1e-6)


def test_celeba_files_parse_as_32x32_ood_images(tmp_path):
    base = tmp_path / "celeba"
    (base / "img_align_celeba").mkdir(parents=True)
    names = [f"{i:06d}.jpg" for i in range(1, 4)]
    for i, name in enumerate(names):
        Image.fromarray(np.full((218, 178, 3), 40 * i, dtype=np.uint8)).save(base / "img_align_celeba" / name)
    (base / "list_eval_partition.txt").write_text("".join(f"{n} {2 if i else 0}\n" for i, n in enumerate(names)))
    (base / "identity_CelebA.txt").write_text("".join(f"{n} {i + 1}\n" for i, n in enumerate(names)))
    (base / "list_attr_celeba.txt").write_text("3\nSmiling Young\n" + "".join(f"{n} 1 -1\n" for n in names))
    (base / "list_bbox_celeba.txt").write_text("3\nimage_id x_1 y_1 width height\n"
                                               + "".join(f"{n} 1 2 3 4\n" for n in names))
    (base / "list_landmarks_align_celeba.txt").write_text("3\nlefteye_x lefteye_y\n"
                                                          + "".join(f"{n} 1 2\n" for n in names))
    ds = load_dataset("celeba", "test", tmp_path, download=False)
    assert len(ds) == 2  # partition 2 = test
    x, y = ds[1]
    assert x.shape == (3, 32, 32) and y == 0
    assert torch.allclose(x, torch.full_like(x, 80 / 255 * 2 - 1), atol=0.02)  # grey 80, JPEG-compressed


def test_missing_dataset_without_download_is_one_clear_line(tmp_path):
    with pytest.raises(JembenchError) as err:
        load_dataset("cifar10", "test", tmp_path / "nowhere", download=False)
    message = str(err.value)
    assert "\n" not in message and "--no-download" in message and "cifar-10-batches-py" in message
    assert str(tmp_path / "nowhere") in message
    with pytest.raises(JembenchError, match="svhn"):
        load_dataset("svhn", "test", tmp_path, download=False)
    with pytest.raises(JembenchError, match="unknown dataset 'mnistt'"):
        load_dataset("mnistt")


def test_digits_is_embedded_real_and_scaled():
    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    assert len(train) == 1437 and len(test) == 360
    x, y = stack_dataset(test)
    assert x.shape == (360, 1, 8, 8) and x.min() == -1 and x.max() == 1
    assert sorted(torch.bincount(y).tolist())[0] >= 35  # stratified: every digit present


def test_augmentation_and_noise_only_when_asked():
    plain = load_dataset("digits", "train")
    noisy = load_dataset("digits", "train", noise_std=0.5)
    torch.manual_seed(0)
    assert torch.equal(plain[0][0], load_dataset("digits", "train")[0][0])
    assert (noisy[0][0] - plain[0][0]).std() == pytest.approx(0.5, rel=0.3)
    aug = load_dataset("digits", "train", augment=True)
    shifted = [not torch.equal(aug[0][0], plain[0][0]) for _ in range(20)]
    assert any(shifted)


def test_folder_dataset_from_images(tmp_path):
    for split in ("train", "test"):
        for c in ("cat", "dog"):
            (tmp_path / split / c).mkdir(parents=True)
            Image.fromarray(np.full((32, 32, 3), 255 if c == "dog" else 0, dtype=np.uint8)).save(
                tmp_path / split / c / "a.png")
    ds = load_dataset(f"folder:{tmp_path}", "test")
    assert len(ds) == 2 and ds[1][1] == 1 and torch.all(ds[1][0] == 1) and torch.all(ds[0][0] == -1)
    info = dataset_info(f"folder:{tmp_path}")
    assert info.n_classes == 2 and info.image_shape == (3, 32, 32)
    with pytest.raises(JembenchError, match="does not exist"):
        load_dataset(f"folder:{tmp_path / 'nope'}", "test")
    (tmp_path / "empty" / "test").mkdir(parents=True)
    with pytest.raises(JembenchError, match="no images"):
        load_dataset(f"folder:{tmp_path / 'empty'}", "test")


@pytest.mark.skipif(not SHARED_CIFAR.is_dir(), reason="../shared/data/cifar10-jpeg is not beside the checkout")
def test_folder_reads_the_shared_cifar10_jpeg_copy():
    ds = load_dataset(f"folder:{SHARED_CIFAR}", "test")
    assert len(ds) == 10000 and len(ds.classes) == 10 and ds.classes[0] == "airplane"
    x, y = ds[0]
    assert x.shape == (3, 32, 32) and -1 <= x.min() and x.max() <= 1


def test_synthetic_ood_sets():
    ref = torch.rand(10, 3, 4, 4) * 2 - 1
    u = synthetic_ood("uniform", ref, 500)
    assert u.shape == (500, 3, 4, 4) and u.min() >= -1 and u.max() <= 1 and abs(u.mean()) < 0.05
    c = synthetic_ood("constant", ref, 20)
    assert torch.equal(c, torch.zeros(20, 3, 4, 4))  # JEM App. E.2: "all examples = 0"
    m = synthetic_ood("interp", ref, 50, seed=3)
    assert torch.equal(m, synthetic_ood("interp", ref, 50, seed=3))
    # every mix is the midpoint of two distinct in-distribution images
    mids = {(a, b): (ref[a] + ref[b]) / 2 for a in range(10) for b in range(10) if a != b}
    assert all(any(torch.allclose(img, mid) for mid in mids.values()) for img in m)
    with pytest.raises(JembenchError):
        synthetic_ood("gauss", ref, 2)
