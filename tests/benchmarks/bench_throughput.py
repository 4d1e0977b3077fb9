"""Throughput benchmark: what does dl2bench's training loop cost over a bare PyTorch loop?

    python tests/benchmarks/bench_throughput.py [--models mlp,lenet] [--epochs 2] [--repeats 3]
        [--threads N] [--device cpu|cuda] [--data-root PATH] [--quick] [--json PATH]

Two comparisons, in one process:

1. dl2bench vs bare PyTorch. For each model (mlp on Fashion-MNIST, lenet on CIFAR-10 (JPEG), real
   data), training samples/s from `dl2bench.train.run` (resident tensor loader, SGD lr 0.01,
   batch 64) against a bare loop over the *same* uint8 training tensors, the same model builder,
   batch size, thread count and device: per epoch a randperm; per batch index -> float/255 ->
   normalise -> forward -> cross-entropy -> zero_grad -> backward -> SGD step, with no host sync.
   The bare loop is the floor any training loop must pay, so dl2bench / bare is the overhead of
   everything dl2bench adds (on-device loss/accuracy sums, the lr controller, timers, ...). Both
   sides exclude the same warm-up (the first `warmup_steps` steps of a run) and time epochs with
   time.perf_counter after a device sync. Target on the CPU: dl2bench / bare >= 0.97.

2. Resident tensors vs a DataLoader. One epoch of lenet/CIFAR-10 through `run` with
   loader="tensor" and with loader="dataloader" (num_workers 2 and 0): samples/s, epoch
   train_time, and their ratio to the tensor loader; the reason the tensor loader is the default.

On a shared machine timings drift (other jobs, frequency scaling), so measurements are
interleaved: each repeat runs one bare block and one dl2bench run, alternating which goes first,
and the medians over all epochs of all repeats are compared. Every figure is printed under a
header naming the threads, device, torch version and CPU model it was measured with.

Not collected by pytest (bench_*.py); `--quick` (5,000 training samples, 1 epoch, 2 repeats)
checks that the script works in about a minute, and its figures are not meant to be quoted.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from dl2bench import env as E
from dl2bench.data import IMAGE_DATASETS, DatasetNotFound, make_splits
from dl2bench.families import MODELS
from dl2bench.train import run

MODEL_TASKS = {"mlp": "fashion_mnist", "lenet": "cifar10"}  # each model on its course dataset
LOADER_MODEL = "lenet"  # the loader comparison: the image task where input handling matters most
BATCH_SIZE = 64
LR = 0.01
VAL_SIZE = 5000  # dl2bench's default; it decides which examples are training examples
WARMUP_STEPS = 5  # dl2bench's default warmup_steps, excluded from both sides' first epoch
TEST_SIZE = 1000  # evaluation is not timed here; a small test split only shortens each run
TARGET_RATIO = 0.97  # dl2bench / bare, CPU


# ---------------------------------------------------------------------------------------------
# data

@dataclass
class TrainData:
    """The uint8 training tensors and channel stats that dl2bench's `run` would train on."""

    task: str
    x: torch.Tensor  # N x C x H x W, uint8
    y: torch.Tensor  # N, int64
    mean: torch.Tensor  # per channel, in [0, 1] units
    std: torch.Tensor
    num_classes: int
    source: str

    @property
    def in_shape(self) -> Tuple[int, ...]:
        return tuple(self.x.shape[1:])


def load_train_data(task: str, data_root: str, train_size: int) -> TrainData:
    """The same split `run` makes (same val_size/train_size, fixed split seed), so both loops see
    identical examples; only the training split is kept, the rest of the raw set is dropped."""
    raw = IMAGE_DATASETS[task](data_root, False)
    splits = make_splits(raw, VAL_SIZE, train_size)
    x, y = splits.train
    return TrainData(task, x, y, splits.mean, splits.std, len(splits.classes), splits.source)


# ---------------------------------------------------------------------------------------------
# the two loops

def sync(device: torch.device) -> None:
    """Wait for queued device work before reading a clock (CPU ops run eagerly: nothing to do)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bare_block(model_name: str, data: TrainData, epochs: int, device: torch.device, threads: int,
               seed: int = 0) -> List[float]:
    """Train a fresh model for `epochs` with the plainest loop; samples/s of each epoch.

    A fresh model per block, like a fresh `run`, so both sides pay (and exclude) the same warm-up.
    Deliberately independent of dl2bench's batching and timing code: it is the reference."""
    torch.set_num_threads(threads)  # `run` sets the thread count globally; restate ours
    torch.manual_seed(seed)
    model = MODELS[model_name](data.in_shape, data.num_classes).to(device)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    x, y = data.x.to(device), data.y.to(device)
    mean = data.mean.to(device).view(1, -1, 1, 1)
    std = data.std.to(device).view(1, -1, 1, 1)
    n = len(y)
    steps = -(-n // BATCH_SIZE)
    warm_step = min(WARMUP_STEPS, steps - 1)  # as dl2bench: never the whole epoch
    rates: List[float] = []
    for epoch in range(epochs):
        sync(device)
        t0 = time.perf_counter()
        start, seen, seen_at_start = t0, 0, 0
        order = torch.randperm(n, device=device)
        for i in range(steps):
            idx = order[i * BATCH_SIZE : (i + 1) * BATCH_SIZE]
            xb = (x[idx].float().div_(255) - mean) / std
            loss = F.cross_entropy(model(xb), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            seen += len(idx)
            if epoch == 0 and i + 1 == warm_step:
                sync(device)
                start, seen_at_start = time.perf_counter(), seen
        sync(device)
        rates.append((seen - seen_at_start) / max(time.perf_counter() - start, 1e-9))
    return rates


def dl2bench_run(model_name: str, task: str, out_dir: Path, epochs: int, device: torch.device,
                 threads: int, data_root: str, train_size: int, loader: str = "tensor",
                 num_workers: int = 2) -> Tuple[List[Dict[str, Any]], Dict[str, Any]]:
    """One `dl2bench.train.run`: its per-epoch rows from metrics.jsonl, and its summary."""
    config = {"task": task, "model": model_name, "optimizer": "sgd", "lr": LR, "batch_size": BATCH_SIZE,
              "epochs": epochs, "device": device.type, "threads": threads, "loader": loader,
              "num_workers": num_workers, "train_size": train_size, "val_size": VAL_SIZE,
              "test_size": TEST_SIZE, "warmup_steps": WARMUP_STEPS, "data_root": data_root,
              "wandb": "disabled", "progress": "none", "checkpoint": False}
    summary = run(config, out_dir)
    if summary["status"] != "finished":
        raise RuntimeError(f"dl2bench run {model_name}/{task} ({loader}) ended {summary['status']}: "
                           f"{summary.get('error') or summary.get('reason')}")
    if summary.get("threads") != threads or summary.get("device") != device.type:
        # a silent mismatch would make the comparison meaningless
        raise RuntimeError(f"dl2bench ran with threads={summary.get('threads')} device={summary.get('device')}, "
                           f"expected threads={threads} device={device.type}")
    with open(Path(out_dir) / "metrics.jsonl") as f:
        return [json.loads(line) for line in f if line.strip()], summary


# ---------------------------------------------------------------------------------------------
# the two comparisons

@dataclass
class LoopComparison:
    """dl2bench vs bare on one model: samples/s per epoch, grouped by repeat."""

    model: str
    task: str
    source: str
    n_train: int
    bare: List[List[float]] = field(default_factory=list)
    dl2bench: List[List[float]] = field(default_factory=list)
    # a second bare loop (another seed, so other weights and allocations): the noise floor; on a
    # shared VM two identical loops were seen to differ by several percent
    control: List[List[float]] = field(default_factory=list)
    order: List[str] = field(default_factory=list)  # which side went first in each repeat

    @property
    def bare_median(self) -> float:
        return statistics.median(v for block in self.bare for v in block)

    @property
    def dl2bench_median(self) -> float:
        return statistics.median(v for block in self.dl2bench for v in block)

    @property
    def ratio(self) -> float:
        return self.dl2bench_median / self.bare_median

    @property
    def control_ratio(self) -> float:
        return statistics.median(v for block in self.control for v in block) / self.bare_median

    def to_dict(self, device: torch.device) -> Dict[str, Any]:
        return {"model": self.model, "task": self.task, "data_source": self.source, "n_train": self.n_train,
                "bare_samples_per_s": self.bare, "dl2bench_samples_per_s": self.dl2bench,
                "first_in_repeat": self.order, "bare_median": self.bare_median,
                "dl2bench_median": self.dl2bench_median, "ratio": self.ratio,
                "control_samples_per_s": self.control, "control_ratio": self.control_ratio,
                "target_ratio": TARGET_RATIO if device.type == "cpu" else None,
                "meets_target": self.ratio >= TARGET_RATIO if device.type == "cpu" else None}


def compare_loops(model_name: str, data_root: str, train_size: int, epochs: int, repeats: int,
                  device: torch.device, threads: int, tmp: Path) -> LoopComparison:
    task = MODEL_TASKS[model_name]
    data = load_train_data(task, data_root, train_size)
    result = LoopComparison(model_name, task, data.source, len(data.y))
    for r in range(repeats):
        # alternate who goes first, so a drift in machine speed does not favour one side
        sides = ("bare", "dl2bench", "control")
        sides = sides[r % 3:] + sides[: r % 3]
        result.order.append(sides[0])
        for side in sides:
            if side == "bare":
                result.bare.append(bare_block(model_name, data, epochs, device, threads, seed=r))
            elif side == "control":
                result.control.append(bare_block(model_name, data, epochs, device, threads, seed=r + 1000))
            else:
                rows, _ = dl2bench_run(model_name, task, tmp / f"{model_name}-r{r}", epochs, device, threads,
                                       data_root, train_size)
                result.dl2bench.append([row["samples_per_s"] for row in rows])
    return result


@dataclass
class LoaderResult:
    """One loader setting on one epoch: figures from each repeat."""

    loader: str
    num_workers: Optional[int]  # None for the tensor loader, which has no workers
    n_train: int = 0
    samples_per_s: List[float] = field(default_factory=list)
    train_time: List[float] = field(default_factory=list)
    data_time: List[float] = field(default_factory=list)

    @property
    def label(self) -> str:
        return self.loader if self.num_workers is None else f"{self.loader} (workers {self.num_workers})"

    def to_dict(self, tensor: "LoaderResult") -> Dict[str, Any]:
        return {"loader": self.loader, "num_workers": self.num_workers, "n_train": self.n_train,
                "samples_per_s": self.samples_per_s,
                "train_time": self.train_time, "data_time": self.data_time,
                "median_samples_per_s": statistics.median(self.samples_per_s),
                "median_train_time": statistics.median(self.train_time),
                "samples_per_s_ratio_to_tensor": (statistics.median(self.samples_per_s)
                                                  / statistics.median(tensor.samples_per_s)),
                "train_time_ratio_to_tensor": (statistics.median(self.train_time)
                                               / statistics.median(tensor.train_time))}


def compare_loaders(workers: Sequence[int], data_root: str, train_size: int, repeats: int,
                    device: torch.device, threads: int, tmp: Path) -> List[LoaderResult]:
    """One epoch of lenet/CIFAR-10 per loader setting, the settings interleaved within each repeat."""
    results = [LoaderResult("tensor", None)] + [LoaderResult("dataloader", w) for w in workers]
    task = MODEL_TASKS[LOADER_MODEL]
    for r in range(repeats):
        for res in results:
            out = tmp / f"loader-{res.loader}-{res.num_workers}-r{r}"
            rows, summary = dl2bench_run(LOADER_MODEL, task, out, 1, device, threads, data_root, train_size,
                                         loader=res.loader, num_workers=res.num_workers or 0)
            res.n_train = summary["n_train"]
            res.samples_per_s.append(rows[0]["samples_per_s"])
            res.train_time.append(rows[0]["train_time"])
            res.data_time.append(rows[0]["data_time"])
    return results


# ---------------------------------------------------------------------------------------------
# report

def header(facts: Dict[str, Any]) -> str:
    return (f"# threads={facts['threads']}  device={facts['device']} ({facts['device_name']})  "
            f"torch={facts['torch_version']}  cpu={facts['cpu_model']!r}  host={facts['host']}  "
            f"git={facts['git_sha']}")


def _fmt_rates(blocks: List[List[float]]) -> str:
    return "  ".join("[" + ", ".join(f"{v:.0f}" for v in block) + "]" for block in blocks)


def print_loops(results: List[LoopComparison], device: torch.device) -> None:
    target = f">= {TARGET_RATIO:.2f}" if device.type == "cpu" else "(CPU only)"
    print(f"\n## dl2bench vs bare PyTorch loop: training samples/s, median over all epochs of all repeats; "
          f"target dl2bench/bare {target}")
    print(f"{'model':<7}{'task':<15}{'n_train':>8}{'bare':>11}{'dl2bench':>11}{'ratio':>8}"
          f"{'bare2/bare (noise floor)':>26}  verdict")
    for res in results:
        verdict = ("ok" if res.ratio >= TARGET_RATIO else "BELOW TARGET") if device.type == "cpu" else "-"
        print(f"{res.model:<7}{res.task:<15}{res.n_train:>8}{res.bare_median:>11.0f}{res.dl2bench_median:>11.0f}"
              f"{res.ratio:>8.3f}{res.control_ratio:>26.3f}  {verdict}")
    for res in results:
        print(f"  {res.model} per epoch, one [..] per repeat (first in each repeat: {', '.join(res.order)})")
        print(f"    bare     {_fmt_rates(res.bare)}")
        print(f"    dl2bench {_fmt_rates(res.dl2bench)}")
        print(f"    bare2    {_fmt_rates(res.control)}")


def print_loaders(results: List[LoaderResult]) -> None:
    tensor = results[0]
    print(f"\n## loaders: one epoch of {LOADER_MODEL}/{MODEL_TASKS[LOADER_MODEL]} through dl2bench "
          f"({tensor.n_train} training samples), median over {len(tensor.train_time)} run(s)")
    print(f"{'loader':<26}{'samples/s':>11}{'train_time s':>14}{'data_time s':>13}{'speed vs tensor':>17}")
    for res in results:
        d = res.to_dict(tensor)
        print(f"{res.label:<26}{d['median_samples_per_s']:>11.0f}{d['median_train_time']:>14.2f}"
              f"{statistics.median(res.data_time):>13.2f}{d['samples_per_s_ratio_to_tensor']:>16.2f}x")


# ---------------------------------------------------------------------------------------------

def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="mlp,lenet", help="comma separated, from: " + ", ".join(MODEL_TASKS))
    p.add_argument("--epochs", type=int, default=None, help="epochs per block (default 2; 1 with --quick)")
    p.add_argument("--repeats", type=int, default=None,
                   help="interleaved bare/dl2bench pairs per model (default 3; 2 with --quick)")
    p.add_argument("--train-size", type=int, default=None,
                   help="training examples, 0 = the whole split (default 0; 5000 with --quick)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: dl2bench's default_threads)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--data-root", default="", help="dataset root ('' = $DL2BENCH_DATA, then dl2bench's search path)")
    p.add_argument("--workers", default="2,0", help="DataLoader num_workers settings to compare (comma separated)")
    p.add_argument("--loader-repeats", type=int, default=1, help="runs per loader setting (default 1)")
    p.add_argument("--no-loaders", action="store_true", help="skip the tensor vs DataLoader comparison")
    p.add_argument("--quick", action="store_true", help="a fast smoke test; its figures are not for quoting")
    p.add_argument("--json", type=Path, default=None, help="also write every figure to this JSON file")
    args = p.parse_args(argv)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in args.models if m not in MODEL_TASKS]
    if unknown:
        p.error(f"--models: unknown {unknown}; choose from {', '.join(MODEL_TASKS)}")
    args.workers = [int(w) for w in args.workers.split(",") if w.strip()]
    defaults = {"epochs": (2, 1), "repeats": (3, 2), "train_size": (0, 5000)}
    for key, (full, quick) in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, quick if args.quick else full)
    for key in ("epochs", "repeats", "loader_repeats"):
        if getattr(args, key) < 1:
            p.error(f"--{key.replace('_', '-')}: expected a number >= 1")
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: torch.cuda.is_available() is False on this machine")
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    threads = args.threads or E.default_threads()
    facts = E.describe(device, threads)
    print(header(facts))
    print(f"# batch {BATCH_SIZE}, SGD lr {LR}, {args.epochs} epoch(s) x {args.repeats} repeat(s), "
          f"train_size {args.train_size or 'full'}, first {WARMUP_STEPS} steps of each run excluded"
          + ("  [--quick: smoke test, not for quoting]" if args.quick else ""), flush=True)
    loops: List[LoopComparison] = []
    loaders: List[LoaderResult] = []
    started = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="dl2bench-bench-") as tmp:
            for model_name in args.models:
                loops.append(compare_loops(model_name, args.data_root, args.train_size, args.epochs,
                                           args.repeats, device, threads, Path(tmp)))
            if not args.no_loaders:
                loaders = compare_loaders(args.workers, args.data_root, args.train_size, args.loader_repeats,
                                          device, threads, Path(tmp))
    except DatasetNotFound as e:
        print(f"error: {e}\n(pass --data-root or set DL2BENCH_DATA)", file=sys.stderr)
        return 2
    if loops:
        print_loops(loops, device)
    if loaders:
        print_loaders(loaders)
    print(f"\n# total {time.perf_counter() - started:.0f} s")
    if args.json:
        record = {"env": facts,
                  "settings": {"batch_size": BATCH_SIZE, "lr": LR, "optimizer": "sgd", "epochs": args.epochs,
                               "repeats": args.repeats, "train_size": args.train_size, "val_size": VAL_SIZE,
                               "warmup_steps": WARMUP_STEPS, "loader_repeats": args.loader_repeats,
                               "quick": args.quick},
                  "loops": [r.to_dict(device) for r in loops],
                  "loaders": [r.to_dict(loaders[0]) for r in loaders]}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(record, indent=1) + "\n")
        print(f"# figures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
