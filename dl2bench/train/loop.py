"""The only training loop: `run(config, out_dir) -> summary`, for every task family.

It knows a task only through its declarations (metrics, headline, monitored metric, targets)
and its Problem (batches, evaluate, and either a loss for the default step or a step of its own),
so best epoch, early stopping, targets and the summary follow whatever the task declares.
"""
from __future__ import annotations

import contextlib
import errno
import math
import os
import random
import resource
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Union

import torch

from .. import artifacts
from .. import checkpoint as ckpt
from .. import env as E
from .. import record as R
from ..config import ConfigError, RunConfig
from ..families import TASKS
from ..nets import count_parameters, flops_per_sample
from ..regularizers import REGULARIZERS
from ..timing import Stopwatch, synchronize
from ..track import Tracker
from .step import DefaultStep

NAN_CHECK_EVERY = 100  # steps between divergence checks: each check is one host-device sync


def resolve_device(cfg: RunConfig) -> torch.device:
    """cpu | cuda | auto -> a torch.device; asking for CUDA without one is a config error."""
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: 'cuda' requested but torch.cuda.is_available() is False on "
                          "this machine; use --device cpu or auto, or run on a GPU node")
    name = cfg.device
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if cfg.precision == "fp16" and name != "cuda":
        raise ConfigError(f"precision: fp16 needs a CUDA device (device {cfg.device!r} is the CPU "
                          "here); use bf16 or fp32 on the CPU")
    return torch.device(name)


def run(config: Union[RunConfig, Mapping[str, Any]], out_dir: Union[str, Path]) -> Dict[str, Any]:
    """Train one config into out_dir (resuming from its checkpoint if there is one); returns
    the summary also written to out_dir/summary.json. Bad configs raise ConfigError before
    anything is written; errors during training are recorded as status 'failed'."""
    cfg = config if isinstance(config, RunConfig) else RunConfig.from_dict(config)
    cfg = cfg.resolve()
    device = resolve_device(cfg)
    run_id = cfg.run_id()
    try:
        tracker = Tracker(cfg, Path(out_dir), run_id)
    except OSError as e:  # a full or read-only disk before anything ran: one clear error
        raise RecordError(f"run {run_id}: cannot write its record in {out_dir} ({e.strerror or e})") from None
    trainer = Trainer(cfg, device, tracker, run_id)
    try:
        summary = trainer.fit()
    except Exception as e:  # noqa: BLE001 - recorded, so a sweep shows why the run failed
        error = f"{type(e).__name__}: {e}"
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            error += f"; {trainer.kept()} Free space and run it again to resume."
        summary = trainer.summary(R.FAILED, error=error, traceback=traceback.format_exc())
        trainer.say(f"run {run_id} failed: {error}")
    try:
        tracker.finish(summary)
    except OSError as e:  # a full disk may refuse even the small summary: say so without a traceback
        raise RecordError(f"run {run_id}: cannot write {Path(out_dir) / 'summary.json'} ({e.strerror or e}); "
                          f"{trainer.kept()} Free space and run it again to resume.") from None
    return summary


class RecordError(OSError):
    """The run's own record could not be written (a full disk); what is kept is said."""


class Trainer:
    """State of one run; `fit` is the loop."""

    def __init__(self, cfg: RunConfig, device: torch.device, tracker: Tracker, run_id: str):
        self.cfg, self.device, self.tracker, self.run_id = cfg, device, tracker, run_id
        self.out = tracker.out
        self.ckpt_path = self.out / "checkpoint.pt"
        self.task = TASKS[cfg.task]()
        self.monitored = self.task.monitored  # best epoch, early stopping and targets follow it
        self.metrics = self.task.metrics
        self.history: List[Dict[str, Any]] = []
        self.facts: Dict[str, Any] = {}
        self.started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.resumes = 0
        self.discarded: Optional[str] = None  # why an unreadable checkpoint was not resumed from
        self.best_val = -math.inf if self.monitored.goal == "maximize" else math.inf
        self.best_epoch = 0
        self.bad_epochs = 0
        self.best_state: Optional[Dict[str, torch.Tensor]] = None
        self.warm = False  # the first warmup_steps of a run (or of a resumed run) are warm-up
        self.measured = [0, 0.0]  # samples and seconds after warm-up, over all epochs
        # benchmark mode only: called outside the clocks before every timed repeat, with (phase,
        # repeat, calls); a benchmark script interleaves its reference loop there (bench_mode.py)
        self.between_repeats: Optional[Callable[[str, int, int], None]] = None
        self.progress = cfg.progress
        if self.progress == "auto":
            self.progress = "bar" if sys.stderr.isatty() else "log"

    def say(self, msg: str) -> None:
        if self.progress != "none":
            print(f"[dl2bench {self.run_id}] {msg}", flush=True)

    # ---------------------------------------------------------------------------------------
    def setup(self) -> None:
        cfg, device = self.cfg, self.device
        self.threads = cfg.threads or E.default_threads()
        torch.set_num_threads(self.threads)
        if cfg.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        elif device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed input shapes: let cuDNN pick kernels
        torch.set_flush_denormal(False)  # PyTorch's default; a family may turn it on (sequence models)
        random.seed(cfg.seed)
        torch.manual_seed(cfg.seed)  # model init and dropout draw from here
        self.data_gen = torch.Generator().manual_seed(cfg.seed + 1)  # batch order and augmentation

        self.reg = REGULARIZERS[cfg.regularizer](cfg)
        p = self.problem = self.task.prepare(self.task, cfg, device, self.reg)
        self.metrics = p.metrics or self.task.metrics
        self.model = p.model
        example = p.example_input(device) if p.example_input else None
        self.facts.update(E.describe(device, self.threads))
        self.facts.update(params=count_parameters(self.model),
                          flops_per_sample=flops_per_sample(self.model, p.in_shape, device, example),
                          data_source=p.source, n_train=p.n_train, steps_per_epoch=len(p.train_batches))
        self.facts.update(p.facts)
        self.train_model = torch.compile(self.model) if cfg.compile else self.model
        amp = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.precision)
        self.autocast = (lambda: torch.autocast(device.type, dtype=amp)) if amp else contextlib.nullcontext
        if p.step is not None:  # the task owns its update, optimizers and their state
            self.step = p.step
        else:
            self.step = DefaultStep(self.model, self.train_model, p.loss, cfg, len(p.train_batches),
                                    self.reg.clip_norm, self.autocast if amp else None,
                                    grad_norm=any(m.name == "grad_norm" for m in self.metrics))

    def kept(self) -> str:
        """What a rerun resumes from, for a failure message."""
        if not self.cfg.checkpoint:
            return "Checkpoints are off: a rerun starts from epoch 1."
        try:
            n = len(ckpt.load(self.ckpt_path)["history"]) if self.ckpt_path.exists() else 0
        except ckpt.CheckpointError:
            n = 0
        return (f"The checkpoint of epoch {n} in {self.ckpt_path} is intact." if n
                else "No epoch was checkpointed yet: a rerun starts from epoch 1.")

    def state(self) -> Dict[str, Any]:
        return {"model": self.model.state_dict(), "step": self.step.state_dict(),
                "rng": ckpt.rng_state(self.data_gen), "history": self.history,
                "best": (self.best_val, self.best_epoch, self.bad_epochs), "best_state": self.best_state,
                "resumes": self.resumes, "started": self.started, "run_id": self.run_id,
                "measured": self.measured}

    def restore(self, s: Dict[str, Any]) -> None:
        if s.get("run_id") != self.run_id:
            raise RuntimeError(f"{self.ckpt_path} belongs to run {s.get('run_id')}, not {self.run_id}; "
                               "remove it or use another out_dir")
        self.model.load_state_dict(s["model"])
        self.step.load_state_dict(s.get("step") or s)  # schema 1 kept opt/sched/scaler at the top
        ckpt.set_rng_state(s["rng"], self.data_gen)
        self.history = s["history"]
        self.best_val, self.best_epoch, self.bad_epochs = s["best"]
        self.best_state = s["best_state"]
        self.resumes = s["resumes"] + 1
        self.started = s["started"]
        self.measured = s["measured"]

    # ---------------------------------------------------------------------------------------
    def fit(self) -> Dict[str, Any]:
        cfg = self.cfg
        self.setup()
        if cfg.mode == "benchmark":
            return self.benchmark()
        saved = None
        if cfg.checkpoint:
            try:
                saved = ckpt.load(self.ckpt_path)
            except ckpt.CheckpointError as e:
                # never resume from numbers that cannot be trusted: set the file aside (for a
                # post-mortem), say so in the log and the summary, and train from epoch 1
                aside = self.ckpt_path.with_name(self.ckpt_path.name + ".corrupt")
                os.replace(self.ckpt_path, aside)
                self.discarded = f"{e}; set aside as {aside.name}, trained from epoch 1"
                self.say(f"warning: {self.discarded}")
        if saved is not None:
            self.restore(saved)
            self.say(f"resuming after epoch {len(self.history)} from {self.ckpt_path}")
        mirrored = self.tracker.mirrored_epochs() if self.history else set()
        self.tracker.restart_metrics(self.history)  # exactly the checkpointed epochs, none twice
        self.tracker.start_wandb(resumed=saved is not None)
        for row in self.history:  # checkpointed, but W&B never got it (killed before it was sent or
            if row["epoch"] not in mirrored:  # while wandb's service still buffered it): send it now
                self.tracker.mirror(row)
        status, reason = R.FINISHED, None
        monitor = R.val_key(self.monitored.name)
        for epoch in range(len(self.history) + 1, cfg.epochs + 1):
            row = self.train_epoch(epoch)
            if row["train_loss"] is not None and not math.isfinite(row["train_loss"]):
                status, reason = R.DIVERGED, f"non-finite training loss in epoch {epoch}"
                self.history.append(row)
                self.tracker.log(row)
                self.say(reason)
                break
            val = self.evaluate("val")
            row.update({R.val_key(k): v for k, v in val.items() if k != "time"}, eval_time=val["time"])
            self.step.epoch_end(val.get("loss"))  # a family may validate without a loss (a GAN)
            stop = self.early_stopping(epoch, row[monitor])
            self.history.append(row)
            if cfg.checkpoint:  # before logging: a kill between the two loses no logged epoch
                ckpt.save(self.ckpt_path, self.state())
            self.tracker.log(row)
            self.report(row)
            if stop:
                status, reason = R.EARLY_STOPPED, (f"no {monitor} gain for {self.reg.patience} epochs; "
                                                   f"best at epoch {self.best_epoch}")
                break
        test, final = None, {}
        if status != R.DIVERGED:
            if self.best_state is not None:  # early stopping tests the best epoch's weights
                self.model.load_state_dict(self.best_state)
            test = self.evaluate("test")
            if self.problem.final is not None:
                final = self.problem.final(self.model, self.autocast, self.out) or {}
            if cfg.save_weights and self.task.trains:  # what later evaluations (attacks, feature spaces) load by run id
                artifacts.save_weights(self.out, self.run_id, cfg, self.problem.build, self.model)
        summary = self.summary(status, reason=reason, test=test, **final)
        if cfg.checkpoint and self.ckpt_path.exists():
            self.ckpt_path.unlink()  # done: summary.json is the record; checkpoints are large
        return summary

    def benchmark(self) -> Dict[str, Any]:
        """mode benchmark: time this trainer's own step and its model's inference (dl2bench/bench.py);
        the record is a training run's (config, one metrics row per repeat, summary), nothing
        checkpointed: a rerun measures afresh."""
        from ..bench import describe, run_benchmark

        self.tracker.restart_metrics([])
        self.tracker.start_wandb(resumed=False)
        figures, rows = run_benchmark(self, self.between_repeats)
        for row in rows:
            self.tracker.log(row)
        self.say(describe(figures))
        return self.summary(R.FINISHED, reason=None, **figures)

    def early_stopping(self, epoch: int, value: float) -> bool:
        if self.monitored.better(value, self.best_val):
            self.best_val, self.best_epoch, self.bad_epochs = value, epoch, 0
            if self.reg.patience:
                self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}
            return False
        self.bad_epochs += 1
        return bool(self.reg.patience) and self.bad_epochs >= self.reg.patience

    # ---------------------------------------------------------------------------------------
    def train_epoch(self, epoch: int) -> Dict[str, Any]:
        cfg, dev, p, step = self.cfg, self.device, self.problem, self.step
        self.model.train()
        steps = len(p.train_batches)
        bar = self._bar(epoch, steps)
        losses: List[torch.Tensor] = []  # each batch's mean data loss, summed once per epoch
        sizes: List[int] = []  # a task's step may return no loss (a DQN filling its buffer): not counted
        sums: Dict[str, torch.Tensor] = {}  # the task's stats, over every `every`-th batch
        every = cfg.train_stats_every
        samples, detail_samples = 0, 0
        data_time = 0.0
        warm_at, warm_samples = None, 0
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        batches = iter(p.train_batches.iterate(self.data_gen))
        synchronize(dev)
        t0 = time.perf_counter()
        for i in range(steps):
            td = time.perf_counter()
            batch = next(batches)
            data_time += time.perf_counter() - td  # host time only: device work stays queued
            detail = i % every == 0
            data_loss, n, stats = step(batch, detail)
            if data_loss is not None:
                losses.append(data_loss.detach())  # a view, not a kernel: cheaper than adding up
                sizes.append(n)
            samples += n
            if detail:
                detail_samples += n
                for k, v in stats.items():
                    if k in sums:
                        sums[k].add_(v)
                    else:
                        sums[k] = v.clone()
            if not self.warm and i + 1 == min(cfg.warmup_steps, steps - 1):
                synchronize(dev)  # throughput counts from here: warm-up excluded
                warm_at, warm_samples = time.perf_counter(), samples
                self.warm = True
            if ((i + 1) % NAN_CHECK_EVERY == 0 and losses
                    and not torch.isfinite(torch.stack(losses[-NAN_CHECK_EVERY:]).sum()).item()):
                break  # diverged: no point finishing the epoch
            if bar is not None:
                bar.update()
        synchronize(dev)
        t1 = time.perf_counter()
        if bar is not None:
            bar.close()
        if warm_at is None:
            warm_at, warm_samples = t0, 0
        if dev.type == "cuda":
            peak = torch.cuda.max_memory_allocated(dev) / 2**20
        else:  # Linux reports KiB; the process high-water mark, not per epoch
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        self.measured[0] += samples - warm_samples
        self.measured[1] += t1 - warm_at
        row = {"epoch": epoch, "lr": step.lr, "train_time": t1 - t0, "data_time": data_time,
               "samples_per_s": (samples - warm_samples) / max(t1 - warm_at, 1e-9),
               "peak_mem_mb": peak,
               "train_loss": ((torch.stack(losses).float() @ torch.tensor(sizes, dtype=torch.float32, device=dev)).item()
                              / sum(sizes)) if losses else None}
        for k, v in sums.items():
            row[R.train_key(k)] = v.item() / detail_samples
        row.update(step.epoch_metrics())  # what a task counts its own way (per episode, per update)
        return row

    def evaluate(self, split: str) -> Dict[str, float]:
        self.model.eval()
        sw = Stopwatch(self.device)
        with sw:
            out = self.problem.evaluate(self.train_model, self.problem.eval_splits[split], self.autocast)
        self.model.train()
        return {**out, "time": sw.total}

    # ---------------------------------------------------------------------------------------
    def _bar(self, epoch: int, steps: int):
        if self.progress != "bar":
            return None
        from tqdm import tqdm

        return tqdm(total=steps, desc=f"epoch {epoch}/{self.cfg.epochs}", leave=False, mininterval=0.5)

    def report(self, row: Dict[str, Any]) -> None:
        if self.progress == "none":
            return
        shown = [k for k in row if k.startswith(("train_", "val_")) and k != "train_time"]
        values = " ".join(f"{k} {row[k]:.4f}" for k in shown if isinstance(row[k], (int, float)))
        lr = f" lr {row['lr']:.3g}" if row.get("lr") is not None else ""
        self.say(f"epoch {row['epoch']}/{self.cfg.epochs} {values}{lr} train {row['train_time']:.1f}s "
                 f"({row['samples_per_s']:.0f} samples/s) eval {row['eval_time']:.1f}s")

    def summary(self, status: str, reason: Optional[str] = None, test: Optional[Dict] = None,
                **extra: Any) -> Dict[str, Any]:
        """The run's outcome, flat (one row of the report's table); keys named by dl2bench.record."""
        h = self.history
        mon = self.monitored.name
        done = [r for r in h if R.val_key(mon) in r]
        train_time = sum(r["train_time"] for r in h)
        headline = self.task.metric(self.task.headline)
        s: Dict[str, Any] = {
            "run_id": self.run_id, "status": status, "reason": reason, "schema": R.SCHEMA_VERSION,
            "task": self.cfg.task, "family": self.task.family,
            "metric": R.test_key(headline.name), "goal": headline.goal,
            "headline": headline.name, "monitor": mon,
            "metrics": {m.name: m.to_dict() for m in self.metrics},
            "epochs_completed": len(done),
            R.best_val_key(mon): (self.best_val if done and math.isfinite(self.best_val) else None),
            "best_epoch": self.best_epoch or None,
            "final_train_loss": h[-1]["train_loss"] if h else None,
        }
        for m in self.metrics:
            if "val" in m.splits:
                s[R.final_val_key(m.name)] = done[-1].get(R.val_key(m.name)) if done else None
        for m in self.metrics:
            if "test" in m.splits:
                s[R.test_key(m.name)] = test.get(m.name) if test else None
        s.update({
            "test_eval_time": test["time"] if test else None,
            "train_time_total": train_time,
            "eval_time_total": sum(r.get("eval_time", 0.0) for r in h),
            # all samples over all train time after the warm-up steps
            "samples_per_s": self.measured[0] / self.measured[1] if self.measured[1] else None,
            "started_at": self.started,
            "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "resumes": self.resumes,
            "checkpoint_discarded": self.discarded,
        })
        cum = 0.0
        reached: Dict[float, tuple] = {}
        for r in h:
            cum += r["train_time"]
            for t in self.task.targets:
                v = r.get(R.val_key(mon))
                if t not in reached and v is not None and self.monitored.reached(v, t):
                    reached[t] = (cum, r["epoch"])
        for t in self.task.targets:
            time_key, epochs_key = R.target_keys(mon, t)
            s[time_key], s[epochs_key] = reached.get(t, (None, None))
        s.update(self.facts)
        s.update(extra)
        return s
