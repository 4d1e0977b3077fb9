"""Segmentation: the shapes generator (deterministic, non-trivial), joint augmentation, metrics
against torchmetrics, the Dice loss and the U-Net weight map by hand, training (every loss), the
U-Net's parameter count, Oxford-IIIT Pet from a tiny folder in torchvision's layout, and bad
input rejected before anything is written."""
from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pytest
import torch

from dl2bench import data as D
from dl2bench.config import ConfigError, RunConfig
from dl2bench.families import MODELS
from dl2bench.families.base import Augment
from dl2bench.families.segmentation import data as S
from dl2bench.families.segmentation import task as seg
from dl2bench.nets import count_parameters
from dl2bench.train import run
from helpers import assert_cli_refuses

# small and fast: 32x32 images, a 2-level U-Net of width 8
TINY = {"task": "shapes", "image_size": 32, "width": 8, "depth": 2, "train_size": 256, "val_size": 64,
        "test_size": 64, "batch_size": 32, "eval_batch_size": 256, "wandb": "disabled",
        "progress": "none", "threads": 2, "save_weights": False}


# sha256 of the first 40 training and 8 test images and masks (32 x 32, seed 0)
PINNED_DIGEST = "4de344f02cfe8ddf"


def generate(n_train, n_test, size=32, seed=0):
    return S.shapes.__wrapped__(n_train, n_test, size, seed)  # not the per-process cache


def digest(*tensors) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


# ---------------------------------------------------------------------------------------------
# the generator


def test_generator_is_deterministic_and_seeded():
    a, b, c = generate(40, 8), generate(40, 8), generate(40, 8, seed=1)
    for name in ("train_x", "train_y", "test_x", "test_y", "train_inst", "test_inst"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert all(torch.equal(p, q) for p, q in zip(a.boundary_codes(), b.boundary_codes()))
    assert not torch.equal(a.train_x, c.train_x) and not torch.equal(a.train_y, c.train_y)
    assert not torch.equal(a.train_x[:8], a.test_x)  # the parts are drawn from different seeds
    # image i is the same whatever the part's size (chunks are seeded by index)
    big = generate(S.CHUNK + 10, 8)
    assert torch.equal(big.train_x[:40], a.train_x) and torch.equal(big.train_y[:40], a.train_y)
    # identical on every machine: pinned (a change here changes the dataset every result was made on)
    assert digest(a.train_x, a.train_y, a.test_x, a.test_y) == PINNED_DIGEST


def test_generator_is_not_trivial():
    x, mask, inst = S._chunk(64, 64, S._chunk_seed(0, "train", 0))
    assert x.dtype == mask.dtype == torch.uint8 and x.shape == (64, 3, 64, 64) and mask.shape == (64, 64, 64)
    freq = torch.bincount(mask.flatten().long(), minlength=6).float() / mask.numel()
    assert (freq[1:] > 0.01).all() and 0.6 < freq[0] < 0.95, freq  # every class, background dominant
    per_image = torch.tensor([len(torch.unique(m)) - 1 for m in mask])
    assert (per_image >= 2).float().mean() > 0.5  # several classes in most images
    # overlaps: neighbouring pixels that belong to two different objects
    touch = ((inst[:, :, 1:] != inst[:, :, :-1]) & (inst[:, :, 1:] > 0) & (inst[:, :, :-1] > 0)).flatten(1).any(1)
    assert touch.float().mean() > 0.25
    # sizes and positions vary; the background is textured and noisy, colours vary
    areas = torch.stack([(inst == i).flatten(1).sum(1) for i in range(1, 6)], 1).float()
    areas = areas[areas > 0]
    assert areas.min() < 100 and areas.max() > 400
    centres = [torch.nonzero(inst[k] == 1).float().mean(0) for k in range(16)]
    assert torch.stack(centres).std(0).min() > 8
    bg = [x[k].float()[:, mask[k] == 0] for k in range(16)]
    assert min(b.std(1).min().item() for b in bg) > 3
    assert torch.stack([b.mean(1) for b in bg]).std(0).min() > 20


# ---------------------------------------------------------------------------------------------
# joint augmentation: the mask (and the boundary code) move pixel for pixel with the image


@pytest.mark.parametrize("loader", ["tensor", "dataloader"])
def test_augmentation_moves_mask_and_code_with_the_image(loader):
    g = torch.Generator().manual_seed(0)
    mask = torch.randint(0, 6, (40, 16, 16), generator=g, dtype=torch.uint8)
    code = torch.randint(0, 256, (40, 16, 16), generator=g, dtype=torch.uint8)
    x = torch.stack([mask * 40, code, torch.full_like(mask, 7)], 1)  # the image spells its target
    y = torch.stack([mask, code], 1)
    cls = D.LoaderBatches if loader == "dataloader" else D.ResidentBatches
    extra = {"num_workers": 0} if loader == "dataloader" else {}
    batches = cls(x, y, None, None, 16, torch.device("cpu"), shuffle=True, augment=Augment(pad=4, flip=True), **extra)
    moved = 0
    for xb, yb in batches.iterate(torch.Generator().manual_seed(1)):
        px = (xb * 255).round().long()
        assert yb.dtype == torch.int64 and yb.shape == (len(xb), 2, 16, 16)
        assert torch.equal(px[:, 0], yb[:, 0] * 40) and torch.equal(px[:, 1], yb[:, 1])
        padded = px[:, 2] == 0  # padding: background, no border term
        assert (yb[:, 0][padded] == 0).all() and (yb[:, 1][padded] == 0).all()
        moved += int(padded.any())
    assert moved > 0  # crops did shift
    # and a mask alone (N x H x W) through the function the batches use; without padding a crop
    # is the identity, so what moves is the flip, about half of the images
    xb, mb = D.random_crop_flip(x, 0, True, torch.Generator().manual_seed(2), mask)
    assert torch.equal(xb[:, 0], mb * 40) and mb.dtype == torch.uint8
    flipped = sum(torch.equal(mb[i], mask[i].flip(-1)) for i in range(len(mask)))
    assert 10 <= flipped <= 30


# ---------------------------------------------------------------------------------------------
# metrics against torchmetrics


def test_metrics_match_torchmetrics():
    from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score, MulticlassJaccardIndex
    from torchmetrics.segmentation import DiceScore, MeanIoU

    k = 6
    g = torch.Generator().manual_seed(3)
    truth = torch.randint(0, k, (5, 24, 24), generator=g)
    pred = torch.randint(0, k, (5, 24, 24), generator=g)
    pred = torch.where(torch.rand(truth.shape, generator=g) < 0.4, truth, pred)  # better than chance
    truth[truth == 3], pred[pred == 3] = 1, 2  # class 3 absent from both: left out of the means
    ours = seg.scores(seg.confusion(truth, pred, k))
    present = [c for c in range(1, k) if (truth == c).any() or (pred == c).any()]
    assert present == [1, 2, 4, 5]
    iou = MulticlassJaccardIndex(k, average="none")(pred, truth)
    f1 = MulticlassF1Score(k, average="none")(pred, truth)  # F1 = Dice, per class, over all pixels
    assert ours["miou"] == pytest.approx(iou[present].mean().item(), abs=1e-6)
    assert ours["dice"] == pytest.approx(f1[present].mean().item(), abs=1e-6)
    dice = DiceScore(k, include_background=False, average="macro", aggregation_level="global", input_format="index")
    dice.update(pred, truth)
    assert ours["dice"] == pytest.approx(dice.compute().item(), abs=1e-6)
    assert ours["pixel_acc"] == pytest.approx(MulticlassAccuracy(k, average="micro")(pred, truth).item(), abs=1e-6)
    # one image: our split-level mIoU is torchmetrics' (per-image) MeanIoU, which marks the absent class -1
    miou = MeanIoU(k, include_background=False, per_class=True, input_format="index")
    miou.update(pred[:1], truth[:1])
    per_class = miou.compute()
    assert per_class[2].item() == -1  # class 3 (index 2 without background)
    one = seg.scores(seg.confusion(truth[:1], pred[:1], k))
    assert one["miou"] == pytest.approx(per_class[per_class >= 0].mean().item(), abs=1e-6)
    # counting background would be another number (the convention matters)
    assert abs(iou[[0] + present].mean().item() - ours["miou"]) > 1e-3


def test_evaluate_reports_the_split_confusion_matrix(tmp_path, monkeypatch):
    """The loop's numbers are the confusion matrix of the model's argmax over the whole split."""
    from dl2bench.families import TASKS
    from dl2bench.regularizers import REGULARIZERS

    made = {}
    real_split_batches = D.split_batches

    def keep(*a, **k):  # the real batches, kept to recompute the split's numbers by hand
        made["train"], made["evals"] = real_split_batches(*a, **k)
        return made["train"], made["evals"]

    monkeypatch.setattr(D, "split_batches", keep)
    cfg = RunConfig(**{**TINY, "loss": "ce_dice"}).resolve()
    task = TASKS["shapes"]()
    p = task.prepare(task, cfg, torch.device("cpu"), REGULARIZERS["none"](cfg))
    p.model.eval()
    import contextlib

    got = p.evaluate(p.model, "val", contextlib.nullcontext)
    xs, ys = zip(*made["evals"]["val"].iterate())
    x, y = torch.cat(xs), torch.cat(ys)
    with torch.no_grad():
        logits = p.model(x)
    expect = seg.scores(seg.confusion(y, logits.argmax(1), 6))
    for name in ("miou", "dice", "pixel_acc"):
        assert got[name] == pytest.approx(expect[name], abs=1e-9), name
    ce = torch.nn.functional.cross_entropy(logits, y).item()
    assert got["loss"] == pytest.approx(ce + seg.dice_loss(logits, y).item(), rel=1e-4)


# ---------------------------------------------------------------------------------------------
# the Dice loss and the boundary weight map, by hand


def test_dice_loss_by_hand():
    # two pixels, two classes: p(class 0) = 0.8, 0.3; truth 0, 1
    p = torch.tensor([[0.8, 0.3], [0.2, 0.7]]).view(1, 2, 1, 2)
    y = torch.tensor([[[0, 1]]])
    logits = p.log()
    d0 = 2 * 0.8 / (0.8 + 0.3 + 1)  # class 0: 2 * intersection / (sum p + sum y)
    d1 = 2 * 0.7 / (0.2 + 0.7 + 1)
    assert seg.dice_loss(logits, y, smooth=0).item() == pytest.approx(1 - (d0 + d1) / 2, rel=1e-6)
    s0, s1 = (2 * 0.8 + 1) / (2.1 + 1), (2 * 0.7 + 1) / (1.9 + 1)
    assert seg.dice_loss(logits, y).item() == pytest.approx(1 - (s0 + s1) / 2, rel=1e-6)
    # a perfect prediction, a class absent from truth and prediction: loss ~0; gradients flow
    perfect = torch.tensor([[[20.0, -20.0]], [[-20.0, 20.0]], [[-20.0, -20.0]]])[None].requires_grad_()
    loss = seg.dice_loss(perfect, y)
    assert loss.item() < 1e-6
    seg.dice_loss(logits.clone().requires_grad_(), y).backward()


def test_boundary_weight_map_by_hand():
    # 5 x 5: object 1 at (0, 0), object 2 at (4, 4)
    inst = torch.zeros(1, 5, 5, dtype=torch.uint8)
    inst[0, 0, 0], inst[0, 4, 4] = 1, 2
    mask = inst.clone()  # object 1 is class 1, object 2 class 2
    code = S.boundary_code(mask, inst)
    assert code[0, 0, 0] == 0 and code[0, 4, 4] == 0  # foreground: no border term
    assert code[0, 0, 4] == 255 - 16  # d1 + d2 = 4 + 4
    assert code[0, 1, 1] == 255 - round(2 * (math.sqrt(2) + math.sqrt(18)))
    # the same from connected components, without instance ids
    assert torch.equal(S.boundary_code(mask), code)
    table = S.border_table(10.0, 5.0)
    assert table[0] == 0
    assert table[code[0, 0, 4].long()].item() == pytest.approx(10 * math.exp(-(8**2) / (2 * 5**2)), rel=1e-6)
    # one object: no second object, no border term
    one = torch.where(inst == 1, inst, torch.zeros_like(inst))
    assert (S.boundary_code(one, one) == 0).all()
    # w_c: N / (K N_c), so that the weighted mean over the pixels is 1
    wc = seg.class_weights(mask, 3)
    assert wc.tolist() == pytest.approx([25 / (3 * 23), 25 / 3, 25 / 3])
    w = seg.weight_map(mask.long(), code.long(), wc, table)
    assert w[0, 0, 4].item() == pytest.approx(25 / 69 + 10 * math.exp(-64 / 50), rel=1e-6)
    assert w[0, 0, 0].item() == pytest.approx(25 / 3)


# ---------------------------------------------------------------------------------------------
# training


def read_metrics(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow  # trains until it beats chance
def test_training_improves_miou_and_writes_examples(tmp_path):
    # the Dice loss learns the shape classes soonest (cross-entropy learns foreground first)
    s = run({**TINY, "loss": "dice", "width": 16, "batch_size": 8, "lr": 3e-3, "epochs": 6}, tmp_path)
    assert s["status"] == "finished" and s["headline"] == "miou" and s["metric"] == "test_miou"
    rows = read_metrics(tmp_path)
    first = rows[0]["val_miou"]
    assert s["best_val_miou"] > first + 0.1 and s["test_miou"] > 0.15, (first, s["best_val_miou"])
    assert 0 <= s["test_dice"] <= 1 and s["test_dice"] >= s["test_miou"]  # Dice >= IoU, class by class
    assert s["metrics"]["loss"]["unit"] == "1 - Dice" and s["classes"] == S.SHAPE_CLASSES
    ex = np.load(tmp_path / "examples.npz")
    assert ex["image"].shape == (8, 3, 32, 32) and ex["image"].dtype == np.uint8
    assert ex["truth"].shape == ex["pred"].shape == (8, 32, 32) and ex["pred"].dtype == np.uint8
    fixed = generate(8, 8)  # the first 8 test images, whatever test_size takes
    assert np.array_equal(ex["image"], fixed.test_x.numpy()) and np.array_equal(ex["truth"], fixed.test_y.numpy())
    assert ex["pred"].max() < 6 and (ex["pred"] == ex["truth"]).mean() > 0.7


@pytest.mark.parametrize("loss", seg.LOSSES)
def test_every_loss_trains(tmp_path, loss):
    s = run({**TINY, "loss": loss, "epochs": 2, "train_size": 96, "lr": 0.01, "regularizer": "augmentation"},
            tmp_path)
    assert s["status"] == "finished" and s["loss"] == loss
    rows = read_metrics(tmp_path)
    for r in rows:
        assert math.isfinite(r["train_loss"]) and math.isfinite(r["val_loss"]) and math.isfinite(r["val_pixel_acc"])
    assert rows[-1]["train_loss"] < rows[0]["train_loss"] or rows[-1]["val_loss"] < rows[0]["val_loss"]
    assert s["metrics"]["loss"]["unit"] == seg.LOSS_METRICS[loss].unit


def test_unet_parameter_count_is_its_docstring():
    first = MODELS["unet"].__doc__.strip().splitlines()[0]
    stated = int(first.split("(")[1].split(" parameters")[0].replace(",", ""))
    assert count_parameters(MODELS["unet"]((3, 64, 64), len(S.SHAPE_CLASSES))) == stated
    out = MODELS["unet"]((3, 64, 64), 6, width=4, depth=4)(torch.zeros(2, 3, 64, 64))
    assert out.shape == (2, 6, 64, 64)


# ---------------------------------------------------------------------------------------------
# Oxford-IIIT Pet


def make_pets(root, n_trainval=6, n_test=4):
    """A tiny folder in torchvision's layout: images/*.jpg, annotations/trimaps/*.png, split lists."""
    from PIL import Image

    base = root / "oxford-iiit-pet"
    (base / "images").mkdir(parents=True)
    (base / "annotations" / "trimaps").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, n in (("trainval", n_trainval), ("test", n_test)):
        lines = []
        for i in range(n):
            name = f"{'Abyssinian' if i % 2 else 'beagle'}_{split}{i}"
            h, w = 40 + 4 * i, 50
            trimap = np.full((h, w), 2, dtype=np.uint8)  # background
            trimap[8:30, 10:40] = 3  # border
            trimap[10:28, 12:38] = 1  # pet
            img = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
            Image.fromarray(img).save(base / "images" / f"{name}.jpg")
            Image.fromarray(trimap).save(base / "annotations" / "trimaps" / f"{name}.png")
            lines.append(f"{name} {1 + i % 2} {1 + i % 2} 1")
        (base / "annotations" / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return root


def test_oxford_pets_from_a_tiny_folder(tmp_path):
    root = make_pets(tmp_path / "data")
    raw = S.oxford_pets(str(root), size=32)
    assert raw.classes == ["background", "pet", "border"]
    assert raw.train_x.shape == (6, 3, 32, 32) and raw.test_y.shape == (4, 32, 32)
    assert raw.train_y.dtype == torch.uint8 and set(torch.unique(raw.train_y).tolist()) == {0, 1, 2}
    # nearest-neighbour resize of the trimap: the centre is pet, the corner background
    assert raw.train_y[0, 16, 16] == 1 and raw.train_y[0, 0, 0] == 0
    s = run({**TINY, "task": "oxford_pets", "data_root": str(root), "val_size": 2, "train_size": 0, "test_size": 0,
             "epochs": 1, "batch_size": 4}, tmp_path / "run")
    assert s["status"] == "finished" and s["classes"] == ["background", "pet", "border"], s.get("error")


def test_oxford_pets_missing_says_how_to_get_it(tmp_path):
    with pytest.raises(D.DatasetNotFound, match="--download true") as e:
        S.oxford_pets(str(tmp_path), size=32)
    assert "oxford-iiit-pet" in str(e.value)


# ---------------------------------------------------------------------------------------------
# bad input: one ConfigError naming the key; the CLI exits 2 having written nothing


BAD = [
    ({"task": "fashion_mnist", "loss": "dice"}, "loss"),
    ({"task": "shapes", "width": 0}, "width"),
    ({"task": "fashion_mnist", "model": "unet"}, "model"),
    ({"task": "shapes", "depth": 0}, "depth"),
    ({"task": "shapes", "model": "mlp"}, "model"),
    ({"task": "fashion_mnist", "width": 16}, "width"),
    ({"task": "shapes", "image_size": 72, "depth": 4}, "image_size"),
    ({"task": "shapes", "regularizer": "label_smoothing"}, "regularizer"),
    ({"task": "shapes", "loss": "hinge"}, "loss"),
    ({"task": "shapes", "boundary_sigma": 0.0}, "boundary_sigma"),
]


@pytest.mark.parametrize("cfg,key", BAD)
def test_bad_input_names_the_key(cfg, key):
    with pytest.raises(ConfigError, match=f"^{key}: "):
        RunConfig(**cfg).resolve()


@pytest.mark.parametrize("cfg,key", BAD[:3])
def test_bad_input_exits_2_and_writes_nothing(cfg, key, tmp_path):
    assert_cli_refuses(cfg, key, tmp_path)
    assert not any(tmp_path.iterdir())
