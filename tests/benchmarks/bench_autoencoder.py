"""Full-data autoencoder figures (not part of the test run): test reconstruction MSE per model and
code size, and one-class anomaly AUROC per normal class with its mean +- std over the 10 classes,
on the real Fashion-MNIST files.

    python tests/benchmarks/bench_autoencoder.py                  # both tables, seed 0
    python tests/benchmarks/bench_autoencoder.py --only anomaly --models dense_ae --epochs 30
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from dl2bench.train import run  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", choices=("reconstruction", "anomaly"), default=None)
    p.add_argument("--models", default="dense_ae,conv_ae")
    p.add_argument("--code-sizes", default="4,16,64")
    p.add_argument("--epochs", type=int, default=None, help="default: the task's own (20 / 30)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="CPU threads per run (0: every usable core)")
    p.add_argument("--out", default=None, help="keep the runs here (default: a temporary folder)")
    args = p.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="bench_ae_"))
    models = args.models.split(",")
    common = {"wandb": "disabled", "progress": "none", "seed": args.seed, "threads": args.threads}
    if args.epochs:
        common["epochs"] = args.epochs

    if args.only in (None, "reconstruction"):
        print("## Fashion-MNIST reconstruction: test MSE per pixel ([0, 1] pixels), seed", args.seed)
        print(f"{'model':<10} {'code':>5} {'params':>9} {'test MSE':>9} {'test BCE':>9} {'epochs':>6} {'train s':>8} {'threads':>7}")
        for model in models:
            for m in map(int, args.code_sizes.split(",")):
                t0 = time.perf_counter()
                s = run({**common, "task": "fashion_mnist_ae", "model": model, "code_size": m},
                        out / f"ae-{model}-{m}")
                print(f"{model:<10} {m:>5} {s['params']:>9,} {s['test_mse']:>9.5f} {s['test_bce']:>9.4f} "
                      f"{s['epochs_completed']:>6} {s['train_time_total']:>8.1f} {s['threads']:>7}"
                      f"  ({time.perf_counter() - t0:.0f} s wall, {s['device']})", flush=True)

    if args.only in (None, "anomaly"):
        print("\n## Fashion-MNIST one-class anomaly detection: test AUROC (normal class vs the other 9), seed",
              args.seed)
        for model in models:
            aucs = []
            for c in range(10):
                s = run({**common, "task": "fashion_mnist_anomaly", "model": model, "normal_class": c},
                        out / f"an-{model}-{c}")
                aucs.append(s["test_auroc"])
                print(f"{model:<10} class {c} ({s['normal_class_name']:<11}) AUROC {s['test_auroc']:.4f} "
                      f"(best epoch {s['best_epoch']}, train {s['train_time_total']:.0f} s)", flush=True)
            print(f"{model:<10} mean AUROC over the 10 classes: {statistics.mean(aucs):.4f} "
                  f"+- {statistics.stdev(aucs):.4f} (std)\n", flush=True)
    print(f"runs kept in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
