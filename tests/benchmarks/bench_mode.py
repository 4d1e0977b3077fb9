"""Benchmark mode vs a bare PyTorch loop, measured in one process; and CPU thread scaling.

    python tests/benchmarks/bench_mode.py [--models mlp,fc,lenet,wide_cnn] [--batches 16,64,256]
        [--precisions fp32[,bf16]] [--device cpu|cuda] [--threads N] [--rounds 3] [--repeats 11] [--seconds 4]
        [--scaling 1,2] [--data-root PATH] [--quick] [--json PATH]

For each model (on its course dataset: mlp on Fashion-MNIST, fc/lenet/wide_cnn on CIFAR-10), batch
size and precision: a `mode: benchmark` run (`dl2bench.train.run`, the path every run takes;
resident tensors, SGD momentum 0.9, lr 0.01) against a bare loop over the *same* uint8 training
tensors, model builder, batch, thread count, device and autocast: per epoch a randperm; per batch
index -> float/255 -> normalise -> forward -> cross-entropy -> zero_grad -> backward -> SGD step.
The bare loop does what the benchmark run does (its warm-up steps, then repeats of the same
steps per repeat, each a synchronised span), and batch-1 latency and large-batch inference with
the same call counts.

Interleaved, because this machine drifts: on this 2-core VM one loop's repeats of a few seconds
vary by 10-40%, in stretches of seconds (measured: the same loop run as 30 interleaved blocks,
12k-26k samples/s; whole benchmark runs alternated with whole bare loops gave per-round ratios of
0.63-1.41 between two loops doing the same work). So the bare loop's repeats run *between* the
benchmark run's timed repeats, outside its clocks (run's between_repeats): bare, bench, bare,
..., bench, bare. Each benchmark repeat is paired with the geometric mean of the bare repeats on
either side; the verdict is the median of those pair ratios over all repeats of --rounds runs
(target within 3%), printed with their IQR. Each side's median [IQR] over its repeats is printed
too. Every table is printed under a header naming threads, device, torch and CPU. Thread scaling:
benchmark mode at each --scaling thread count (middle batch size, fp32).

Not collected by pytest (bench_*.py), and never a timed unit test; `--quick` only checks that
the script works (its figures are not for quoting).
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from dl2bench import env as E  # noqa: E402
from dl2bench.config import RunConfig  # noqa: E402
from dl2bench.data import IMAGE_DATASETS, DatasetNotFound, make_splits  # noqa: E402
from dl2bench.families import MODELS  # noqa: E402
from dl2bench.train import run  # noqa: E402
from dl2bench.train.bench import spread  # noqa: E402

MODEL_TASKS = {"mlp": "fashion_mnist", "fc": "cifar10", "lenet": "cifar10", "wide_cnn": "cifar10"}
LR, MOMENTUM, VAL_SIZE, TEST_SIZE = 0.01, 0.9, 5000, 1000
TARGET = 0.03  # |bench / bare - 1|
AMP = {"bf16": torch.bfloat16, "fp16": torch.float16}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def load(task: str, data_root: str):
    """The training split `run` makes (same val_size, fixed split seed): both loops see the same examples."""
    raw = IMAGE_DATASETS[task](data_root, False)
    return make_splits(raw, VAL_SIZE, 0, TEST_SIZE)


def bench_config(model: str, task: str, batch: int, precision: str, device: torch.device, threads: int,
                 args) -> Dict[str, Any]:
    return {"mode": "benchmark", "task": task, "model": model, "batch_size": batch, "precision": precision,
            "device": device.type, "threads": threads, "optimizer": "momentum", "lr": LR, "val_size": VAL_SIZE,
            "test_size": TEST_SIZE, "bench_repeats": args.repeats, "bench_seconds": args.seconds,
            "warmup_steps": args.warmup, "infer_batch_size": args.infer_batch, "data_root": args.data_root,
            "wandb": "disabled", "progress": "none", "checkpoint": False}


def bench_run(model: str, task: str, batch: int, precision: str, device: torch.device, threads: int,
              args, out: Path) -> Dict[str, Any]:
    cfg = bench_config(model, task, batch, precision, device, threads, args)
    s = run(cfg, out)
    if s["status"] != "finished":
        raise RuntimeError(f"benchmark {model} batch {batch} {precision}: {s['status']}: {s.get('error')}")
    if s["threads"] != threads or s["device"] != device.type:  # a silent mismatch would void the comparison
        raise RuntimeError(f"benchmark ran with threads={s['threads']} device={s['device']}")
    return s


class Bare:
    """The plainest loop doing what the benchmark run does; deliberately independent of dl2bench's
    batching, step and timing code: it is the reference. Per epoch a randperm; per batch index ->
    float/255 -> normalise -> forward -> cross-entropy -> zero_grad -> backward -> SGD step."""

    def __init__(self, model_name: str, splits, batch: int, precision: str, device: torch.device, threads: int,
                 warm: int, infer_batch: int, seed: int):
        torch.set_num_threads(threads)
        torch.manual_seed(seed)
        x, y = splits.train
        self.device, self.amp = device, AMP.get(precision)
        self.model = MODELS[model_name](tuple(x.shape[1:]), len(splits.classes)).to(device)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=LR, momentum=MOMENTUM)
        self.x, self.y = x.to(device), y.to(device)
        self.mean = splits.mean.to(device).view(1, -1, 1, 1)
        self.std = splits.std.to(device).view(1, -1, 1, 1)
        self.gen = torch.Generator().manual_seed(seed)
        self.batch = batch
        self.it = self.batches()
        self.model.train()
        first = next(self.it)
        for b in [first] + [next(self.it) for _ in range(warm - 1)]:  # as many untimed steps as the benchmark
            self.step(b)
        xs = first[0]
        self.inputs = {"latency": xs[:1],
                       "infer": xs.repeat(-(-infer_batch // len(xs)), *([1] * (xs.ndim - 1)))[:infer_batch]}
        self.settled = set()

    def batches(self):
        n = len(self.y)
        while True:
            order = torch.randperm(n, generator=self.gen).to(self.device)
            for i in range(0, n, self.batch):
                idx = order[i:i + self.batch]
                yield (self.x[idx].float().div_(255) - self.mean) / self.std, self.y[idx]

    def step(self, b) -> int:
        xb, yb = b
        if self.amp is None:
            loss = F.cross_entropy(self.model(xb), yb)
        else:
            with torch.autocast(self.device.type, dtype=self.amp):
                loss = F.cross_entropy(self.model(xb), yb)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return len(yb)

    def repeat(self, phase: str, calls: int) -> float:
        """One timed repeat: training samples/s, batch-1 ms per call, or inference samples/s."""
        dev = self.device
        if phase == "train":
            self.model.train()
            sync(dev)
            t0 = time.perf_counter()
            k = sum(self.step(next(self.it)) for _ in range(calls))
            sync(dev)
            return k / (time.perf_counter() - t0)
        inp = self.inputs[phase]
        self.model.eval()
        ctx = torch.autocast(dev.type, dtype=self.amp) if self.amp else torch.autocast(dev.type, enabled=False)
        with torch.inference_mode(), ctx:
            if phase not in self.settled:  # as benchmark mode: one call to settle, one that sized its repeats
                self.model(inp)
                self.model(inp)
                self.settled.add(phase)
            sync(dev)
            t0 = time.perf_counter()
            for _ in range(calls):
                self.model(inp)
            sync(dev)
            dt = time.perf_counter() - t0
        return 1000 * dt / calls if phase == "latency" else calls * len(inp) / dt


def interleaved(model: str, task: str, batch: int, precision: str, device: torch.device, threads: int, args,
                out: Path, splits, seed: int) -> Dict[str, Any]:
    """One benchmark-mode run (`run`, with its between_repeats hook) with the bare loop's repeats
    interleaved between its timed repeats, outside its clocks: bare, bench, bare, bench, ..., bare.
    Each benchmark repeat is paired with the geometric mean of the two bare repeats around it, so a
    machine that speeds up or slows down over seconds moves both sides of a pair alike."""
    cfg = RunConfig.from_dict(bench_config(model, task, batch, precision, device, threads, args)).resolve()
    ref: Dict[str, Any] = {}
    got: Dict[str, List[float]] = {"train": [], "latency": [], "infer": []}

    def between(phase: str, r: int, calls: int) -> None:
        if "bare" not in ref:  # built once the benchmark's own warm-up is done, with its step count
            ref["bare"] = Bare(model, splits, batch, precision, device, threads, args.warmup + 1,
                               args.infer_batch, seed)
            torch.set_num_threads(threads)
        got[phase].append(ref["bare"].repeat(phase, calls))

    s = run(cfg, out, between_repeats=between)
    if s["status"] != "finished":
        raise RuntimeError(f"benchmark {model} batch {batch} {precision}: {s['status']}: {s.get('error')}")
    if s["threads"] != threads or s["device"] != device.type:  # a silent mismatch would void the comparison
        raise RuntimeError(f"benchmark ran with threads={s['threads']} device={s['device']}")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    bench = {"train": [r["samples_per_s"] for r in rows],
             "latency": [r["latency_ms"] for r in rows if "latency_ms" in r],
             "infer": [r["infer_samples_per_s"] for r in rows if "infer_samples_per_s" in r]}
    res = {"summary": s, "bench": bench, "bare": got, "pairs": {}}
    for k in bench:
        b, r_ = bench[k], got[k]
        assert len(r_) == len(b) + 1, (k, len(b), len(r_))
        res["pairs"][k] = [v / math.sqrt(r_[i] * r_[i + 1]) for i, v in enumerate(b)]
    return res


def compare(model: str, batch: int, precision: str, device: torch.device, threads: int, args, tmp: Path,
            splits) -> Dict[str, Any]:
    task = MODEL_TASKS[model]
    sides: Dict[str, Dict[str, List[float]]] = {"bench": {"train": [], "latency": [], "infer": []},
                                                "bare": {"train": [], "latency": [], "infer": []}}
    pairs: Dict[str, List[float]] = {"train": [], "latency": [], "infer": []}
    summaries = []
    for r in range(args.rounds):
        got = interleaved(model, task, batch, precision, device, threads, args,
                          tmp / f"{model}-{batch}-{precision}-r{r}", splits, seed=r)
        summaries.append(got["summary"])
        for k in pairs:
            sides["bench"][k] += got["bench"][k]
            sides["bare"][k] += got["bare"][k]
            pairs[k] += got["pairs"][k]
    res: Dict[str, Any] = {"model": model, "task": task, "batch_size": batch, "precision": precision,
                           "device": device.type, "threads": threads, "rounds": args.rounds,
                           "steps_per_repeat": summaries[-1]["bench_steps_per_repeat"],
                           "fraction_of_peak": summaries[-1].get("train_fraction_of_peak"),
                           "train_flops_source": summaries[-1].get("train_flops_source"),
                           "peak_source": summaries[-1].get("peak_source")}
    for k in ("train", "latency", "infer"):
        if sides["bench"][k] and sides["bare"][k]:
            b, r_ = spread(sides["bench"][k]), spread(sides["bare"][k])
            res[k] = {"bench": b, "bare": r_, "pooled_ratio": b["median"] / r_["median"],
                      "ratio": statistics.median(pairs[k]), "pairs": spread(pairs[k]), "pair_ratios": pairs[k],
                      "bench_repeats": sides["bench"][k], "bare_repeats": sides["bare"][k]}
    return res


def scaling(models: Sequence[str], batch: int, counts: Sequence[int], args, tmp: Path,
            device: torch.device) -> List[Dict[str, Any]]:
    out = []
    for model in models:
        row = {"model": model, "batch_size": batch, "samples_per_s": {}, "iqr": {}}
        for r in range(args.rounds):  # rounds interleave the thread counts against drift
            for t in (counts if r % 2 == 0 else list(reversed(counts))):
                s = bench_run(model, MODEL_TASKS[model], batch, "fp32", device, t, args, tmp / f"scale-{model}-{t}-{r}")
                row["samples_per_s"].setdefault(t, []).append(s["train_samples_per_s_median"])
                row["iqr"].setdefault(t, []).append(s["train_samples_per_s_iqr"])
        out.append(row)
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="mlp,fc,lenet,wide_cnn")
    p.add_argument("--batches", default="16,64,256")
    p.add_argument("--precisions", default="fp32")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: dl2bench's default_threads)")
    p.add_argument("--rounds", type=int, default=3, help="benchmark runs, each with the bare loop interleaved")
    p.add_argument("--repeats", type=int, default=11)
    p.add_argument("--seconds", type=float, default=4.0, help="bench_seconds of each benchmark run")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--infer-batch", type=int, default=256)
    p.add_argument("--scaling", default="1,2", help="thread counts for the scaling table ('' = none; CPU only)")
    p.add_argument("--data-root", default="")
    p.add_argument("--quick", action="store_true", help="a smoke test of the script; figures not for quoting")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    models = [m for m in args.models.split(",") if m]
    bad = [m for m in models if m not in MODEL_TASKS]
    if bad:
        p.error(f"--models: unknown {bad}; choose from {', '.join(MODEL_TASKS)}")
    batches = [int(b) for b in args.batches.split(",") if b]
    precisions = [q for q in args.precisions.split(",") if q]
    if args.quick:
        args.rounds, args.repeats, args.seconds, args.warmup = 1, 3, 0.5, 2
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: torch.cuda.is_available() is False on this machine")
    threads = args.threads or E.default_threads()
    facts = E.describe(device, threads)
    print(f"# threads={threads}  device={device.type} ({facts['device_name']})  torch={facts['torch_version']}  "
          f"cpu={facts['cpu_model']!r}  host={facts['host']}  git={facts['git_sha']}")
    print(f"# {args.rounds} round(s) x {args.repeats} repeats, bench_seconds {args.seconds}, warm-up {args.warmup} steps, "
          f"inference batch {args.infer_batch}" + ("  [--quick: not for quoting]" if args.quick else ""), flush=True)
    t0 = time.perf_counter()
    results, scale = [], []
    try:
        with tempfile.TemporaryDirectory(prefix="dl2bench-mode-") as tmp:
            data = {}
            for model in models:
                task = MODEL_TASKS[model]
                if task not in data:
                    data[task] = load(task, args.data_root)
                for batch in batches:
                    for prec in precisions:
                        results.append(compare(model, batch, prec, device, threads, args, Path(tmp), data[task]))
                        r = results[-1]
                        print(f"  {model} batch {batch} {prec}: train bench/bare {r['train']['ratio']:.3f}", flush=True)
            counts = [int(c) for c in args.scaling.split(",") if c]
            if device.type == "cpu" and len(counts) > 1:
                scale = scaling(models, batches[len(batches) // 2], counts, args, Path(tmp), device)
    except DatasetNotFound as e:
        print(f"error: {e}\n(pass --data-root or set DL2BENCH_DATA)", file=sys.stderr)
        return 2
    print(f"\n## benchmark mode vs bare loop ({device.type}, {threads} threads): median [IQR] over all repeats; "
          f"ratio: median of bench repeat / bare repeats around it; target |ratio - 1| <= {TARGET:.0%}")
    head = (f"{'model':<9}{'batch':>6} {'prec':<5}{'train bench':>20}{'train bare':>20}{'ratio':>7}"
            f"{'infer bench':>20}{'infer bare':>20}{'ratio':>7}{'lat ms bench':>17}{'lat ms bare':>17}{'ratio':>7}"
            f"{'% peak':>8}  verdict")
    print(head)
    for r in results:
        cells = []
        for k, f in (("train", ",.0f"), ("infer", ",.0f"), ("latency", ".3g")):
            if k in r:
                b, bb = r[k]["bench"], r[k]["bare"]
                cells.append(f"{b['median']:{f}} [{b['iqr']:{f}}]".rjust(20) + f"{bb['median']:{f}} [{bb['iqr']:{f}}]".rjust(20)
                             + f"{r[k]['ratio']:>7.3f}")
            else:
                cells.append(" " * 47)
        ok = abs(r["train"]["ratio"] - 1) <= TARGET
        q1, q3 = r["train"]["pairs"]["q1"], r["train"]["pairs"]["q3"]
        frac = r.get("fraction_of_peak")
        print(f"{r['model']:<9}{r['batch_size']:>6} {r['precision']:<5}" + "".join(cells)
              + f"{(100 * frac if frac else float('nan')):>7.2f}%  "
              + ("ok" if ok else "OUTSIDE 3%") + f"  (train pair ratios IQR {q1:.3f}-{q3:.3f}, n {len(r['train']['pair_ratios'])})")
    if results:
        print(f"# peak: {results[0].get('peak_source')}")
    if scale:
        counts = sorted(scale[0]["samples_per_s"])
        print(f"\n## CPU thread scaling (benchmark mode, fp32, batch {scale[0]['batch_size']}): training samples/s, "
              f"median of {args.rounds} run(s) per thread count")
        print(f"{'model':<9}" + "".join(f"{str(c) + ' thr':>14}" for c in counts) + f"{'speedup':>10}")
        for row in scale:
            meds = [statistics.median(row["samples_per_s"][c]) for c in counts]
            print(f"{row['model']:<9}" + "".join(f"{m:>14,.0f}" for m in meds) + f"{meds[-1] / meds[0]:>9.2f}x")
    print(f"\n# total {time.perf_counter() - t0:.0f} s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"env": facts, "results": results, "scaling": scale,
                                         "settings": {k: v for k, v in vars(args).items() if k != "json"}},
                                        indent=1, default=str) + "\n")
        print(f"# figures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
