"""The only training loop: `run(config, out_dir) -> summary`, for every task.

    python -m dl2bench.train --task fashion_mnist --model mlp --optimizer adam --lr 1e-3 --epochs 3 --out runs/try
"""
from __future__ import annotations

import contextlib
import math
import random
import resource
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import torch

from . import checkpoint as ckpt
from . import env as E
from .config import ConfigError, RunConfig
from .models import count_parameters, flops_per_sample
from .optim import OPTIMIZERS, LRController
from .regularizers import REGULARIZERS
from .tasks import TASKS
from .timing import Stopwatch, synchronize
from .track import Tracker

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
    tracker = Tracker(cfg, Path(out_dir), run_id)
    trainer = Trainer(cfg, device, tracker, run_id)
    try:
        summary = trainer.fit()
    except Exception as e:  # noqa: BLE001 - recorded, so a sweep shows why the run failed
        summary = trainer.summary("failed", error=f"{type(e).__name__}: {e}",
                                  traceback=traceback.format_exc())
        trainer.say(f"run {run_id} failed: {type(e).__name__}: {e}")
    tracker.finish(summary)
    return summary


class Trainer:
    """State of one run; `fit` is the loop."""

    def __init__(self, cfg: RunConfig, device: torch.device, tracker: Tracker, run_id: str):
        self.cfg, self.device, self.tracker, self.run_id = cfg, device, tracker, run_id
        self.out = tracker.out
        self.ckpt_path = self.out / "checkpoint.pt"
        self.task = TASKS[cfg.task]()
        self.history: List[Dict[str, Any]] = []
        self.facts: Dict[str, Any] = {}
        self.started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.resumes = 0
        self.best_val = -math.inf
        self.best_epoch = 0
        self.bad_epochs = 0
        self.best_state: Optional[Dict[str, torch.Tensor]] = None
        self.warm = False  # the first warmup_steps of a run (or of a resumed run) are warm-up
        self.measured = [0, 0.0]  # samples and seconds after warm-up, over all epochs
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
        random.seed(cfg.seed)
        torch.manual_seed(cfg.seed)  # model init and dropout draw from here
        self.data_gen = torch.Generator().manual_seed(cfg.seed + 1)  # batch order and augmentation

        self.reg = REGULARIZERS[cfg.regularizer](cfg)
        self.problem = self.task.prepare(cfg, device, self.reg)
        self.model = self.problem.model
        self.facts.update(E.describe(device, self.threads))
        self.facts.update(params=count_parameters(self.model),
                          flops_per_sample=flops_per_sample(self.model, self.problem.in_shape, device),
                          data_source=self.problem.source, n_train=self.problem.n_train,
                          steps_per_epoch=len(self.problem.train_batches))
        self.train_model = torch.compile(self.model) if cfg.compile else self.model
        self.opt = OPTIMIZERS[cfg.optimizer](self.model.parameters(), cfg)
        self.sched = LRController(self.opt, cfg, len(self.problem.train_batches))
        amp = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.precision)
        self.amp = amp is not None
        self.autocast = (lambda: torch.autocast(device.type, dtype=amp)) if amp else contextlib.nullcontext
        self.scaler = torch.amp.GradScaler("cuda") if cfg.precision == "fp16" else None

    def state(self) -> Dict[str, Any]:
        return {"model": self.model.state_dict(), "opt": self.opt.state_dict(),
                "sched": self.sched.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler else None,
                "rng": ckpt.rng_state(self.data_gen), "history": self.history,
                "best": (self.best_val, self.best_epoch, self.bad_epochs), "best_state": self.best_state,
                "resumes": self.resumes, "started": self.started, "run_id": self.run_id,
                "measured": self.measured}

    def restore(self, s: Dict[str, Any]) -> None:
        if s.get("run_id") != self.run_id:
            raise RuntimeError(f"{self.ckpt_path} belongs to run {s.get('run_id')}, not {self.run_id}; "
                               "remove it or use another out_dir")
        self.model.load_state_dict(s["model"])
        self.opt.load_state_dict(s["opt"])
        self.sched.load_state_dict(s["sched"])
        if self.scaler and s["scaler"]:
            self.scaler.load_state_dict(s["scaler"])
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
        saved = ckpt.load(self.ckpt_path) if cfg.checkpoint else None
        if saved is not None:
            self.restore(saved)
            self.say(f"resuming after epoch {len(self.history)} from {self.ckpt_path}")
        self.tracker.restart_metrics(self.history)  # exactly the checkpointed epochs, none twice
        self.tracker.start_wandb(resumed=saved is not None)
        status, reason = "finished", None
        for epoch in range(len(self.history) + 1, cfg.epochs + 1):
            row = self.train_epoch(epoch)
            if not math.isfinite(row["train_loss"]):
                status, reason = "diverged", f"non-finite training loss in epoch {epoch}"
                self.history.append(row)
                self.tracker.log(row)
                self.say(reason)
                break
            val = self.evaluate("val")
            row.update(val_loss=val["loss"], val_acc=val["acc"], eval_time=val["time"])
            self.sched.epoch_end(val["loss"])
            stop = self.early_stopping(epoch, val["acc"])
            self.history.append(row)
            if cfg.checkpoint:  # before logging: a kill between the two loses no logged epoch
                ckpt.save(self.ckpt_path, self.state())
            self.tracker.log(row)
            self.report(row)
            if stop:
                status, reason = "early_stopped", (f"no val_acc gain for {self.reg.patience} epochs; "
                                                   f"best at epoch {self.best_epoch}")
                break
        test = None
        if status != "diverged":
            if self.best_state is not None:  # early stopping tests the best epoch's weights
                self.model.load_state_dict(self.best_state)
            test = self.evaluate("test")
        summary = self.summary(status, reason=reason, test=test)
        if cfg.checkpoint and self.ckpt_path.exists():
            self.ckpt_path.unlink()  # done: summary.json is the record; checkpoints are large
        return summary

    def early_stopping(self, epoch: int, val_acc: float) -> bool:
        if val_acc > self.best_val:
            self.best_val, self.best_epoch, self.bad_epochs = val_acc, epoch, 0
            if self.reg.patience:
                self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}
            return False
        self.bad_epochs += 1
        return bool(self.reg.patience) and self.bad_epochs >= self.reg.patience

    # ---------------------------------------------------------------------------------------
    def train_epoch(self, epoch: int) -> Dict[str, Any]:
        cfg, dev, p = self.cfg, self.device, self.problem
        model, opt, sched, scaler, clip = self.train_model, self.opt, self.sched, self.scaler, self.reg.clip_norm
        model.train()
        steps = len(p.train_batches)
        bar = self._bar(epoch, steps)
        losses: List[torch.Tensor] = []  # each batch's mean data loss, summed once per epoch
        sizes: List[int] = []
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
            if self.amp:
                with self.autocast():
                    objective, data_loss, n, stats = p.loss(model, batch, detail)
            else:  # no context manager at all: on a tiny CPU model every microsecond is ~0.1%
                objective, data_loss, n, stats = p.loss(model, batch, detail)
            opt.zero_grad(set_to_none=True)
            if scaler is None:
                objective.backward()
                if clip:
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)
                opt.step()
            else:
                scaler.scale(objective).backward()
                if clip:
                    scaler.unscale_(opt)
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)
                scaler.step(opt)
                scaler.update()
            sched.step()
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
            if (i + 1) % NAN_CHECK_EVERY == 0 and not torch.isfinite(torch.stack(losses[-NAN_CHECK_EVERY:]).sum()).item():
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
        row = {"epoch": epoch, "lr": sched.lr, "train_time": t1 - t0, "data_time": data_time,
               "samples_per_s": (samples - warm_samples) / max(t1 - warm_at, 1e-9),
               "peak_mem_mb": peak,
               "train_loss": (torch.stack(losses).float() @ torch.tensor(sizes, dtype=torch.float32, device=dev)).item() / samples}
        for k, v in sums.items():
            row["train_acc" if k == "correct" else f"train_{k}"] = v.item() / detail_samples
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
        self.say(f"epoch {row['epoch']}/{self.cfg.epochs} train_loss {row['train_loss']:.4f} "
                 f"train_acc {row.get('train_acc', float('nan')):.4f} val_loss {row['val_loss']:.4f} "
                 f"val_acc {row['val_acc']:.4f} lr {row['lr']:.3g} train {row['train_time']:.1f}s "
                 f"({row['samples_per_s']:.0f} samples/s) eval {row['eval_time']:.1f}s")

    def summary(self, status: str, reason: Optional[str] = None, test: Optional[Dict] = None,
                **extra: Any) -> Dict[str, Any]:
        """The run's outcome, flat (one row of the report's table)."""
        h = self.history
        done = [r for r in h if "val_acc" in r]
        train_time = sum(r["train_time"] for r in h)
        s: Dict[str, Any] = {
            "run_id": self.run_id, "status": status, "reason": reason,
            "task": self.cfg.task, "metric": self.task.metric, "goal": self.task.goal,
            "epochs_completed": len(done),
            "best_val_acc": max((r["val_acc"] for r in done), default=None),
            "best_epoch": self.best_epoch or None,
            "final_val_acc": done[-1]["val_acc"] if done else None,
            "final_val_loss": done[-1]["val_loss"] if done else None,
            "final_train_loss": h[-1]["train_loss"] if h else None,
            "test_acc": test["acc"] if test else None,
            "test_loss": test["loss"] if test else None,
            "test_eval_time": test["time"] if test else None,
            "train_time_total": train_time,
            "eval_time_total": sum(r.get("eval_time", 0.0) for r in h),
            # all samples over all train time after the warm-up steps
            "samples_per_s": self.measured[0] / self.measured[1] if self.measured[1] else None,
            "started_at": self.started,
            "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "resumes": self.resumes,
        }
        cum = 0.0
        reached: Dict[float, tuple] = {}
        for r in h:
            cum += r["train_time"]
            for t in self.task.targets:
                if t not in reached and r.get("val_acc", -1) >= t:
                    reached[t] = (cum, r["epoch"])
        for t in self.task.targets:
            s[f"time_to_val_acc_{t:.2f}"] = reached.get(t, (None, None))[0]
            s[f"epochs_to_val_acc_{t:.2f}"] = reached.get(t, (None, None))[1]
        s.update(self.facts)
        s.update(extra)
        return s


# ---------------------------------------------------------------------------------------------
# command line

def parse_args(argv: Sequence[str]) -> tuple:
    """`--key value` and `--key=value` (what a W&B agent passes) over the config's keys, plus --out."""
    keys = RunConfig.keys()
    values: Dict[str, str] = {}
    out = None
    args = list(argv)
    i = 0
    while i < len(args):
        a = args[i]
        if not a.startswith("--"):
            raise ConfigError(f"unexpected argument {a!r}; expected --key value or --key=value")
        if "=" in a:
            key, value = a[2:].split("=", 1)
        else:
            if i + 1 >= len(args):
                raise ConfigError(f"--{a[2:]} needs a value")
            key, value = a[2:], args[i + 1]
            i += 1
        i += 1
        key = key.replace("-", "_")
        if key in ("out", "out_dir"):
            out = value
        elif key not in keys:
            raise ConfigError(f"unknown key --{key}; valid keys: --out, " + ", ".join(f"--{k}" for k in keys))
        else:
            values[key] = value
    return RunConfig.from_dict(values), out


def usage() -> str:
    lines = ["usage: python -m dl2bench.train [--key value | --key=value ...] --out DIR", "", "keys (default):"]
    for k, v in RunConfig().to_dict().items():
        lines.append(f"  --{k} ({'task default' if v is None else repr(v)})")
    lines.append("\nnames: python -m dl2bench list")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if any(a in ("-h", "--help") for a in argv):
        print(usage())
        return 0
    try:
        cfg, out = parse_args(argv)
        cfg = cfg.resolve()
        if out is None:
            out = str(Path("runs") / "single" / cfg.run_id())
        summary = run(cfg, out)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"status {summary['status']}; test_acc {summary.get('test_acc')}; best_val_acc "
          f"{summary.get('best_val_acc')} (epoch {summary.get('best_epoch')}); results in {out}")
    if summary["status"] == "failed":
        print(f"error: {summary.get('error')}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
