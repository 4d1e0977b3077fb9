"""Semantic segmentation (course practical 3): a U-Net labels every pixel.

- `shapes`: the seeded procedural shapes set (data.py: 5 shape classes and
  background, overlaps, noise; 2,200 training images of which `val_size` (200) validate, and 500
  test images; train_size draws train_size + val_size training images instead, test_size that
  many test images: the first ones of the same sequence); needs no download.
- `oxford_pets`: Oxford-IIIT Pet trimaps (background, pet, border) through torchvision's layout
  and downloader.

Losses (`loss`): `cross_entropy` (mean over pixels, nats); `dice`: soft Dice loss
1 - mean_k (2 sum y_k p_k + 1) / (sum y_k + sum p_k + 1) over all K classes (background included),
p = softmax, the sums over the batch and its pixels (a batch Dice, as segmentation_models_pytorch;
the +1 keeps a class absent from truth and prediction at Dice 1); `boundary_ce`: cross-entropy
weighted per pixel by the U-Net paper's map w = w_c + w0 exp(-(d1 + d2)^2 / 2 sigma^2), w_c the
class-balancing weight N / (K N_c) from the training split's pixel counts, the border term on
background pixels only (the module docstring of data.py says how d1, d2 are
stored); `ce_dice`: cross-entropy + Dice loss. The reported `loss` is the training loss without
regularisation; for `dice` over a split it is the Dice loss of the split's sums (not the mean of
batch losses).

Metrics (validation and test): one confusion matrix over the whole split (pixels of all images
pooled, not per image), accumulated on the device and read once. IoU_k = TP/(TP + FP + FN),
Dice_k = 2TP/(2TP + FP + FN); `miou` (the headline) and `dice` are their means over the foreground
classes (background excluded), leaving out a class absent from both truth and prediction in the
split (torchmetrics' MulticlassJaccardIndex / MulticlassF1Score conventions, average over the
present classes); `pixel_acc` is the fraction of pixels right, background included (on training
batches too: all images have the same size, so the mean over images is the pixel fraction).
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Dict, List, Optional, Tuple

import numpy as np

from ... import runs
from ...errors import ConfigError
from ...media import MEDIA, Image, Media, arrays, hwc
from ...inits import INITS
from ...nets import MODELS
from ..base import TASKS, Augment, Key, Metric, Need, Problem, Task

if TYPE_CHECKING:
    import torch
    from torch import nn

FAMILY = "segmentation"
LOSSES = ("cross_entropy", "dice", "boundary_ce", "ce_dice")
EXAMPLES = "examples.npz"  # 8 fixed test images, their truth and the prediction, for the report
N_EXAMPLES = 8
DICE_SMOOTH = 1.0
# the shapes set's parts: training (validation carved from it) and test, unless train_size (then
# train_size + val_size are drawn) or test_size say otherwise; image i of a part is the same image
# whatever the part's size
SHAPES_TRAIN, SHAPES_TEST = 2200, 500

KEYS = {
    "width": Key(Optional[int], None, "segmentation: U-Net base channels (doubled at every level down); "
                 "None = the task's default", min=1),
    "depth": Key(Optional[int], None, "segmentation: U-Net levels (2x2 poolings and up-convolutions); "
                 "None = the task's default", min=1, max=7),
    "image_size": Key(Optional[int], None, "segmentation: images are image_size x image_size pixels "
                      "(a multiple of 2^depth); None = the task's default", min=16, max=1024),
    "boundary_w0": Key(float, 10.0, "segmentation, loss boundary_ce: w0 of the U-Net weight map's "
                       "border term w0 exp(-(d1 + d2)^2 / 2 sigma^2)", min=0.0),
    "boundary_sigma": Key(float, 5.0, "segmentation, loss boundary_ce: sigma (pixels) of the border term",
                          min=0.5),
    "shapes_seed": Key(int, 0, "segmentation, task shapes: the dataset generator's seed (the same images "
                       "on every machine; the run's `seed` does not change the data)", min=0),
}

MIOU = Metric("miou", "maximize", "", "mean IoU, foreground classes (one confusion matrix per split)",
              splits=("val", "test"))
DICE = Metric("dice", "maximize", "", "mean Dice, foreground classes (one confusion matrix per split)",
              splits=("val", "test"))
PIXEL_ACC = Metric("pixel_acc", "maximize", "", "pixel accuracy (all classes)", percent=True)
LOSS_METRICS = {
    "cross_entropy": Metric("loss", "minimize", "nats/pixel", "cross-entropy per pixel"),
    "dice": Metric("loss", "minimize", "1 - Dice", "soft Dice loss, all classes (split sums)"),
    "boundary_ce": Metric("loss", "minimize", "nats/pixel, weighted",
                          "boundary-weighted cross-entropy per pixel (U-Net weight map)"),
    "ce_dice": Metric("loss", "minimize", "nats/pixel + (1 - Dice)", "cross-entropy + soft Dice loss"),
}


# ---------------------------------------------------------------------------------------------
# metrics and losses (module level: the tests check them against torchmetrics and by hand)


def confusion(truth: torch.Tensor, pred: torch.Tensor, k: int) -> torch.Tensor:
    """k x k counts (row: truth, column: prediction), on the tensors' device."""
    import torch

    return torch.bincount(truth.reshape(-1) * k + pred.reshape(-1), minlength=k * k).view(k, k)


def scores(cm: torch.Tensor) -> Dict[str, float]:
    """miou, dice (foreground means over the classes present in truth or prediction) and
    pixel_acc from a confusion matrix (row: truth); NaN where no foreground class is present."""
    cm = cm.double().cpu()
    tp = cm.diag()
    fp, fn = cm.sum(0) - tp, cm.sum(1) - tp
    present = (tp + fp + fn)[1:] > 0
    iou = (tp / (tp + fp + fn))[1:][present]
    dice = (2 * tp / (2 * tp + fp + fn))[1:][present]
    nan = float("nan")
    return {"miou": iou.mean().item() if len(iou) else nan, "dice": dice.mean().item() if len(dice) else nan,
            "pixel_acc": (tp.sum() / cm.sum()).item() if cm.sum() > 0 else nan}


def dice_sums(logits: torch.Tensor, y: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per class k: (sum y_k p_k, sum y_k + sum p_k) over the batch and pixels, p = softmax."""
    import torch

    k = logits.shape[1]
    p = logits.float().softmax(1)
    flat_y = y.reshape(-1)
    inter = torch.zeros(k, device=p.device).scatter_add(0, flat_y, p.gather(1, y[:, None]).reshape(-1))
    denom = p.sum((0, 2, 3)) + torch.bincount(flat_y, minlength=k).to(p.dtype)
    return inter, denom


def dice_loss_from(inter: torch.Tensor, denom: torch.Tensor, smooth: float = DICE_SMOOTH) -> torch.Tensor:
    return 1 - ((2 * inter + smooth) / (denom + smooth)).mean()


def dice_loss(logits: torch.Tensor, y: torch.Tensor, smooth: float = DICE_SMOOTH) -> torch.Tensor:
    """Soft Dice loss over all classes, sums over the batch (a batch Dice)."""
    return dice_loss_from(*dice_sums(logits, y), smooth)


def class_weights(masks: torch.Tensor, k: int) -> torch.Tensor:
    """w_c = N / (K N_c) (pixel counts; weight 1 for a class with no pixels): the weighted mean
    over the pixels is 1."""
    import torch

    n = torch.bincount(masks.reshape(-1).long(), minlength=k).double()
    w = torch.where(n > 0, n.sum() / (k * n.clamp_min(1)), torch.ones_like(n))
    return w.float()


def weight_map(y: torch.Tensor, code: torch.Tensor, wc: torch.Tensor, border: torch.Tensor) -> torch.Tensor:
    """The U-Net weight map w = w_c(y) + border term; `border` is shapes.border_table(w0, sigma)."""
    return wc[y] + border[code]


# ---------------------------------------------------------------------------------------------


def _shapes_counts(cfg) -> Tuple[int, int]:
    """How many training (validation included) and test images the shapes dataset is drawn with."""
    return (cfg.train_size + cfg.val_size if cfg.train_size else SHAPES_TRAIN), cfg.test_size or SHAPES_TEST


def _data(task: Task, cfg):
    from . import data as S

    if task.data == "shapes":
        return S.shapes(*_shapes_counts(cfg), cfg.image_size, cfg.shapes_seed)
    return S.oxford_pets(cfg.data_root, cfg.download, cfg.image_size)


def prepare(task: Task, cfg, device: torch.device, reg) -> Problem:
    import torch
    import torch.nn.functional as F

    from ... import data as D
    from . import data as S

    seg = _data(task, cfg)
    k = len(seg.classes)
    weighted = cfg.loss == "boundary_ce"
    if weighted:  # the boundary code travels as a second target channel: a crop or flip moves it too
        train_code, test_code = seg.boundary_codes()
        raw = D.Raw(seg.train_x, torch.stack([seg.train_y, train_code], 1), seg.test_x,
                    torch.stack([seg.test_y, test_code], 1), seg.classes, seg.source)
    else:
        raw = D.Raw(seg.train_x, seg.train_y, seg.test_x, seg.test_y, seg.classes, seg.source)
    splits = D.make_splits(raw, cfg.val_size, cfg.train_size, cfg.test_size)
    in_shape = splits.in_shape
    kwargs = {"width": cfg.width, "depth": cfg.depth, **reg.model_kwargs}
    build = {"model": cfg.model, "args": [list(in_shape), k], "kwargs": kwargs}
    model = MODELS[cfg.model](tuple(in_shape), k, **kwargs)
    INITS[cfg.init](model, cfg)
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    train, evals = D.split_batches(splits, cfg, device, task.augment if reg.augment else None)
    train_masks = splits.train[1][:, 0] if weighted else splits.train[1]
    wc = class_weights(train_masks, k).to(device)
    border = S.border_table(cfg.boundary_w0, cfg.boundary_sigma, device)
    use_ce = cfg.loss in ("cross_entropy", "boundary_ce", "ce_dice")
    use_dice = cfg.loss in ("dice", "ce_dice")
    cross_entropy = F.cross_entropy

    def unpack(yb):
        return (yb[:, 0], yb[:, 1]) if weighted else (yb, None)

    def data_loss_of(logits, y, code):
        logits = logits.float()
        if weighted:
            return (weight_map(y, code, wc, border) * cross_entropy(logits, y, reduction="none")).mean()
        out = cross_entropy(logits, y) if use_ce else 0.0
        if use_dice:
            out = out + dice_loss(logits, y)
        return out

    def loss(m: nn.Module, batch, detail: bool):
        x, yb = batch
        y, code = unpack(yb)
        logits = m(x)
        data_loss = data_loss_of(logits, y, code)
        objective = data_loss if reg.penalty is None else data_loss + reg.penalty(m)
        stats = {}
        if detail:  # counted on the device, read once per epoch
            with torch.no_grad():
                stats["pixel_acc"] = (logits.argmax(1) == y).flatten(1).float().mean(1).sum()
        return objective, data_loss, len(y), stats

    def evaluate(m: nn.Module, split: str, autocast) -> Dict[str, float]:
        eval_batches = evals[split]
        cm = torch.zeros(k * k, device=device, dtype=torch.long)
        ce_sum = torch.zeros((), device=device, dtype=torch.float64)
        inter = torch.zeros(k, device=device, dtype=torch.float64)
        denom = torch.zeros(k, device=device, dtype=torch.float64)
        pixels = 0
        with torch.inference_mode(), autocast():
            for x, yb in eval_batches.iterate():
                y, code = unpack(yb)
                logits = m(x).float()
                cm += confusion(y, logits.argmax(1), k).reshape(-1)
                pixels += y.numel()
                if use_ce:
                    ce = cross_entropy(logits, y, reduction="none")
                    if weighted:
                        ce = ce * weight_map(y, code, wc, border)
                    ce_sum += ce.sum(dtype=torch.float64)
                if use_dice:
                    i, d = dice_sums(logits, y)
                    inter += i.double()
                    denom += d.double()
        # one read of everything accumulated on the device
        flat = torch.cat([cm.double(), ce_sum.view(1), inter, denom]).cpu()
        out = scores(flat[: k * k].view(k, k))
        value = flat[k * k].item() / max(pixels, 1) if use_ce else 0.0
        if use_dice:
            value += dice_loss_from(flat[k * k + 1 : k * k + 1 + k], flat[k * k + 1 + k :]).item()
        out["loss"] = value
        return out

    # 8 fixed test images: the first of the dataset's test part, whatever test_size takes
    ex_x = seg.test_x[:N_EXAMPLES]
    ex_y = seg.test_y[:N_EXAMPLES]
    mean, std = splits.mean.view(1, -1, 1, 1), splits.std.view(1, -1, 1, 1)

    def final(m: nn.Module, autocast, out_dir) -> Dict[str, object]:
        was_training = m.training
        m.eval()
        with torch.inference_mode(), autocast():
            x = ((ex_x.float() / 255 - mean) / std).to(device)
            pred = m(x).float().argmax(1).to(torch.uint8).cpu()
        m.train(was_training)
        path = os.path.join(str(out_dir), EXAMPLES)
        runs.save_npz(path, image=ex_x.numpy(), truth=ex_y.numpy(), pred=pred.numpy())
        return {"classes": list(seg.classes), "examples": EXAMPLES}

    facts = {"loss": cfg.loss, "normalised": "per-channel mean/std", "num_classes": k,
             "metric_convention": "foreground mean over classes present; one confusion matrix per split"}
    if weighted:
        facts.update(boundary_w0=cfg.boundary_w0, boundary_sigma=cfg.boundary_sigma,
                     class_weights=[round(w, 4) for w in wc.tolist()])
    return Problem(model=model, build=build, train_batches=train, splits=tuple(evals), evaluate=evaluate,
                   n_train=len(splits.train[1]), source=splits.source, in_shape=in_shape, loss=loss,
                   metrics=(MIOU, DICE, PIXEL_ACC, LOSS_METRICS[cfg.loss]), facts=facts, final=final)


def check(cfg) -> None:
    """What the keys' own ranges cannot say."""
    if cfg.image_size is not None and cfg.depth is not None and cfg.image_size % 2**cfg.depth:
        raise ConfigError(f"image_size: {cfg.image_size} does not divide by 2^depth = {2**cfg.depth} "
                          f"(depth {cfg.depth}): the U-Net's up-sampled maps would not match its skip "
                          f"connections (mask/image shape mismatch); use a multiple of {2**cfg.depth}")


REFUSES = {"regularizer": {"label_smoothing": "does not apply to segmentation (the Dice and boundary-weighted "
                                              "losses have no smoothed form); use another regularizer"}}


def _task(name: str, description: str, defaults: Dict, targets: Tuple[float, ...], augment: Augment) -> Task:
    return Task(name, description, FAMILY, prepare, (MIOU, DICE, PIXEL_ACC, LOSS_METRICS["cross_entropy"]),
                headline="miou", losses=LOSSES, model_family=FAMILY, defaults=defaults, targets=targets,
                data=name, augment=augment, check=check, memory=memory, refuses=REFUSES)


@TASKS.register
def shapes() -> Task:
    """Procedural shapes, 64x64 RGB, 5 shape classes + background (2,000 train, 200 val, 500 test); no download.

    Known good: unet width 16 depth 3, Adam lr 2e-3, batch 16, 15 epochs -> test mIoU 0.89-0.94
    (seeds 0-2) in about 5 minutes on a 2-core CPU (the first epochs tell mostly foreground from
    background; the shape classes come in around epoch 6-10)."""
    return _task("shapes", "procedural shapes",
                 {"model": "unet", "width": 16, "depth": 3, "image_size": 64, "optimizer": "adam",
                  "lr": 2e-3, "batch_size": 16, "epochs": 15, "val_size": 200},
                 (0.5, 0.7, 0.8, 0.85, 0.9), Augment(pad=4, flip=True))


@TASKS.register
def oxford_pets() -> Task:
    """Oxford-IIIT Pet trimaps at 128x128: background, pet, border (3,680 trainval incl. 368 val, 3,669 test)."""
    return _task("oxford_pets", "Oxford-IIIT Pet",
                 {"model": "unet", "width": 32, "depth": 4, "image_size": 128, "optimizer": "adam",
                  "lr": 1e-3, "batch_size": 16, "epochs": 20, "val_size": 368},
                 (0.4, 0.5, 0.6, 0.7), Augment(pad=8, flip=True))


def memory(cfg) -> List[Need]:
    """The resident images (uint8 image, mask, instance ids; float32 weight map while training)
    and the U-Net's activations for a batch (lower bounds)."""
    size = cfg.image_size or 0
    needs: List[Need] = []
    if cfg.task == "shapes":
        n = sum(_shapes_counts(cfg))
        needs.append(("image_size", 10.0 * n * size * size, f"{n:,} resident {size}x{size} images with masks"))
    width, batch = cfg.width or 1, max(cfg.batch_size or 1, 1)
    # per level: two convs, their norms and activations, kept for backprop; the levels below add
    # about as much again (channels x2, pixels /4)
    needs.append(("image_size", 4.0 * 2 * 8 * batch * width * size * size,
                  f"the U-Net activations of a batch of {batch} at {size}x{size}, width {width}"))
    return needs


@MEDIA.register(name=FAMILY)
def media(run_dir, summary) -> List[Media]:
    """The fixed test images with the true and the predicted masks as overlays W&B can toggle."""
    ex = arrays(run_dir, summary, EXAMPLES)
    if ex is None or not {"image", "truth", "pred"} <= set(ex):
        return []
    classes = tuple(str(c) for c in summary.get("classes") or ())
    return [Media("predictions", Image(hwc(x), f"test image {i}",
                                       masks={"truth": t.astype(np.int64), "prediction": p.astype(np.int64)},
                                       classes=classes))
            for i, (x, t, p) in enumerate(zip(ex["image"], ex["truth"], ex["pred"]))]
