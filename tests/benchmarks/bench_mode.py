"""Benchmark mode vs a bare PyTorch loop, measured in one process; and CPU thread scaling.

    python tests/benchmarks/bench_mode.py [--models mlp,fc,lenet,wide_cnn] [--batches 16,64,256]
        [--precisions fp32[,bf16]] [--device cpu|cuda] [--threads N] [--rounds 2] [--seconds 6]
        [--scaling 1,2] [--data-root PATH] [--quick] [--json PATH]

For each model (on its course dataset: mlp on Fashion-MNIST, fc/lenet/wide_cnn on CIFAR-10), batch
size and precision: `dl2bench.train.run` in `mode: benchmark` (resident tensors, SGD momentum 0.9,
lr 0.01) against a bare loop over the *same* uint8 training tensors, model builder, batch, thread
count, device and autocast: per epoch a randperm; per batch index -> float/255 -> normalise ->
forward -> cross-entropy -> zero_grad -> backward -> SGD step. The bare loop times exactly what
the benchmark run did (its warm-up steps, then its repeats x steps-per-repeat, each repeat a
synchronised span), and also batch-1 latency and large-batch inference with the same call counts.
Figures: the median over all repeats of all rounds and the IQR; bench/bare, target within 3%.

Drift on a shared machine: each round runs both sides, alternating which goes first, and the
medians pool the rounds. Every table is printed under a header naming threads, device, torch
and CPU. Thread scaling: benchmark mode at each --scaling thread count (middle batch size, fp32).

Not collected by pytest (bench_*.py), and never a timed unit test; `--quick` only checks that
the script works (its figures are not for quoting).
"""
from __future__ import annotations

import argparse
import json
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
from dl2bench.bench import spread  # noqa: E402
from dl2bench.data import IMAGE_DATASETS, DatasetNotFound, make_splits  # noqa: E402
from dl2bench.models import MODELS  # noqa: E402
from dl2bench.train import run  # noqa: E402

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


def bench_run(model: str, task: str, batch: int, precision: str, device: torch.device, threads: int,
              args, out: Path) -> Dict[str, Any]:
    cfg = {"mode": "benchmark", "task": task, "model": model, "batch_size": batch, "precision": precision,
           "device": device.type, "threads": threads, "optimizer": "momentum", "lr": LR, "val_size": VAL_SIZE,
           "test_size": TEST_SIZE, "bench_repeats": args.repeats, "bench_seconds": args.seconds,
           "warmup_steps": args.warmup, "infer_batch_size": args.infer_batch, "data_root": args.data_root,
           "wandb": "disabled", "progress": "none", "checkpoint": False}
    s = run(cfg, out)
    if s["status"] != "finished":
        raise RuntimeError(f"benchmark {model} batch {batch} {precision}: {s['status']}: {s.get('error')}")
    if s["threads"] != threads or s["device"] != device.type:  # a silent mismatch would void the comparison
        raise RuntimeError(f"benchmark ran with threads={s['threads']} device={s['device']}")
    return s


def bare(model_name: str, splits, batch: int, precision: str, device: torch.device, threads: int,
         warm: int, repeats: int, steps: int, lat_calls: int, inf_calls: int, infer_batch: int,
         seed: int, lat_repeats: int = 0, inf_repeats: int = 0) -> Dict[str, List[float]]:
    """The plainest loop doing what the benchmark run did; per-repeat figures. Deliberately
    independent of dl2bench's batching, step and timing code: it is the reference."""
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    x, y = splits.train
    model = MODELS[model_name](tuple(x.shape[1:]), len(splits.classes)).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    x, y = x.to(device), y.to(device)
    mean = splits.mean.to(device).view(1, -1, 1, 1)
    std = splits.std.to(device).view(1, -1, 1, 1)
    amp = AMP.get(precision)
    gen = torch.Generator().manual_seed(seed)
    n = len(y)

    def batches():
        while True:
            order = torch.randperm(n, generator=gen).to(device)
            for i in range(0, n, batch):
                idx = order[i:i + batch]
                yield (x[idx].float().div_(255) - mean) / std, y[idx]

    def train_step(b):
        xb, yb = b
        if amp is None:
            loss = F.cross_entropy(model(xb), yb)
        else:
            with torch.autocast(device.type, dtype=amp):
                loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return len(yb)

    it = batches()
    model.train()
    first = next(it)
    train_step(first)
    for _ in range(warm - 1):
        train_step(next(it))
    rates = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        k = sum(train_step(next(it)) for _ in range(steps))
        sync(device)
        rates.append(k / (time.perf_counter() - t0))
    xs = first[0]
    x1 = xs[:1]
    xb = xs.repeat(-(-infer_batch // len(xs)), *([1] * (xs.ndim - 1)))[:infer_batch]
    out: Dict[str, List[float]] = {"train": rates, "latency": [], "infer": []}
    model.eval()
    ctx = (lambda: torch.autocast(device.type, dtype=amp)) if amp else (lambda: torch.autocast(device.type, enabled=False))
    with torch.inference_mode(), ctx():
        for inp, key, calls, reps in ((x1, "latency", lat_calls, lat_repeats or repeats),
                                      (xb, "infer", inf_calls, inf_repeats or repeats)):
            for _ in range(2):  # as benchmark mode: one call to settle, one that sized its repeats
                model(inp)
            for _ in range(reps):
                sync(device)
                t0 = time.perf_counter()
                for _ in range(calls):
                    model(inp)
                sync(device)
                dt = time.perf_counter() - t0
                out[key].append(1000 * dt / calls if key == "latency" else calls * len(inp) / dt)
    return out


def compare(model: str, batch: int, precision: str, device: torch.device, threads: int, args, tmp: Path,
            splits) -> Dict[str, Any]:
    task = MODEL_TASKS[model]
    sides: Dict[str, Dict[str, List[float]]] = {"bench": {"train": [], "latency": [], "infer": []},
                                                "bare": {"train": [], "latency": [], "infer": []}}
    summaries = []
    for r in range(args.rounds):
        order = ("bench", "bare") if r % 2 == 0 else ("bare", "bench")
        for side in order:
            if side == "bench":
                s = bench_run(model, task, batch, precision, device, threads, args,
                              tmp / f"{model}-{batch}-{precision}-r{r}")
                summaries.append(s)
                rows = [json.loads(line) for line in
                        (tmp / f"{model}-{batch}-{precision}-r{r}" / "metrics.jsonl").read_text().splitlines()]
                sides["bench"]["train"] += [row["samples_per_s"] for row in rows]
                sides["bench"]["latency"] += [row["latency_ms"] for row in rows if "latency_ms" in row]
                sides["bench"]["infer"] += [row["infer_samples_per_s"] for row in rows if "infer_samples_per_s" in row]
            else:
                # the bare loop times what the benchmark run just did (or the first run's, going first)
                ref = summaries[-1] if summaries else None
                if ref is None:  # bare first in this round: size it like the previous round's run
                    ref = bench_run(model, task, batch, precision, device, threads, args, tmp / f"size-{model}-{batch}")
                got = bare(model, splits, batch, precision, device, threads, ref["bench_warmup_steps"], ref["bench_repeats"],
                           ref["bench_steps_per_repeat"], ref.get("bench_latency_calls", 1), ref.get("bench_infer_calls", 1),
                           ref["infer_batch_size"], seed=r, lat_repeats=ref.get("bench_latency_repeats", 0),
                           inf_repeats=ref.get("bench_infer_repeats", 0))
                for k in got:
                    sides["bare"][k] += got[k]
    res: Dict[str, Any] = {"model": model, "task": task, "batch_size": batch, "precision": precision,
                           "device": device.type, "threads": threads, "rounds": args.rounds,
                           "steps_per_repeat": summaries[-1]["bench_steps_per_repeat"],
                           "fraction_of_peak": summaries[-1].get("train_fraction_of_peak"),
                           "peak_source": summaries[-1].get("peak_source")}
    for k in ("train", "latency", "infer"):
        if sides["bench"][k] and sides["bare"][k]:
            b, r_ = spread(sides["bench"][k]), spread(sides["bare"][k])
            res[k] = {"bench": b, "bare": r_, "ratio": b["median"] / r_["median"],
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
    p.add_argument("--rounds", type=int, default=2, help="rounds of (benchmark run, bare loop), order alternating")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--seconds", type=float, default=6.0, help="bench_seconds of each benchmark run")
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
          f"target |bench/bare - 1| <= {TARGET:.0%}")
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
        frac = r.get("fraction_of_peak")
        print(f"{r['model']:<9}{r['batch_size']:>6} {r['precision']:<5}" + "".join(cells)
              + f"{(100 * frac if frac else float('nan')):>7.2f}%  "
              + ("ok" if ok else "OUTSIDE 3%"))
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
