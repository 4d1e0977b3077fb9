"""Datasets as uint8 tensors: found on disk (torchvision layouts, IDX, CIFAR pickles, image
folders or a tar of one), optionally downloaded, split train/val/test, and batched either from
device-resident tensors (normalise + augment on the device, airbench style) or by a conventional
torch DataLoader, so that the two can be compared."""
from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import struct
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import torch

SPLIT_SEED = 20240611  # fixed: every run of a task sees the same validation set, whatever its seed


class DatasetNotFound(FileNotFoundError):
    """No copy of a dataset in any searched place; the message says where it looked and what to do."""


@dataclass
class Raw:
    """A dataset as it lies on disk: uint8 images N x C x H x W and int64 labels."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: List[str]
    source: str  # what was read, for the record (e.g. "CIFAR-10 (JPEG): /data/cifar10-jpeg.tar.gz")


@dataclass
class Splits:
    """Train / validation / test tensors (uint8, CPU) and the training split's channel stats."""

    train: Tuple[torch.Tensor, torch.Tensor]
    val: Tuple[torch.Tensor, torch.Tensor]
    test: Tuple[torch.Tensor, torch.Tensor]
    classes: List[str]
    source: str
    mean: torch.Tensor  # per channel, in [0, 1] units
    std: torch.Tensor

    @property
    def in_shape(self) -> Tuple[int, ...]:
        return tuple(self.train[0].shape[1:])


# ---------------------------------------------------------------------------------------------
# where datasets are looked for

def search_roots(data_root: str = "") -> List[Path]:
    """Folders searched, in order: the config's data_root, $DL2BENCH_DATA (both may list several,
    separated by os.pathsep), ./data, ~/.cache/dl2bench/data and Debian's /usr/share/datasets."""
    given = data_root or os.environ.get("DL2BENCH_DATA", "")
    roots = [Path(p).expanduser() for p in given.split(os.pathsep) if p] + default_roots()
    seen, out = set(), []
    for r in roots:
        key = str(r.resolve()) if r.exists() else str(r)
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


def default_roots() -> List[Path]:
    return [Path("data"), cache_dir() / "data", Path("/usr/share/datasets")]


def cache_dir() -> Path:
    """Where decoded datasets are cached: $DL2BENCH_CACHE, else ~/.cache/dl2bench."""
    return Path(os.environ.get("DL2BENCH_CACHE") or Path.home() / ".cache" / "dl2bench")


# ---------------------------------------------------------------------------------------------
# on-disk formats

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


def _cached(source: Path, label: str, build: Callable[[], Raw]) -> Raw:
    """Decode once, then reuse the tensors: keyed by the source's path, size and mtime."""
    st = source.stat()
    key = hashlib.sha1(f"{source.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]
    path = cache_dir() / f"{source.name}-{key}.pt"
    if path.is_file():
        try:
            d = torch.load(path, weights_only=True)
            return Raw(d["train_x"], d["train_y"], d["test_x"], d["test_y"], d["classes"], d["source"])
        except Exception:  # a torn or foreign cache file is rebuilt, never trusted
            pass
    raw = build()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save({**raw.__dict__}, tmp)
    os.replace(tmp, path)
    return raw


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

    return _cached(folder, label, build)


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

    return _cached(path, label, build)


# ---------------------------------------------------------------------------------------------
# finding a dataset (search, optional download, one clear error)

@dataclass(frozen=True)
class Source:
    """One way a dataset may lie under a root: a relative path and the function that reads it."""

    rel: str
    read: Callable[[Path], Optional[Raw]]


def find(name: str, sources: Sequence[Source], data_root: str, download: Optional[Callable[[Path], None]],
         want_download: bool, how_to_get: str) -> Raw:
    """Try every source under every root; else download into the first root when asked; else raise."""
    roots = search_roots(data_root)
    for root in roots:
        for s in sources:
            raw = s.read(root / s.rel)
            if raw is not None:
                return raw
    if want_download and download is not None:
        target = roots[0]
        target.mkdir(parents=True, exist_ok=True)
        download(target)
        for s in sources:
            raw = s.read(target / s.rel)
            if raw is not None:
                return raw
    looked = "\n".join(f"  {root / s.rel}" for root in roots for s in sources)
    raise DatasetNotFound(f"dataset {name!r} not found. Looked in:\n{looked}\n{how_to_get}")


def make_splits(raw: Raw, val_size: int, train_size: int = 0, test_size: int = 0) -> Splits:
    """Carve validation from training with a fixed seed, then subset train/test if asked."""
    n = len(raw.train_y)
    if val_size >= n:
        raise ValueError(f"val_size: {val_size} leaves no training data ({n} training examples)")
    g = torch.Generator().manual_seed(SPLIT_SEED)
    perm = torch.randperm(n, generator=g)
    val_idx, train_idx = perm[:val_size], perm[val_size:]
    if train_size:
        if train_size > len(train_idx):
            raise ValueError(f"train_size: {train_size} > {len(train_idx)} available training examples")
        train_idx = train_idx[:train_size]
    test_idx = torch.arange(len(raw.test_y))
    if test_size and test_size < len(test_idx):
        test_idx = torch.randperm(len(test_idx), generator=g)[:test_size].sort().values
    tx = raw.train_x[train_idx]
    xf = tx.float().div_(255)
    mean = xf.mean(dim=(0, 2, 3))
    std = xf.std(dim=(0, 2, 3)).clamp_min(1e-3)
    return Splits((tx, raw.train_y[train_idx]), (raw.train_x[val_idx], raw.train_y[val_idx]),
                  (raw.test_x[test_idx], raw.test_y[test_idx]), raw.classes, raw.source, mean, std)


# ---------------------------------------------------------------------------------------------
# batching: device-resident tensors, or a conventional DataLoader

def random_crop_flip(x: torch.Tensor, pad: int, flip: bool, generator: torch.Generator) -> torch.Tensor:
    """Random crop after zero padding, and (if `flip`) horizontal flip, for a whole batch at once.
    The random numbers come from a CPU generator, so a run draws the same ones on any device."""
    n, c, h, w = x.shape
    dev = x.device
    sy = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(dev)
    sx = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(dev)
    flip = ((torch.rand(n, generator=generator) < 0.5) & flip).to(dev)
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    rows = (sy[:, None] + torch.arange(h, device=dev))[:, :, None]  # n x h x 1
    cols = torch.arange(w, device=dev).expand(n, w)
    cols = torch.where(flip[:, None], cols.flip(1), cols) + sx[:, None]  # flip = read columns backwards
    batch = torch.arange(n, device=dev)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch, rows, cols[:, None, :]]  # n x h x w x c
    return out.permute(0, 3, 1, 2)


class ResidentBatches:
    """Batches drawn by index from uint8 tensors already on the device; normalisation (and
    augmentation) run on the device for the whole batch, so the host never touches pixels."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
                 batch_size: int, device: torch.device, shuffle: bool, augment: Optional["Augment"] = None,  # tasks.Augment
                 channels_last: bool = False):
        self.x, self.y = x.to(device), y.to(device)  # moved once
        self.mean = mean.to(device).view(1, -1, 1, 1)
        self.std = std.to(device).view(1, -1, 1, 1)
        self.batch_size, self.shuffle, self.augment = batch_size, shuffle, augment
        self.device, self.channels_last = device, channels_last

    def __len__(self) -> int:
        return -(-len(self.y) // self.batch_size)

    def iterate(self, generator: Optional[torch.Generator] = None) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.y)
        order = torch.randperm(n, generator=generator).to(self.device) if self.shuffle else None
        for start in range(0, n, self.batch_size):
            if order is None:
                xb, yb = self.x[start : start + self.batch_size], self.y[start : start + self.batch_size]
            else:
                idx = order[start : start + self.batch_size]
                xb, yb = self.x[idx], self.y[idx]
            if self.augment:
                xb = random_crop_flip(xb, self.augment.pad, self.augment.flip, generator)
            xb = (xb.float().div_(255) - self.mean) / self.std
            if self.channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            yield xb, yb


class _SampleDataset(torch.utils.data.Dataset):
    """The conventional pipeline: per-sample float conversion, normalisation and augmentation
    on the host (in worker processes), as torchvision transforms would do it."""

    def __init__(self, x, y, mean, std, augment: Optional["Augment"]):
        self.x, self.y = x, y
        self.mean, self.std = mean.view(-1, 1, 1), std.view(-1, 1, 1)
        self.augment = augment

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        img = self.x[i].float().div(255)
        if self.augment:
            k = self.augment.pad
            pad = torch.nn.functional.pad(img, (k, k, k, k))
            dy, dx = torch.randint(0, 2 * k + 1, (2,)).tolist()
            img = pad[:, dy : dy + img.shape[1], dx : dx + img.shape[2]]
            if self.augment.flip and torch.rand(()) < 0.5:
                img = img.flip(2)
        return (img - self.mean) / self.std, self.y[i]


class LoaderBatches:
    """A torch DataLoader over the same tensors (workers, pinned memory on CUDA)."""

    def __init__(self, x, y, mean, std, batch_size, device, shuffle, augment=None,
                 channels_last=False, num_workers=2):
        self.ds = _SampleDataset(x, y, mean, std, augment)
        self.batch_size, self.shuffle, self.device = batch_size, shuffle, device
        self.channels_last, self.num_workers = channels_last, num_workers

    def __len__(self) -> int:
        return -(-len(self.ds) // self.batch_size)

    def iterate(self, generator: Optional[torch.Generator] = None):
        # the same order as ResidentBatches draws, so the two pipelines differ only in mechanics
        order = torch.randperm(len(self.ds), generator=generator).tolist() if self.shuffle else None
        # worker seeds come from a copy, so the run's own stream advances exactly as with tensors
        workers = None
        if generator is not None:
            workers = torch.Generator()
            workers.set_state(generator.get_state())
        dl = torch.utils.data.DataLoader(
            self.ds, batch_size=self.batch_size, sampler=order, generator=workers,
            num_workers=self.num_workers, pin_memory=self.device.type == "cuda",
            persistent_workers=False)
        for xb, yb in dl:
            xb = xb.to(self.device, non_blocking=True)
            if self.channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            yield xb, yb.to(self.device, non_blocking=True)
