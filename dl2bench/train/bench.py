"""Benchmark mode (`mode: benchmark`): instead of training to convergence, time what a run of this
configuration costs -- training steps (batch fetch + forward + backward + optimizer step, through
the run's own step object), batch-1 inference latency and large-batch inference throughput --
and set the achieved FLOP/s against the device's peak.

`benchmark(prepared, between)` starts from the same Prepared run training starts from
(prepare.py) and returns figures and rows; the run's record (metrics rows, summary, W&B) is the
loop's to write (loop.py), so nothing here knows the Trainer.

Honest timing: warm-up steps (and torch.compile's compilation) are run first and excluded; every
span starts after a device synchronise and is read with CUDA events on a GPU; each figure is the
median and interquartile range over `bench_repeats` timed repeats; threads, device and precision
go into the same summary as the figures.

FLOPs: inference uses the model's forward FLOPs per sample from torch's flop counter (set-up's
`flops_per_sample` fact). A training step's FLOPs are counted the same way over one real step (the
first warm-up step runs under torch's FlopCounterMode: forward and backward, matmuls and
convolutions, divided by the batch). The usual shortcut, 3x the forward (Kaplan et al. 2020;
PaLM's MFU), overcounts a model whose first layer dominates: no gradient is computed for the
input, so that layer's backward is 1x, not 2x, its forward (fc on CIFAR-10: 3x would put it above
the machine's own matmul peak). A step the counter cannot go through falls back to 3x, and
`train_flops_source` says which.

Peak: a GPU named in PEAKS is set against its vendor datasheet's dense (no sparsity) figure for
the run's precision; a CPU, or a GPU not in the table, against a matmul roofline measured on the
machine itself (the best of square torch.matmul products of several sizes in the run's dtype and
threads, cached per process: one size alone is not the best this machine does). The summary says
which (`peak_source`).
"""
from __future__ import annotations

import functools
import re
import resource
import statistics
from contextlib import nullcontext
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import torch

from ..families.base import Step
from ..timing import SpanTimer, synchronize
from .prepare import Prepared
from .step import DefaultStep

TRAIN_FLOPS_FACTOR = 3  # forward + backward (2x forward) per sample; see the module docstring
# of bench_seconds: training repeats, then batch-1 latency, then large-batch inference
SHARES = {"train": 0.6, "latency": 0.2, "infer": 0.2}
MAX_CALLS = 10_000  # per repeat: a tiny model on a GPU would otherwise be asked for millions

# Dense (no structured sparsity) peak FLOP/s from the vendors' datasheets, by the name
# torch.cuda.get_device_name reports; most specific pattern first. fp32 is the plain (non-tensor-
# core) FP32 figure: PyTorch's default matmuls do not use TF32 (convolutions may, cudnn.allow_tf32
# being on by default, so an fp32 conv net can exceed 1.0 of this peak). None: no such units.
_H100 = "NVIDIA H100 Tensor Core GPU datasheet (2023), dense"
_H200 = "NVIDIA H200 Tensor Core GPU datasheet (2024), dense"
PEAKS: Tuple[Tuple[str, str, Dict[str, Optional[float]], str], ...] = (
    # (regex on the device name, what it is, {precision: FLOP/s}, source)
    (r"H200.*NVL", "H200 NVL", {"fp32": 60e12, "bf16": 835e12, "fp16": 835e12}, _H200),
    (r"H200", "H200 SXM", {"fp32": 67e12, "bf16": 989e12, "fp16": 989e12}, _H200),
    (r"H100.*NVL", "H100 NVL", {"fp32": 60e12, "bf16": 835e12, "fp16": 835e12}, _H100),
    (r"H100.*PCIe", "H100 PCIe", {"fp32": 51e12, "bf16": 756e12, "fp16": 756e12}, _H100),
    (r"H100", "H100 SXM", {"fp32": 67e12, "bf16": 989e12, "fp16": 989e12}, _H100),
    (r"A100", "A100", {"fp32": 19.5e12, "bf16": 312e12, "fp16": 312e12},
     "NVIDIA A100 Tensor Core GPU datasheet (2021), dense"),
    (r"L40S", "L40S", {"fp32": 91.6e12, "bf16": 362e12, "fp16": 362e12}, "NVIDIA L40S datasheet (2023), dense"),
    (r"\bA10\b", "A10", {"fp32": 31.2e12, "bf16": 125e12, "fp16": 125e12}, "NVIDIA A10 datasheet (2021), dense"),
    (r"\bL4\b", "L4", {"fp32": 30.3e12, "bf16": 121e12, "fp16": 121e12}, "NVIDIA L4 datasheet (2023), dense"),
    (r"V100.*SXM", "V100 SXM2", {"fp32": 15.7e12, "bf16": None, "fp16": 125e12}, "NVIDIA V100 datasheet (2020)"),
    (r"V100", "V100 PCIe", {"fp32": 14e12, "bf16": None, "fp16": 112e12}, "NVIDIA V100 datasheet (2020)"),
    (r"\bT4\b", "T4", {"fp32": 8.1e12, "bf16": None, "fp16": 65e12}, "NVIDIA T4 datasheet (2019)"),
)
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def known_peak(device_name: str, precision: str) -> Optional[Tuple[float, str]]:
    """(FLOP/s, source) from PEAKS for this device and precision, or None if it is not there."""
    for pattern, what, peaks, source in PEAKS:
        if re.search(pattern, device_name, re.IGNORECASE):
            v = peaks.get(precision)
            return (v, f"{what} {precision}: {v / 1e12:g} TFLOP/s, {source}") if v else None
    return None


ROOFLINE_SIZES = {"cpu": (256, 512, 1024, 2048), "cuda": (4096, 8192, 16384)}


def roofline_sizes(device_type: str) -> Tuple[int, ...]:
    """The square matmul sizes measured_peak tries on this kind of device (a GPU's, or the CPU's)."""
    return ROOFLINE_SIZES["cuda" if device_type == "cuda" else "cpu"]


@functools.lru_cache(maxsize=16)
def measured_peak(device_type: str, precision: str, threads: int) -> Tuple[float, int]:
    """(FLOP/s, n) of the best square n x n matmul in `precision` on this device with `threads`
    threads over ROOFLINE_SIZES; cached per process (a sweep of many benchmark runs in one process
    measures it once)."""
    device = torch.device(device_type)
    dtype = DTYPES[precision]
    timer = SpanTimer(device)
    best_rate, best_n = 0.0, 0
    for n in roofline_sizes(device.type):
        gen = torch.Generator().manual_seed(0)
        a = torch.randn(n, n, generator=gen).to(device, dtype)  # random data: zeros run faster on some chips
        b = torch.randn(n, n, generator=gen).to(device, dtype)
        for _ in range(2):  # warm-up: kernel selection, thread pool start
            a @ b
        best, spent, k = float("inf"), 0.0, 0
        while k < 3 or (spent < 0.3 and k < 20):
            timer.start()
            a @ b
            dt = timer.stop()
            best, spent, k = min(best, dt), spent + dt, k + 1
        if 2 * n ** 3 / best > best_rate:
            best_rate, best_n = 2 * n ** 3 / best, n
        del a, b
    return best_rate, best_n


def peak_for(device: torch.device, device_name: str, precision: str, threads: int) -> Tuple[float, str, str]:
    """(peak FLOP/s, where that figure comes from, "datasheet" | "measured") for this run's device
    and precision."""
    if device.type == "cuda":
        known = known_peak(device_name, precision)
        if known is not None:
            return known + ("datasheet",)
    v, n = measured_peak(device.type, precision, threads)
    where = "CPU" if device.type == "cpu" else f"{device_name} (not in the datasheet table)"
    sizes = "/".join(map(str, roofline_sizes(device.type)))
    return v, (f"measured matmul roofline on this {where}: best 2n^3/t over n = {sizes} {precision} torch.matmul "
               f"with {threads} thread(s): {v / 1e9:,.1f} GFLOP/s at n = {n}"), "measured"


def spread(values: Sequence[float]) -> Dict[str, float]:
    """median, quartiles (inclusive method, numpy's default), IQR, min, max."""
    v = sorted(values)
    if len(v) == 1:
        q1 = q3 = v[0]
    else:
        q1, _, q3 = statistics.quantiles(v, n=4, method="inclusive")
    return {"median": statistics.median(v), "q1": q1, "q3": q3, "iqr": q3 - q1, "min": v[0], "max": v[-1]}


def _flat(prefix: str, s: Dict[str, float]) -> Dict[str, float]:
    return {f"{prefix}_{k}": v for k, v in s.items()}


def _forever(batches, generator: torch.Generator) -> Iterator[Any]:
    """Epoch after epoch of the task's training batches (a new shuffle each), as training draws them."""
    while True:
        yield from batches.iterate(generator)


def _calls(budget: float, repeats: int, one: float) -> int:
    """Calls per repeat so that all repeats take about `budget` seconds; at least one."""
    return int(min(MAX_CALLS, max(1, budget / repeats / max(one, 1e-9))))


def count_step_flops(step: Step, batch: Any) -> Optional[float]:
    """FLOPs per sample of one real training step on `batch` (it updates the model: call it on a
    warm-up step), counted by torch's FlopCounterMode; None if the step does not go through it.
    A compiled model is counted in eager mode (the same arithmetic; the counter does not see into
    a compiled graph)."""
    from torch.utils.flop_counter import FlopCounterMode

    eager = step.eager() if isinstance(step, DefaultStep) else nullcontext()
    counter = FlopCounterMode(display=False)
    try:
        with eager, counter:
            _, n, _ = step(batch, False)
    except Exception:  # noqa: BLE001 - an op the counter cannot dispatch: the 3x approximation stands in
        return None
    total = counter.get_total_flops()
    return total / n if n and total else None


def benchmark(p: Prepared, between: Optional[Callable[[str, int, int], None]] = None
              ) -> Tuple[Dict[str, Any], List[Dict[str, Any]]]:
    """Time the prepared run's own step and its model's inference; (summary figures, one row per
    repeat). Its step object is the one training uses, so the optimizer's state moves exactly as
    it would in an epoch. `between(phase, repeat, calls)`, if given, runs outside the clocks
    before each timed repeat ("train", "latency", "infer"; calls: steps or forward calls per
    repeat) and once more after each phase's last (repeat = the count): a reference loop
    interleaved there (tests/benchmarks/bench_mode.py) meets the same machine conditions."""
    cfg, dev, step = p.cfg, p.device, p.step
    repeats = cfg.bench_repeats
    timer = SpanTimer(dev)
    mem_cuda = dev.type == "cuda"
    batches = _forever(p.train_batches, p.data_gen)

    # -- training steps -------------------------------------------------------------------
    p.model.train()
    warm = max(1, cfg.warmup_steps)  # the last warm-up step also sizes the repeats
    one = 0.0
    first = next(batches)
    counted = count_step_flops(step, first)  # a warm-up step of its own, never timed
    for _ in range(warm):
        timer.start()
        step(next(batches), False)
        one = timer.stop()
    steps = cfg.bench_steps or _calls(cfg.bench_seconds * SHARES["train"], repeats, one)
    if mem_cuda:
        torch.cuda.reset_peak_memory_stats(dev)
    train_s, train_n, losses = [], [], []
    for r in range(repeats):
        if between:
            between("train", r, steps)
        n = 0
        timer.start()
        for _ in range(steps):
            # the batch is drawn inside the clock: fetching it (index, normalise, a DataLoader's
            # workers and host-to-device copy) is part of a training step's cost
            loss, k, _ = step(next(batches), False)
            n += k
        train_s.append(timer.stop())
        train_n.append(n)
        losses.append(loss)
    if between:
        between("train", repeats, steps)
    batches.close()  # a DataLoader's workers end now, not at some later garbage collection
    train_mem = torch.cuda.max_memory_allocated(dev) / 2**20 if mem_cuda else None
    rates = [n / s for n, s in zip(train_n, train_s)]
    step_ms = [1000 * s / steps for s in train_s]
    last_loss = losses[-1].item() if losses and losses[-1] is not None else None  # after the clocks

    # -- inference ------------------------------------------------------------------------
    x = first[0] if isinstance(first, (tuple, list)) and torch.is_tensor(first[0]) else None
    lat, inf_rates, infer_mem, calls_lat, calls_inf, reps_lat, reps_inf = [], [], None, 0, 0, 0, 0
    if x is not None:
        model = p.forward_model  # compiled when compile is on, as evaluation uses it
        x1 = x[:1]
        xb = x.repeat(-(-cfg.infer_batch_size // len(x)), *([1] * (x.ndim - 1)))[: cfg.infer_batch_size]
        if cfg.channels_last and xb.ndim == 4:
            xb = xb.contiguous(memory_format=torch.channels_last)
            x1 = x1.contiguous(memory_format=torch.channels_last)
        p.model.eval()
        try:
            with torch.inference_mode(), p.autocast():
                for inp, out, share in ((x1, lat, "latency"), (xb, inf_rates, "infer")):
                    # eval-mode kernels (cuDNN's choice, a compiled graph per shape) settle in the
                    # first call; the second sizes the repeats
                    for _ in range(2):
                        timer.start()
                        model(inp)
                        one = timer.stop()
                    budget = cfg.bench_seconds * SHARES[share]
                    # a call slower than its share of the budget: fewer repeats (3 at least, for
                    # quartiles) rather than a benchmark that takes minutes at a large batch
                    n_rep = max(3, min(repeats, int(budget / max(one, 1e-9))))
                    calls = _calls(budget, n_rep, one)
                    if mem_cuda and share == "infer":
                        torch.cuda.reset_peak_memory_stats(dev)
                    for r in range(n_rep):
                        if between:
                            between(share, r, calls)
                        timer.start()
                        for _ in range(calls):
                            model(inp)
                        s = timer.stop()
                        out.append(1000 * s / calls if share == "latency" else calls * len(inp) / s)
                    if between:
                        between(share, n_rep, calls)
                    if share == "latency":
                        calls_lat, reps_lat = calls, n_rep
                    else:
                        calls_inf, reps_inf = calls, n_rep
            infer_mem = torch.cuda.max_memory_allocated(dev) / 2**20 if mem_cuda else None
        finally:
            p.model.train()
    synchronize(dev)

    # -- figures ---------------------------------------------------------------------------
    fwd = p.facts.get("flops_per_sample") or 0
    if counted:
        train_flops, flops_source = counted, ("counted: torch FlopCounterMode over one training step "
                                              "(forward and backward; matmuls and convolutions), per sample")
    else:
        train_flops, flops_source = TRAIN_FLOPS_FACTOR * fwd, ("3x the forward FLOPs (an approximation: "
                                                               "this step could not be counted)")
    peak, source, kind = peak_for(dev, str(p.facts.get("device_name", "")), cfg.precision, p.threads)
    tr = spread(rates)
    fig: Dict[str, Any] = {
        "bench_repeats": repeats, "bench_steps_per_repeat": steps, "bench_warmup_steps": warm + 1,
        "bench_timer": "cuda events" if dev.type == "cuda" else "perf_counter after synchronize",
        "samples_per_s": tr["median"],  # what every throughput figure and table of the report reads
        **_flat("train_samples_per_s", tr), **_flat("train_step_ms", spread(step_ms)),
        "train_time_total": sum(train_s),
        "final_train_loss": last_loss,
        "train_flops_per_sample": train_flops, "train_flops_source": flops_source,
        "train_flop_per_s": train_flops * tr["median"],
        "peak_flop_per_s": peak, "peak_source": source,
        "peak_kind": kind,
        "train_fraction_of_peak": train_flops * tr["median"] / peak if train_flops else None,
        "infer_batch_size": cfg.infer_batch_size,
    }
    if inf_rates:
        ir = spread(inf_rates)
        fig.update(_flat("infer_samples_per_s", ir), **_flat("latency_ms", spread(lat)),
                   bench_latency_calls=calls_lat, bench_infer_calls=calls_inf,
                   bench_latency_repeats=reps_lat, bench_infer_repeats=reps_inf,
                   infer_flop_per_s=fwd * ir["median"],
                   infer_fraction_of_peak=fwd * ir["median"] / peak if fwd else None)
    else:
        fig["infer_note"] = "no inference timed: this task's batches have no input tensor first"
    if mem_cuda:
        fig.update(peak_mem_mb=max(v for v in (train_mem, infer_mem) if v is not None), train_peak_mem_mb=train_mem,
                   infer_peak_mem_mb=infer_mem, peak_mem_what="torch.cuda.max_memory_allocated (tensors)")
    else:  # Linux reports KiB
        fig.update(peak_mem_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                   peak_mem_what="process max RSS (dataset, Python and torch included)")
    rows = []
    for r in range(repeats):
        row = {"epoch": r + 1, "repeat": r + 1, "samples_per_s": rates[r], "train_time": train_s[r],
               "step_ms": step_ms[r], "threads": p.threads}
        if r < len(inf_rates):
            row["infer_samples_per_s"] = inf_rates[r]
        if r < len(lat):
            row["latency_ms"] = lat[r]
        rows.append(row)
    return fig, rows


def describe(fig: Dict[str, Any]) -> str:
    """One log line of a benchmark's figures."""
    s = (f"benchmark: train {fig['train_samples_per_s_median']:,.0f} samples/s (IQR {fig['train_samples_per_s_iqr']:,.0f}, "
         f"{fig['bench_repeats']} x {fig['bench_steps_per_repeat']} steps)")
    if "latency_ms_median" in fig:
        s += (f", batch-1 latency {fig['latency_ms_median']:.3g} ms, inference {fig['infer_samples_per_s_median']:,.0f} "
              f"samples/s at batch {fig['infer_batch_size']}")
    if fig.get("train_fraction_of_peak") is not None:
        s += f"; training at {fig['train_fraction_of_peak']:.1%} of peak ({fig['peak_kind']})"
    return s
