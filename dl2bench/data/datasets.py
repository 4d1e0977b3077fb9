"""The image datasets every image family reads (MNIST, Fashion-MNIST, CIFAR-10): where each may
lie, how to download it, and one decoded copy per process."""
from __future__ import annotations

import functools
import os
from typing import Callable, Dict

from . import formats as F
from .sources import Source, find, search_roots
from .splits import Raw


def _torchvision_download(cls_name: str) -> Callable:
    def download(root) -> None:
        import torchvision

        getattr(torchvision.datasets, cls_name)(str(root), train=True, download=True)
        getattr(torchvision.datasets, cls_name)(str(root), train=False, download=True)

    return download


FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                         "Bag", "Ankle boot"]  # the label order of the dataset's own README


def _idx(name: str, label: str, tv_name: str, debian_dir: str) -> Callable[[str, bool], Raw]:
    def load(data_root: str, download: bool) -> Raw:
        sources = [Source(f"{tv_name}/raw", lambda p: F.load_idx_folder(p, label)),
                   Source(debian_dir, lambda p: F.load_idx_folder(p, label))]
        how = (f"Get it with --download true (torchvision, into the first folder above), or set "
               f"DL2BENCH_DATA to a folder holding {tv_name}/raw/*-ubyte.gz")
        if name == "fashion_mnist":
            how += " (on Debian: apt-get install dataset-fashion-mnist)"
        raw = find(name, sources, data_root, _torchvision_download(tv_name), download, how)
        if name == "fashion_mnist":
            raw.classes = list(FASHION_MNIST_CLASSES)
        return raw

    return load


def _cifar10(data_root: str, download: bool) -> Raw:
    sources = [Source("cifar-10-batches-py", F.load_cifar_pickles),
               Source("cifar10-jpeg", lambda p: F.load_image_folder(p, "CIFAR-10 (JPEG)")),
               Source("cifar10-jpeg.tar.gz", lambda p: F.load_image_tar(p, "CIFAR-10 (JPEG)"))]
    how = ("Get it with --download true (torchvision's CIFAR-10 into the first folder above), or set "
           "DL2BENCH_DATA to a folder holding cifar-10-batches-py/, cifar10-jpeg/{train,test}/<class>/ "
           "or cifar10-jpeg.tar.gz")
    return find("cifar10", sources, data_root, _torchvision_download("CIFAR10"), download, how)


IMAGE_DATASETS: Dict[str, Callable[[str, bool], Raw]] = {
    "mnist": _idx("mnist", "MNIST", "MNIST", "mnist"),
    "fashion_mnist": _idx("fashion_mnist", "Fashion-MNIST", "FashionMNIST", "fashion-mnist"),
    "cifar10": _cifar10,
}
LABELS = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST", "cifar10": "CIFAR-10"}


def load(name: str, data_root: str = "", download: bool = False) -> Raw:
    """A dataset by name, searched under data_root (see sources.search_roots), read once per process."""
    return _load(name, os.pathsep.join(map(str, search_roots(data_root))), download)


@functools.lru_cache(maxsize=2)
def _load(name: str, roots: str, download: bool) -> Raw:
    # several runs in one process (debug executor, tests) read the files once
    return IMAGE_DATASETS[name](roots, download)
