"""Segmentation datasets as uint8 tensors: a seeded procedural shapes set that needs no download,
and Oxford-IIIT Pet trimaps (torchvision's layout and downloader), each with the boundary codes
of the U-Net weight map, computed once per dataset.

The shapes generator (`shapes`)
-------------------------------
Each image is `size` x `size` RGB (64 by default). What varies, image by image:
- the background: a random base colour, a smooth random texture (an 8 x 8 grid of random values,
  box-blurred to full size) of random strength, and per-pixel noise of random strength;
- 2 to 4 objects, each of a random class (circle, square, triangle, ring, cross: classes 1-5,
  0 = background), size (radius 0.10 to 0.21 of the image), rotation (squares, triangles,
  crosses), ring hole and cross arm width, and colour; each in its own cell of a 2 x 2 grid, its
  centre anywhere within +-0.15 of the image around the cell's centre, so that objects overlap
  often without one hiding another completely, and may be cut by the frame;
- the drawing order is random, and a later object occludes an earlier one, in the image and in
  the mask (the mask holds the class of the visible, top-most object at each pixel);
- colours: objects are brighter, channel by channel, than the base of the background (then half
  of the images are inverted: dark objects on a light background); the colour says nothing about
  the class, and two overlapping objects may look alike;
- edges are softened by a 3 x 3 box blur before the noise is added.

Seeds: each part (train, test) is drawn in chunks of `CHUNK` images, chunk k from a torch CPU
generator seeded with sha256("dl2bench-shapes", seed, part, k), so image i depends only on
(seed, part, i) and a larger dataset extends a smaller one. The same tensors on every machine:
the random numbers come from torch's CPU generator (platform independent), and the pixels are
computed in float64 with elementwise +, -, *, / and comparisons only, in a fixed order (no
sin/cos/sqrt/exp, no convolution or interpolation kernels whose SIMD paths could differ by an
ulp): a rotation is drawn as the rational unit vector ((1 - t^2) / (1 + t^2), 2t / (1 + t^2)).
tests/families/test_segmentation.py pins a checksum.

The boundary code (`boundary_code`)
-----------------------------------
The U-Net paper's border term w0 exp(-(d1 + d2)^2 / 2 sigma^2) needs d1 and d2, the (Euclidean,
pixel) distances to the nearest and the second-nearest object. They are computed once per dataset
(scipy.ndimage.distance_transform_edt, one per object) and kept as one uint8 per pixel, so that a
crop or flip moves them with the mask and w0 and sigma stay config, applied at loss time:
code = 255 - round(2 (d1 + d2)) on background pixels (half-pixel steps, up to d1 + d2 = 127.5),
0 elsewhere (no border term: foreground pixels, images with fewer than two objects, and the zero
padding of a crop). The objects are the visible part of each drawn shape for the shapes, the
connected foreground components (8-connected) for the pets.
"""
from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Tuple

import torch

from ...data.sources import DatasetNotFound, Source, cache_dir, find, search_roots  # noqa: F401 (DatasetNotFound: re-exported for callers)
from ...data.splits import Raw
from ...runs import save_torch

SHAPE_CLASSES = ["background", "circle", "square", "triangle", "ring", "cross"]
CHUNK = 64  # images per generator seed
MAX_OBJECTS, MIN_OBJECTS = 4, 2  # objects per image (one per cell of a 2 x 2 grid)
CELL = 0.3  # the cells' centres: CELL and 1 - CELL, in both directions (fractions of the image)
JITTER = 0.15  # an object's centre: its cell's centre +- JITTER (fractions of the image)
R_MIN, R_MAX = 0.1, 0.21  # object radius, as a fraction of the image
BORDER_FAR = 127.5  # d1 + d2 beyond this (pixels) has no border term (exp(-127.5^2 / 2 / 5^2) ~ 0)


@dataclass
class SegRaw(Raw):
    """A segmentation dataset: Raw with uint8 masks N x H x W (train_y, test_y; 0 = background),
    the objects' instance ids where the source knows them (uint8 N x H x W, 0 = none; None: the
    connected foreground components are the objects), and the boundary codes, computed on the
    first call of `boundary_codes` and kept beside the masks."""

    train_inst: Optional[torch.Tensor] = None
    test_inst: Optional[torch.Tensor] = None
    codes: Optional[Tuple[torch.Tensor, torch.Tensor]] = field(default=None, repr=False)

    def boundary_codes(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """(train, test) boundary codes, uint8 N x H x W (module docstring); computed once."""
        if self.codes is None:
            self.codes = (boundary_code(self.train_y, self.train_inst), boundary_code(self.test_y, self.test_inst))
        return self.codes


# ---------------------------------------------------------------------------------------------
# the procedural shapes


def _chunk_seed(seed: int, part: str, k: int) -> int:
    return int.from_bytes(hashlib.sha256(f"dl2bench-shapes|{seed}|{part}|{k}".encode()).digest()[:8], "little") >> 1


def _box_blur(x: torch.Tensor, passes: int = 1) -> torch.Tensor:
    """3 x 3 mean filter (replicate edges) by shifted adds in a fixed order, `passes` times."""
    for _ in range(passes):
        p = torch.nn.functional.pad(x, (1, 1, 1, 1), mode="replicate")
        h, w = x.shape[-2:]
        rows = p[..., 0:h, :] + p[..., 1 : h + 1, :] + p[..., 2 : h + 2, :]
        x = (rows[..., 0:w] + rows[..., 1 : w + 1] + rows[..., 2 : w + 2]) / 9.0
    return x


def _chunk(n: int, size: int, seed: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """n images (uint8 n x 3 x size x size), masks and instance ids (uint8 n x size x size)."""
    g = torch.Generator().manual_seed(seed)
    f64 = torch.float64

    def rand(*shape):
        return torch.rand(*shape, generator=g, dtype=f64)

    coords = (torch.arange(size, dtype=f64) + 0.5) / size  # pixel centres in (0, 1)
    py, px = coords.view(1, size, 1), coords.view(1, 1, size)

    # background: base colour + smooth texture (coarse grid, upsampled by repetition, blurred)
    base = 0.05 + 0.35 * rand(n, 3, 1, 1)
    cell = max(1, size // 8)  # an 8 x 8 grid of random values, blurred over about a cell
    coarse = rand(n, 1, -(-size // cell), -(-size // cell)) - 0.5
    texture = coarse.repeat_interleave(cell, 2).repeat_interleave(cell, 3)[..., :size, :size]
    texture = _box_blur(texture, passes=cell)
    amp = 0.1 + 0.3 * rand(n, 1, 1, 1)
    image = (base + amp * texture).expand(n, 3, size, size).clone()
    mask = torch.zeros(n, size, size, dtype=torch.uint8)
    inst = torch.zeros(n, size, size, dtype=torch.uint8)
    count = torch.randint(MIN_OBJECTS, MAX_OBJECTS + 1, (n,), generator=g)
    # one object per cell of a 2 x 2 grid at most, the cells in random order (the drawing order)
    cells = rand(n, 4).argsort(1)

    for j in range(MAX_OBJECTS):
        cls = torch.randint(1, len(SHAPE_CLASSES), (n,), generator=g)
        cell = cells[:, j]
        cy = (CELL + (1 - 2 * CELL) * (cell // 2).to(f64) + JITTER * (2 * rand(n) - 1)).view(n, 1, 1)
        cx = (CELL + (1 - 2 * CELL) * (cell % 2).to(f64) + JITTER * (2 * rand(n) - 1)).view(n, 1, 1)
        r = (R_MIN + (R_MAX - R_MIN) * rand(n)).view(n, 1, 1)
        t = (2 * rand(n) - 1).view(n, 1, 1)  # rational rotation: angle 2 atan(t) in (-90, 90) degrees
        c, s = (1 - t * t) / (1 + t * t), (2 * t) / (1 + t * t)
        colour = 0.45 + 0.55 * rand(n, 3, 1, 1)  # brighter, channel by channel, than the background's base
        thick = (0.22 + 0.13 * rand(n)).view(n, 1, 1)  # cross arm half-width, relative to r
        hole = (0.45 + 0.15 * rand(n)).view(n, 1, 1)  # ring hole radius, relative to r
        dy, dx = py - cy, px - cx
        u, v = dx * c + dy * s, dy * c - dx * s  # rotated coordinates
        d2 = dx * dx + dy * dy
        circle = d2 <= r * r
        square = (u.abs() <= 0.85 * r) & (v.abs() <= 0.85 * r)
        # equilateral triangle with circumradius 1.2 r: three half-planes, normals 120 degrees apart
        half, root3 = 0.5, 0.8660254037844386
        tri = torch.ones_like(circle)
        for nu, nv in ((0.0, 1.0), (root3, -half), (-root3, -half)):
            tri &= (u * nu + v * nv) <= 0.6 * r
        inner = r * hole
        ring = circle & (d2 >= inner * inner)
        arm = thick * r
        cross = ((u.abs() <= r) & (v.abs() <= arm)) | ((u.abs() <= arm) & (v.abs() <= r))
        shapes = torch.stack([circle, square, tri, ring, cross])  # 5 x n x H x W
        inside = shapes[cls - 1, torch.arange(n)] & (j < count).view(n, 1, 1)
        mask = torch.where(inside, cls.view(n, 1, 1).to(torch.uint8), mask)
        inst = torch.where(inside, torch.tensor(j + 1, dtype=torch.uint8), inst)
        image = torch.where(inside[:, None], colour, image)

    # half of the images inverted: dark objects on a light background
    invert = (rand(n) < 0.5).view(n, 1, 1, 1)
    image = torch.where(invert, 1 - image, image)
    image = _box_blur(image)
    noise = (rand(n, 3, size, size) + rand(n, 3, size, size) - 1) * (0.04 + 0.12 * rand(n, 1, 1, 1))
    image = (image + noise).clamp(0, 1)
    pixels = (image * 255 + 0.5).floor().to(torch.uint8)
    return pixels, mask, inst


@functools.lru_cache(maxsize=4)
def shapes(n_train: int, n_test: int, size: int = 64, seed: int = 0) -> SegRaw:
    """The shapes dataset (module docstring): n_train training and n_test test images of
    size x size, their masks and instance ids; cached per process."""
    parts = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # many small elementwise ops: threads only wait for each other
    try:
        for part, n in (("train", n_train), ("test", n_test)):
            chunks = [_chunk(CHUNK, size, _chunk_seed(seed, part, k)) for k in range(max(1, -(-n // CHUNK)))]
            parts.append([torch.cat(t)[:n] for t in zip(*chunks)])
    finally:
        torch.set_num_threads(threads)
    (tx, ty, ti), (vx, vy, vi) = parts
    return SegRaw(tx, ty, vx, vy, list(SHAPE_CLASSES), f"procedural shapes (seed {seed}, {size}x{size})",
                  train_inst=ti, test_inst=vi)


# ---------------------------------------------------------------------------------------------
# the U-Net weight map's border term


def boundary_code(masks: torch.Tensor, instances: Optional[torch.Tensor] = None) -> torch.Tensor:
    """uint8 N x H x W: 255 - round(2 (d1 + d2)) on background pixels that have two objects within
    BORDER_FAR px in total, else 0; d1, d2 = Euclidean distances to the nearest and second-nearest
    object. `instances` (uint8/int N x H x W, 0 = none) names the objects; without it the
    connected components of the foreground (8-connected) are the objects."""
    import numpy as np
    from scipy import ndimage

    m = masks.numpy()
    inst = None if instances is None else instances.numpy()
    out = np.zeros(m.shape, dtype=np.uint8)
    eight = np.ones((3, 3), dtype=bool)
    for k in range(len(m)):
        labels = ndimage.label(m[k] > 0, structure=eight)[0] if inst is None else inst[k]
        ids = [i for i in np.unique(labels) if i != 0]
        if len(ids) < 2:
            continue
        d = np.stack([ndimage.distance_transform_edt(labels != i) for i in ids])
        d.partition(1, axis=0)
        total = d[0] + d[1]
        code = np.where((m[k] == 0) & (total <= BORDER_FAR), 255 - np.rint(2 * total), 0)
        out[k] = code.astype(np.uint8)
    return torch.from_numpy(out)


def border_table(w0: float, sigma: float, device=None) -> torch.Tensor:
    """float32[256]: the border term w0 exp(-(d1 + d2)^2 / 2 sigma^2) for each boundary code
    (index it with the code, as long); 0 for code 0."""
    dist = (255 - torch.arange(256, dtype=torch.float64)) / 2
    table = w0 * torch.exp(-dist * dist / (2 * sigma * sigma))
    table[0] = 0.0
    return table.float().to(device)


# ---------------------------------------------------------------------------------------------
# Oxford-IIIT Pet

PET_CLASSES = ["background", "pet", "border"]
# trimap pixel value -> class: 1 pet -> 1, 2 background -> 0, 3 border (the uncertain outline) -> 2
TRIMAP_TO_CLASS = {1: 1, 2: 0, 3: 2}


def _read_pets(folder: Path, size: int) -> Optional[SegRaw]:
    """torchvision's layout (oxford-iiit-pet/images/*.jpg, annotations/trimaps/*.png,
    annotations/{trainval,test}.txt), images resized to size x size (bilinear, aspect not kept),
    trimaps with nearest neighbour; decoded once and cached under cache_dir()."""
    ann = folder / "annotations"
    if not ((folder / "images").is_dir() and (ann / "trainval.txt").is_file() and (ann / "test.txt").is_file()):
        return None
    stamp = "|".join(f"{(ann / f).stat().st_size}:{(ann / f).stat().st_mtime_ns}" for f in ("trainval.txt", "test.txt"))
    key = hashlib.sha1(f"{folder.resolve()}|{stamp}|{size}".encode()).hexdigest()[:16]
    path = cache_dir() / f"oxford-iiit-pet-{size}-{key}.pt"
    if path.is_file():
        try:
            d = torch.load(path, weights_only=True)
            return SegRaw(**d)
        except Exception:  # a torn or foreign cache file is rebuilt, never trusted
            pass
    import numpy as np
    from PIL import Image
    from torchvision.datasets import OxfordIIITPet

    lut = np.zeros(256, dtype=np.uint8)
    for value, cls in TRIMAP_TO_CLASS.items():
        lut[value] = cls
    parts = []
    for split in ("trainval", "test"):
        ds = OxfordIIITPet(str(folder.parent), split=split, target_types="segmentation")
        xs, ms = [], []
        for i in range(len(ds)):
            img, trimap = ds[i]
            xs.append(np.asarray(img.resize((size, size), Image.BILINEAR)))
            ms.append(lut[np.asarray(trimap.resize((size, size), Image.NEAREST))])
        x = torch.from_numpy(np.stack(xs)).permute(0, 3, 1, 2).contiguous()
        m = torch.from_numpy(np.stack(ms))
        parts.append((x, m))
    (tx, ty), (vx, vy) = parts
    raw = SegRaw(tx, ty, vx, vy, list(PET_CLASSES), f"Oxford-IIIT Pet trimaps ({size}x{size}): {folder}")
    path.parent.mkdir(parents=True, exist_ok=True)
    save_torch(path, {k: v for k, v in raw.__dict__.items() if k != "codes"})
    return raw


def oxford_pets(data_root: str = "", download: bool = False, size: int = 128) -> SegRaw:
    """Oxford-IIIT Pet (3,680 trainval / 3,669 test) with trimaps mapped by TRIMAP_TO_CLASS,
    searched under data_root like every dataset (sources.search_roots); read once per process."""
    return _oxford_pets(os.pathsep.join(map(str, search_roots(data_root))), download, size)


@functools.lru_cache(maxsize=2)
def _oxford_pets(roots: str, download: bool, size: int) -> SegRaw:
    def get(root: Path) -> None:
        from torchvision.datasets import OxfordIIITPet

        OxfordIIITPet(str(root), split="trainval", target_types="segmentation", download=True)

    how = ("Get it with --download true (torchvision's OxfordIIITPet, ~800 MB, into the first folder "
           "above), or set DL2BENCH_DATA to a folder holding oxford-iiit-pet/images/*.jpg and "
           "oxford-iiit-pet/annotations/{trimaps/*.png,trainval.txt,test.txt} (the layout of "
           "https://www.robots.ox.ac.uk/~vgg/data/pets/ images.tar.gz + annotations.tar.gz)")
    return find("oxford_pets", [Source("oxford-iiit-pet", lambda p: _read_pets(p, size))], roots, get,
                download, how)
