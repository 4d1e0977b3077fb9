"""The only training loop: `run(config, out_dir) -> summary`, for every task family.

It knows a task only through its declarations (metrics, headline, monitored metric, targets)
and its Problem (batches, evaluate, and either a loss for the default step or a step of its own),
so best epoch, early stopping, targets and the summary follow whatever the task declares.

`run` sets the run up (prepare.py: a Prepared run), then trains it (`Trainer.fit`) or, in
benchmark mode, times it (bench.py, which reads the Prepared run, never the Trainer); either way
the Trainer writes the record.
"""
from __future__ import annotations

import errno
import math
import os
import resource
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Union

import torch

from .. import runs
from .. import checkpoint as ckpt
from .. import record as R
from .. import media
from .. import wandb_view as V
from ..config import ConfigError, RunConfig
from ..families import TASKS
from ..timing import Stopwatch, synchronize
from ..track import Tracker
from . import bench
from .prepare import Prepared, prepare

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


def run(config: Union[RunConfig, Mapping[str, Any]], out_dir: Union[str, Path], *,
        between_repeats: Optional[Callable[[str, int, int], None]] = None) -> Dict[str, Any]:
    """Train one config into out_dir (resuming from its checkpoint if there is one), or time it
    in benchmark mode; returns the summary also written to out_dir/summary.json. Bad configs
    raise ConfigError before anything is written; errors during set-up or training are recorded
    as status 'failed'. `between_repeats(phase, repeat, calls)` (benchmark mode only) runs outside
    the clocks around every timed repeat (bench.benchmark): a benchmark script interleaves its
    reference loop there (tests/benchmarks/bench_mode.py)."""
    cfg = config if isinstance(config, RunConfig) else RunConfig.from_dict(config)
    cfg = cfg.resolve()
    if between_repeats is not None and cfg.mode != "benchmark":
        raise ValueError(f"between_repeats: only a benchmark-mode run has repeats (mode is {cfg.mode!r})")
    device = resolve_device(cfg)
    run_id = cfg.run_id()
    try:
        tracker = Tracker(cfg, Path(out_dir), run_id)
    except OSError as e:  # a full or read-only disk before anything ran: one clear error
        raise RecordError(f"run {run_id}: cannot write its record in {out_dir} ({e.strerror or e})") from None
    trainer = Trainer(cfg, device, tracker, run_id)
    try:
        prepared = trainer.setup()
        if cfg.mode == "benchmark":
            summary = trainer.benchmark(prepared, between_repeats)
        else:
            summary = trainer.fit(prepared)
    except Exception as e:  # noqa: BLE001 - recorded, so a sweep shows why the run failed
        error = f"{type(e).__name__}: {e}"
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            error += f"; {trainer.kept()} Free space and run it again to resume."
        summary = trainer.summary(R.FAILED, error=error, traceback=traceback.format_exc())
        trainer.say(f"run {run_id} failed: {error}")
    try:
        tracker.finish(summary, media=trainer.media(summary), model=trainer.weights)
    except OSError as e:  # a full disk may refuse even the small summary: say so without a traceback
        raise RecordError(f"run {run_id}: cannot write {Path(out_dir) / runs.SUMMARY} ({e.strerror or e}); "
                          f"{trainer.kept()} Free space and run it again to resume.") from None
    return summary


class RecordError(OSError):
    """The run's own record could not be written (a full disk); what is kept is said."""


class Trainer:
    """State of one run and its record; `fit` is the loop, over a Prepared run (`setup`)."""

    def __init__(self, cfg: RunConfig, device: torch.device, tracker: Tracker, run_id: str):
        self.cfg, self.device, self.tracker, self.run_id = cfg, device, tracker, run_id
        self.out = tracker.out
        self.ckpt_path = self.out / runs.CHECKPOINT
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
        self.prepared: Optional[Prepared] = None  # what fit trains
        self.weights: Optional[Path] = None  # the model.pt this run wrote (its W&B model artifact)
        self.progress = cfg.progress
        if self.progress == "auto":
            self.progress = "bar" if sys.stderr.isatty() else "log"

    def say(self, msg: str) -> None:
        if self.progress != "none":
            print(f"[dl2bench {self.run_id}] {msg}", flush=True)

    # ---------------------------------------------------------------------------------------
    def setup(self) -> Prepared:
        """Set the run up (prepare.py): what training and benchmark mode both start from. Its
        facts, and the metrics its problem declares, are this run's record from then on."""
        def declared(metrics) -> None:
            self.metrics = metrics

        return prepare(self.cfg, self.device, self.task, self.facts, on_metrics=declared)

    # the prepared run's pieces, as the loop reads them
    model = property(lambda self: self.prepared.model)
    train_model = property(lambda self: self.prepared.forward_model)  # compiled when compile is on
    step = property(lambda self: self.prepared.step)
    problem = property(lambda self: self.prepared.problem)
    autocast = property(lambda self: self.prepared.autocast)
    data_gen = property(lambda self: self.prepared.data_gen)
    reg = property(lambda self: self.prepared.reg)

    def media(self, summary: Dict[str, Any]) -> List[Any]:
        """The family's pictures and tables for W&B (dl2bench.media), built only when W&B is on;
        one that cannot be built is said and left out: the run and its record stand without it."""
        if self.tracker.wb is None or summary.get("status") == R.FAILED:
            return []
        try:
            return media.build(self.task.family, self.out, summary)
        except Exception as e:  # noqa: BLE001
            self.say(f"warning: no W&B pictures for this run ({type(e).__name__}: {e})")
            return []

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
    def fit(self, prepared: Prepared) -> Dict[str, Any]:
        cfg = self.cfg
        self.prepared = prepared
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
        self.tracker.start_wandb(resumed=saved is not None, job_type=V.job_type(cfg.mode, self.task.trains),
                                 declared=[{**m.to_dict(), "name": m.name} for m in self.metrics],
                                 uses=self.problem.uses)
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
                self.weights = runs.save_weights(self.out, self.run_id, cfg.to_dict(), cfg.recipe(), self.problem.build,
                                                 self.model)
        summary = self.summary(status, reason=reason, test=test, **final)
        if cfg.checkpoint and self.ckpt_path.exists():
            self.ckpt_path.unlink()  # done: summary.json is the record; checkpoints are large
        return summary

    def benchmark(self, prepared: Prepared,
                  between_repeats: Optional[Callable[[str, int, int], None]] = None) -> Dict[str, Any]:
        """mode benchmark: time the prepared run's own step and its model's inference (bench.py);
        the record is a training run's (config, one metrics row per repeat, summary), nothing
        checkpointed: a rerun measures afresh."""
        self.tracker.restart_metrics([])
        self.tracker.start_wandb(resumed=False, job_type="benchmark")
        figures, rows = bench.benchmark(prepared, between_repeats)
        for row in rows:
            self.tracker.log(row)
        self.say(bench.describe(figures))
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
            out = self.problem.evaluate(self.train_model, split, self.autocast)
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
