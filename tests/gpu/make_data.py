"""Write Fashion-MNIST (IDX, torchvision's layout) and CIFAR-10 (pickles) of generated images into
a data root, in the real on-disk formats, for a machine without the datasets (speed does not depend
on what the pixels show):  python tests/gpu/make_data.py DIR [N_TRAIN]"""
from __future__ import annotations

import pickle
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from helpers import CLASSES, learnable_images, write_idx  # noqa: E402


def main(root: Path, n_train: int = 20000, n_test: int = 2000) -> None:
    fm = root / "FashionMNIST" / "raw"
    fm.mkdir(parents=True, exist_ok=True)
    for prefix, n, seed in (("train", n_train, 1), ("t10k", n_test, 2)):
        x, y = learnable_images(n, (28, 28), seed)
        write_idx(fm / f"{prefix}-images-idx3-ubyte", x)
        write_idx(fm / f"{prefix}-labels-idx1-ubyte", y)
    cf = root / "cifar-10-batches-py"
    cf.mkdir(parents=True, exist_ok=True)
    x, y = learnable_images(n_train, (3, 32, 32), 3)
    for i in range(5):
        part = slice(i * n_train // 5, (i + 1) * n_train // 5)
        with open(cf / f"data_batch_{i + 1}", "wb") as f:
            pickle.dump({"data": x[part].reshape(len(x[part]), -1), "labels": y[part].tolist()}, f)
    tx, ty = learnable_images(n_test, (3, 32, 32), 4)
    with open(cf / "test_batch", "wb") as f:
        pickle.dump({"data": tx.reshape(n_test, -1), "labels": ty.tolist()}, f)
    with open(cf / "batches.meta", "wb") as f:
        pickle.dump({"label_names": CLASSES}, f)
    print(f"generated data ({n_train} train, {n_test} test per dataset) in {root}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), *(int(a) for a in sys.argv[2:3]))
