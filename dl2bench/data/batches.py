"""Batching: from device-resident uint8 tensors (normalise + augment on the device, airbench
style) or by a conventional torch DataLoader, so that the two can be compared. A target is a
label per image or an image itself (a mask): masks are augmented with the image they belong to,
and normalisation is the task's choice (mean=None keeps [0, 1] pixels)."""
from __future__ import annotations

from typing import Any, Iterator, Optional, Tuple

import torch

# an augmentation is the task's declaration (dl2bench/families/base.py `Augment`: .pad, .flip); data
# reads its two fields and never imports the layer above it
Augment = Any


def is_image_target(y: torch.Tensor) -> bool:
    """A target with spatial dimensions (N x H x W mask, or N x C x H x W image)."""
    return y.ndim >= 3


def random_crop_flip(x: torch.Tensor, pad: int, flip: bool, generator: torch.Generator,
                     mask: Optional[torch.Tensor] = None):
    """Random crop after zero padding, and (if `flip`) horizontal flip, for a whole batch at once;
    with `mask` (N x H x W or N x C x H x W) the same crop and flip move the mask too and
    (image, mask) is returned. The random numbers come from a CPU generator, so a run draws the
    same ones on any device."""
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
    if mask is None:
        return out.permute(0, 3, 1, 2)
    # a mask pads with 0 (background) like the image, and moves pixel for pixel with it
    m = mask if mask.ndim == 4 else mask[:, None]
    m = torch.nn.functional.pad(m, (pad, pad, pad, pad)).permute(0, 2, 3, 1)[batch, rows, cols[:, None, :]]
    m = m.permute(0, 3, 1, 2)
    return out.permute(0, 3, 1, 2), (m if mask.ndim == 4 else m[:, 0])


class ResidentBatches:
    """Batches drawn by index from uint8 tensors already on the device; normalisation (and
    augmentation) run on the device for the whole batch, so the host never touches pixels."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, mean: Optional[torch.Tensor],
                 std: Optional[torch.Tensor], batch_size: int, device: torch.device, shuffle: bool,
                 augment: Optional[Augment] = None, channels_last: bool = False):
        self.x, self.y = x.to(device), y.to(device)  # moved once
        self.mean = None if mean is None else mean.to(device).view(1, -1, 1, 1)
        self.std = None if std is None else std.to(device).view(1, -1, 1, 1)
        self.mask = is_image_target(y)  # masks are cropped and flipped with their images
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
                if self.mask:
                    xb, yb = random_crop_flip(xb, self.augment.pad, self.augment.flip, generator, yb)
                else:
                    xb = random_crop_flip(xb, self.augment.pad, self.augment.flip, generator)
            if self.mean is None:
                xb = xb.float().div_(255)
            else:
                xb = (xb.float().div_(255) - self.mean) / self.std
            if self.mask and yb.dtype == torch.uint8:
                yb = yb.long()  # class indices, as the losses want them
            if self.channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            yield xb, yb


class _SampleDataset(torch.utils.data.Dataset):
    """The conventional pipeline: per-sample float conversion, normalisation and augmentation
    on the host (in worker processes), as torchvision transforms would do it."""

    def __init__(self, x, y, mean, std, augment: Optional[Augment]):
        self.x, self.y = x, y
        self.mean = None if mean is None else mean.view(-1, 1, 1)
        self.std = None if std is None else std.view(-1, 1, 1)
        self.augment = augment
        self.mask = is_image_target(y)

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        img = self.x[i].float().div(255)
        target = self.y[i]
        if self.augment:
            k = self.augment.pad
            pad = torch.nn.functional.pad(img, (k, k, k, k))
            dy, dx = torch.randint(0, 2 * k + 1, (2,)).tolist()
            img = pad[:, dy : dy + img.shape[1], dx : dx + img.shape[2]]
            flip = self.augment.flip and torch.rand(()) < 0.5
            if flip:
                img = img.flip(2)
            if self.mask:  # the same crop and flip as its image
                t = torch.nn.functional.pad(target, (k, k, k, k))
                target = t[..., dy : dy + img.shape[1], dx : dx + img.shape[2]]
                if flip:
                    target = target.flip(-1)
        if self.mask and target.dtype == torch.uint8:
            target = target.long()
        return (img if self.mean is None else (img - self.mean) / self.std), target


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


def split_batches(splits, cfg, device: torch.device, augment: Optional[Augment], normalise: bool = True):
    """(training batches, {"val": ..., "test": ...}) over a Splits, in the pipeline the config
    asks for (resident tensors or a DataLoader); `normalise=False` keeps [0, 1] pixels."""
    batches = LoaderBatches if cfg.loader == "dataloader" else ResidentBatches
    extra = {"num_workers": cfg.num_workers} if cfg.loader == "dataloader" else {}
    mean, std = (splits.mean, splits.std) if normalise else (None, None)
    common = dict(mean=mean, std=std, device=device, channels_last=cfg.channels_last, **extra)
    train = batches(*splits.train, batch_size=cfg.batch_size, shuffle=True, augment=augment, **common)
    evals = {name: batches(*getattr(splits, name), batch_size=cfg.eval_batch_size, shuffle=False, **common)
             for name in ("val", "test")}
    return train, evals
