"""Raw datasets as uint8 tensors, and their train / validation / test splits: validation is carved
from training with a fixed seed, and the training split's channel statistics are recorded for
the tasks that normalise."""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Tuple

import torch

SPLIT_SEED = 20240611  # fixed: every run of a task sees the same validation set, whatever its seed


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
    test_idx = _test_indices(len(raw.test_y), test_size, g)
    tx = raw.train_x[train_idx]
    xf = tx.float().div_(255)
    mean = xf.mean(dim=(0, 2, 3))
    std = xf.std(dim=(0, 2, 3)).clamp_min(1e-3)
    return Splits((tx, raw.train_y[train_idx]), (raw.train_x[val_idx], raw.train_y[val_idx]),
                  (raw.test_x[test_idx], raw.test_y[test_idx]), raw.classes, raw.source, mean, std)


def _test_indices(n: int, test_size: int, g: torch.Generator) -> torch.Tensor:
    if test_size and test_size < n:
        return torch.randperm(n, generator=g)[:test_size].sort().values
    return torch.arange(n)


def test_split(raw: Raw, test_size: int = 0) -> Tuple[torch.Tensor, torch.Tensor]:
    """The test split `make_splits` gives for this test_size (the same images, whatever the
    validation and training sizes), without touching the training set: for evaluations."""
    g = torch.Generator().manual_seed(SPLIT_SEED)
    torch.randperm(len(raw.train_y), generator=g)  # make_splits' draw of the validation split comes first
    idx = _test_indices(len(raw.test_y), test_size, g)
    return raw.test_x[idx], raw.test_y[idx]


def one_per_class(labels: torch.Tensor, n: int = 8) -> list:
    """Indices of the first example of each of the first n classes (so a grid of examples shows
    variety), topped up in order when there are fewer classes."""
    seen, out = set(), []
    for i, c in enumerate(labels.tolist()):
        if c not in seen:
            seen.add(c)
            out.append(i)
        if len(out) == n:
            return out
    return (out + [i for i in range(len(labels)) if i not in out])[:n]
