"""On-disk formats: IDX (MNIST), CIFAR-10 pickles, and image folders (or a tar of one), each
read into a `Raw` of uint8 tensors."""
from __future__ import annotations

import gzip
import io
import pickle
import struct
import tarfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from .sources import cached
from .splits import Raw


def read_idx(path: Path) -> torch.Tensor:
    """Read an IDX file (MNIST format, optionally gzipped) as a uint8 tensor."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file (magic {data[:4].hex()})")
    shape = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    body = data[4 + 4 * ndim :]
    expected = 1
    for s in shape:
        expected *= s
    if len(body) != expected:
        raise ValueError(f"{path}: IDX header says {shape} ({expected} bytes), file has {len(body)}")
    return torch.frombuffer(bytearray(body), dtype=torch.uint8).reshape(shape)


def _idx_file(folder: Path, stem: str) -> Optional[Path]:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def load_idx_folder(folder: Path, label: str) -> Optional[Raw]:
    """The four MNIST-format files in one folder (train-*, t10k-*), or None if any is missing."""
    stems = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
             "t10k-labels-idx1-ubyte"]
    files = [_idx_file(folder, s) for s in stems]
    if not all(files):
        return None
    tx, ty, vx, vy = (read_idx(f) for f in files)
    classes = [str(i) for i in range(10)]
    return Raw(tx.unsqueeze(1), ty.long(), vx.unsqueeze(1), vy.long(), classes, f"{label}: {folder}")


CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                   "truck"]


def load_cifar_pickles(folder: Path) -> Optional[Raw]:
    """torchvision's CIFAR-10 layout (cifar-10-batches-py: data_batch_1..5, test_batch)."""
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    if not all((folder / n).is_file() for n in names):
        return None

    def read(name: str) -> Tuple[torch.Tensor, torch.Tensor]:
        with open(folder / name, "rb") as f:
            d = pickle.load(f, encoding="latin1")
        x = torch.as_tensor(d["data"], dtype=torch.uint8).reshape(-1, 3, 32, 32)
        return x, torch.as_tensor(d["labels"], dtype=torch.long)

    parts = [read(n) for n in names[:5]]
    tx, ty = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
    vx, vy = read("test_batch")
    classes = CIFAR10_CLASSES
    meta = folder / "batches.meta"
    if meta.is_file():
        with open(meta, "rb") as f:
            classes = list(pickle.load(f, encoding="latin1")["label_names"])
    return Raw(tx, ty, vx, vy, classes, f"CIFAR-10 (pickle): {folder}")


def _decode_images(items: Sequence[Tuple[str, bytes]], where: str) -> torch.Tensor:
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    imgs = []
    for name, blob in items:
        try:
            with Image.open(io.BytesIO(blob)) as im:
                imgs.append(np.asarray(im.convert("RGB")))
        except (UnidentifiedImageError, OSError) as e:
            raise ValueError(f"{where}: cannot decode image {name}: {e}") from None
    shapes = {i.shape for i in imgs}
    if len(shapes) != 1:
        raise ValueError(f"{where}: images differ in size {sorted(shapes)[:3]}; expected one size")
    return torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).contiguous()


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def _split_items(items: Dict[str, bytes], where: str) -> Raw:
    """items: 'train/<class>/<file>' -> bytes (and the same for 'test/')."""
    by_split: Dict[str, List[Tuple[str, str, bytes]]] = {"train": [], "test": []}
    for rel, blob in items.items():
        parts = rel.split("/")
        if len(parts) >= 3 and parts[-3] in by_split:
            by_split[parts[-3]].append((parts[-2], rel, blob))
    classes = sorted({c for c, _, _ in by_split["train"]})
    if not classes or not by_split["test"]:
        raise ValueError(f"{where}: expected train/<class>/*.jpg and test/<class>/*.jpg")
    index = {c: i for i, c in enumerate(classes)}
    out = []
    for split in ("train", "test"):
        rows = sorted(by_split[split], key=lambda r: r[1])
        unknown = {c for c, _, _ in rows} - set(index)
        if unknown:
            raise ValueError(f"{where}: test classes {sorted(unknown)} have no training images")
        x = _decode_images([(rel, blob) for _, rel, blob in rows], where)
        y = torch.tensor([index[c] for c, _, _ in rows], dtype=torch.long)
        out += [x, y]
    return Raw(*out, classes=classes, source=where)


def load_image_folder(folder: Path, label: str) -> Optional[Raw]:
    """An image folder with train/<class>/ and test/<class>/ (class order: sorted names)."""
    if not (folder / "train").is_dir() or not (folder / "test").is_dir():
        return None

    def build() -> Raw:
        items = {}
        for split in ("train", "test"):
            for p in sorted((folder / split).glob("*/*")):
                if p.suffix.lower() in IMAGE_SUFFIXES:
                    items[f"{split}/{p.parent.name}/{p.name}"] = p.read_bytes()
        return _split_items(items, f"{label}: {folder}")

    return cached(folder, label, build)


def load_image_tar(path: Path, label: str) -> Optional[Raw]:
    """A .tar(.gz) holding such an image folder, decoded straight from the archive."""
    if not path.is_file():
        return None

    def build() -> Raw:
        items = {}
        with tarfile.open(path) as tar:
            for m in tar:
                if m.isfile() and m.name.lower().endswith(IMAGE_SUFFIXES):
                    f = tar.extractfile(m)
                    if f is not None:
                        items[m.name] = f.read()
        return _split_items(items, f"{label}: {path}")

    return cached(path, label, build)
