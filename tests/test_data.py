"""Data: the real loaders on generated files in the real formats; splits; device-side batches."""
from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from dl2bench import data as D
from helpers import CLASSES, N_TEST, N_TRAIN, image_folder_items, learnable_images, make_idx_dataset, write_idx


@pytest.mark.parametrize("gz", [True, False], ids=["gz", "raw"])
def test_idx_roundtrip(tmp_path, gz):
    x, y = learnable_images(50, (28, 28), 5)
    write_idx(tmp_path / "a", x, gz)
    got = D.read_idx(tmp_path / ("a.gz" if gz else "a"))
    assert got.dtype == torch.uint8 and np.array_equal(got.numpy(), x)


def test_idx_truncated_file_is_a_clear_error(tmp_path):
    x, _ = learnable_images(5, (28, 28), 5)
    write_idx(tmp_path / "a", x, gz=False)
    (tmp_path / "a").write_bytes((tmp_path / "a").read_bytes()[:-10])
    with pytest.raises(ValueError, match="IDX header says"):
        D.read_idx(tmp_path / "a")


@pytest.mark.parametrize("task,label", [("mnist", "MNIST"), ("fashion_mnist", "Fashion-MNIST")])
def test_idx_tasks_read_torchvision_layout(data_root, task, label):
    raw = D.IMAGE_DATASETS[task](str(data_root), False)
    assert raw.train_x.shape == (N_TRAIN, 1, 28, 28) and raw.test_x.shape == (N_TEST, 1, 28, 28)
    assert raw.train_y.dtype == torch.long and set(raw.train_y.tolist()) == set(range(10))
    assert raw.source.startswith(label)


def test_debian_fashion_mnist_layout(tmp_path):
    make_idx_dataset(tmp_path / "fashion-mnist", seed=9)
    raw = D.IMAGE_DATASETS["fashion_mnist"](str(tmp_path), False)
    assert str(tmp_path / "fashion-mnist") in raw.source


def test_cifar_pickles(data_root):
    raw = D.IMAGE_DATASETS["cifar10"](str(data_root), False)
    assert raw.train_x.shape == (N_TRAIN, 3, 32, 32) and raw.test_x.shape == (N_TEST, 3, 32, 32)
    assert raw.classes == CLASSES and raw.source.startswith("CIFAR-10 (pickle)")
    x, y = learnable_images(N_TRAIN, (3, 32, 32), 3)  # what conftest wrote, in the same order
    assert np.array_equal(raw.train_x.numpy(), x) and np.array_equal(raw.train_y.numpy(), y)


@pytest.mark.parametrize("packing", ["folder", "tar.gz"])
def test_image_folder_and_tar(tmp_path, packing):
    items = image_folder_items()
    if packing == "folder":
        for rel, blob, _, _ in items:
            p = tmp_path / "cifar10-jpeg" / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(blob)
    else:
        with tarfile.open(tmp_path / "cifar10-jpeg.tar.gz", "w:gz") as tar:
            for rel, blob, _, _ in items:
                info = tarfile.TarInfo(f"cifar10-jpeg/{rel}")
                info.size = len(blob)
                tar.addfile(info, __import__("io").BytesIO(blob))
    raw = D.IMAGE_DATASETS["cifar10"](str(tmp_path), False)
    assert raw.source.startswith("CIFAR-10 (JPEG)")
    train = sorted((rel, px, lab) for rel, _, px, lab in items if rel.startswith("train/"))
    assert raw.train_x.shape == (len(train), 3, 32, 32)
    # PNG is lossless: pixels and labels must match exactly, in sorted-path order
    for i, (_, px, lab) in enumerate(train):
        assert np.array_equal(raw.train_x[i].permute(1, 2, 0).numpy(), px)
        assert raw.train_y[i].item() == lab
    # decoded once: the second load comes from the tensor cache
    cached = list(D.cache_dir().glob("cifar10-jpeg*.pt"))
    assert len(cached) == 1
    again = D.IMAGE_DATASETS["cifar10"](str(tmp_path), False)
    assert torch.equal(again.train_x, raw.train_x)


def test_corrupt_cache_is_rebuilt(tmp_path):
    for rel, blob, _, _ in image_folder_items(n_train=20, n_test=10):
        p = tmp_path / "cifar10-jpeg" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(blob)
    first = D.IMAGE_DATASETS["cifar10"](str(tmp_path), False)
    (cache,) = D.cache_dir().glob("cifar10-jpeg*.pt")
    cache.write_bytes(b"torn")
    assert torch.equal(D.IMAGE_DATASETS["cifar10"](str(tmp_path), False).train_x, first.train_x)


def test_missing_dataset_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DL2BENCH_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(D.DatasetNotFound) as e:
        D.IMAGE_DATASETS["cifar10"]("", False)
    msg = str(e.value)
    assert str(tmp_path / "nowhere" / "cifar-10-batches-py") in msg
    assert "cifar10-jpeg.tar.gz" in msg and "--download true" in msg


def test_download_path_uses_torchvision(tmp_path, monkeypatch):
    """The real torchvision download is called into the first root (its network fetch is replaced:
    no machine here reaches the dataset hosts)."""
    import torchvision

    calls = []

    class FakeFashion:
        def __init__(self, root, train, download):
            calls.append((root, train, download))
            make_idx_dataset(Path(root) / "FashionMNIST" / "raw", seed=4)

    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", FakeFashion)
    monkeypatch.setattr(D.sources, "default_roots", lambda: [])  # this machine has the real one installed
    monkeypatch.chdir(tmp_path)
    raw = D.IMAGE_DATASETS["fashion_mnist"](str(tmp_path / "dl"), True)
    assert calls and calls[0] == (str(tmp_path / "dl"), True, True)
    assert raw.train_x.shape[0] == N_TRAIN


def test_splits_are_disjoint_fixed_and_subsettable(data_root):
    raw = D.IMAGE_DATASETS["mnist"](str(data_root), False)
    a = D.make_splits(raw, val_size=100)
    b = D.make_splits(raw, val_size=100)
    assert torch.equal(a.val[0], b.val[0]) and len(a.val[1]) == 100 and len(a.train[1]) == N_TRAIN - 100
    # validation and training are disjoint rows of the original training set
    flat = raw.train_x.reshape(N_TRAIN, -1)
    rows = {tuple(r.tolist()) for r in a.val[0].reshape(100, -1)}
    assert not rows & {tuple(r.tolist()) for r in a.train[0].reshape(-1, flat.shape[1])}
    c = D.make_splits(raw, val_size=100, train_size=50, test_size=30)
    assert len(c.train[1]) == 50 and len(c.test[1]) == 30 and torch.equal(c.val[0], a.val[0])
    with pytest.raises(ValueError, match="train_size"):
        D.make_splits(raw, val_size=100, train_size=10_000)


def test_resident_batches_normalise_and_cover_an_epoch():
    x = torch.randint(0, 256, (70, 3, 8, 8), dtype=torch.uint8)
    y = torch.arange(70)
    mean, std = torch.tensor([0.5, 0.4, 0.3]), torch.tensor([0.2, 0.25, 0.3])
    b = D.ResidentBatches(x, y, mean, std, 32, torch.device("cpu"), shuffle=True)
    got = list(b.iterate(torch.Generator().manual_seed(0)))
    assert len(got) == len(b) == 3 and sorted(torch.cat([yb for _, yb in got]).tolist()) == list(range(70))
    xb, yb = got[0]
    expect = (x[yb].float() / 255 - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)
    assert torch.allclose(xb, expect, atol=1e-6)


def test_crop_flip_moves_pixels_as_stated():
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.uint8).reshape(2, 1, 4, 4)
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        out = D.random_crop_flip(x, 1, True, g)
        for i in range(2):
            img = out[i, 0]
            # every output is a shifted (and maybe mirrored) window of the zero-padded input
            padded = torch.nn.functional.pad(x[i, 0], (1, 1, 1, 1))
            windows = [padded[dy:dy + 4, dx:dx + 4] for dy in range(3) for dx in range(3)]
            assert any(torch.equal(img, w) or torch.equal(img, w.flip(1)) for w in windows)
    no_flip = D.random_crop_flip(x, 0, False, g)
    assert torch.equal(no_flip, x)


def test_dataloader_option_gives_same_batches_without_augmentation():
    x = torch.randint(0, 256, (40, 1, 6, 6), dtype=torch.uint8)
    y = torch.arange(40)
    mean, std = torch.tensor([0.5]), torch.tensor([0.25])
    r = D.ResidentBatches(x, y, mean, std, 16, torch.device("cpu"), shuffle=False)
    l = D.LoaderBatches(x, y, mean, std, 16, torch.device("cpu"), shuffle=False, num_workers=0)
    for (a, ya), (b, yb) in zip(r.iterate(), l.iterate()):
        assert torch.equal(ya, yb) and torch.allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("test_size", [0, 50, 199])
def test_test_split_is_make_splits_test_without_the_training_set(data_root, test_size):
    raw = D.load("fashion_mnist", str(data_root), False)
    for val_size, train_size in ((100, 0), (10, 300)):
        x, y = D.make_splits(raw, val_size, train_size, test_size).test
        tx, ty = D.test_split(raw, test_size)
        assert torch.equal(x, tx) and torch.equal(y, ty)
    assert len(ty) == (test_size or len(raw.test_y))
