"""What a number in the report is: the metrics each task declares (read from its runs' summaries,
or for schema-1 summaries from the task registry) and the display `Unit` every axis label, table
header and formatted value derives from them. Nothing here knows a family's metrics by name: a
column such as `test_mse` is read as split "test" + declared metric "mse"."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, Mapping, Optional, Tuple

GOALS = ("maximize", "minimize")
FRACTION = (0.0, 1.0)
ANY = (-math.inf, math.inf)


@dataclass(frozen=True)
class Unit:
    label: str  # what it is, for a reader
    unit: str  # "" for a pure count
    scale: float = 1.0  # stored value x scale = shown value
    digits: int = 2
    bounds: Tuple[float, float] = (0.0, math.inf)  # the stored value's possible range

    def axis(self) -> str:
        return f"{self.label} ({self.unit})" if self.unit else self.label


# summary/curve column prefixes -> how a reader says the split (longest first: best_val_ before val_)
SPLITS: Tuple[Tuple[str, str], ...] = (
    ("best_val_", "best validation"), ("final_val_", "final validation"), ("final_train_", "final training"),
    ("test_", "test"), ("val_", "validation"), ("train_", "training"))
TARGET = re.compile(r"(time|epochs)_to_(val|train|test)_(.+)_([0-9.]+)$")


def cap(s: str) -> str:
    """First letter upper case, the rest as it is ('test MSE' -> 'Test MSE', not 'Test mse')."""
    return s[:1].upper() + s[1:]


def goal_word(goal: str) -> str:
    """'higher is better' / 'lower is better'."""
    return "lower is better" if goal == "minimize" else "higher is better"


@dataclass(frozen=True)
class MetricDecl:
    """One declared metric (mirrors dl2bench.families.Metric.to_dict())."""

    name: str
    goal: str = "maximize"
    unit: str = ""
    label: str = ""
    percent: bool = False
    splits: Tuple[str, ...] = ("train", "val", "test")
    mixed: bool = False  # runs of the task declare it differently (e.g. the loss of an MSE and a BCE run)

    @classmethod
    def parse(cls, name: str, d: Any) -> Optional["MetricDecl"]:
        """From a summary's `metrics` entry; None for anything that is not a mapping with a goal."""
        if not hasattr(d, "get"):
            return None
        goal = str(d.get("goal") or "").lower()
        if goal not in GOALS:
            return None
        splits = d.get("splits")
        splits = tuple(str(s) for s in splits) if isinstance(splits, (list, tuple)) and splits else cls.splits
        return cls(name=str(name), goal=goal, unit=str(d.get("unit") or ""), label=str(d.get("label") or name),
                   percent=bool(d.get("percent")), splits=splits)

    @property
    def said(self) -> str:
        """The full label, as declared ('AUROC, normal class vs the rest (score: reconstruction MSE)')."""
        return self.label or self.name

    @property
    def short(self) -> str:
        """The label up to its first qualification, for axes and titles ('AUROC')."""
        cut = re.split(r",\s| \(", self.said, maxsplit=1)[0].strip()
        return cut or self.said

    def unit_for(self, split: str, digits: int = 3) -> Unit:
        """The Unit of this metric on `split` ('test', 'validation', ...)."""
        if self.percent:
            return Unit(f"{split} {self.short}", "%", 100, 2, FRACTION)
        if self.name == "loss":  # every task's objective: 'validation loss (cross-entropy, nats)'
            what = re.sub(r"^[\w -]*\bloss:\s*", "", self.said)  # 'training loss: MSE' -> 'MSE'
            what = re.split(r" \(", what, maxsplit=1)[0]
            parts = [p for p in (what if what != "loss" else "", self.unit) if p]
            if len(parts) == 2 and parts[1].lower() in parts[0].lower():
                parts = parts[:1]
            return Unit(f"{split} loss", ", ".join(parts), 1, digits, ANY)
        u = "" if self.unit.lower() in self.short.lower() else self.unit
        return Unit(f"{split} {self.short}", u, 1, digits, ANY)

    def to_dict(self) -> Dict[str, Any]:
        return {"goal": self.goal, "unit": self.unit, "label": self.label, "percent": self.percent,
                "splits": list(self.splits)}


@dataclass
class TaskDecl:
    """What a task's runs declare: family, headline (the test metric a sweep ranks by), monitor
    (the validation metric of best epoch, early stopping and targets) and every metric."""

    task: str
    family: str = "unknown"
    headline: Optional[str] = None
    monitor: Optional[str] = None
    metrics: Dict[str, MetricDecl] = field(default_factory=dict)
    source: str = "none"  # summary | registry | none
    schema: Optional[int] = None

    @property
    def known(self) -> bool:
        return bool(self.metrics)

    def metric(self, name: Optional[str]) -> Optional[MetricDecl]:
        return self.metrics.get(name) if name else None

    @property
    def default_metric(self) -> Optional[Tuple[str, str]]:
        """(summary column, goal) a sweep ranks by unless it says otherwise: test_<headline>."""
        m = self.metric(self.headline)
        if m is None:
            return None
        split = "test" if "test" in m.splits else "best_val"
        return f"{split}_{m.name}", m.goal

    @property
    def fallback_metric(self) -> Optional[Tuple[str, str]]:
        """The validation column when no run has the test value: best_val_<monitor>."""
        m = self.metric(self.monitor or self.headline)
        return (f"best_val_{m.name}", m.goal) if m is not None else None

    def split_metric(self, col: str) -> Optional[Tuple[str, MetricDecl]]:
        """'final_val_mse' -> ('final validation', mse's declaration); None if not a declared metric."""
        for prefix, split in SPLITS:
            if col.startswith(prefix) and col[len(prefix):] in self.metrics:
                return split, self.metrics[col[len(prefix):]]
        return None

    def goal_of(self, col: str) -> Optional[str]:
        sm = self.split_metric(col)
        return sm[1].goal if sm else None

    def curve_metrics(self) -> Tuple[str, ...]:
        """Per-epoch columns worth a learning curve: the monitored metric, the headline (where it is
        measured per epoch) and the loss, on the validation split; and the gradient norm where a
        task logs it (on training batches: vanishing and exploding gradients are seen there)."""
        names = dict.fromkeys(n for n in (self.monitor, self.headline, "loss")
                              if n and n in self.metrics and not self.metrics[n].mixed)
        out = tuple(f"val_{n}" for n in names if "val" in self.metrics[n].splits)
        g = self.metrics.get("grad_norm")
        return out + (("train_grad_norm",) if g is not None and not g.mixed and "train" in g.splits else ())

    def target_label(self, col: str) -> Optional[str]:
        """time_to_val_acc_0.80 -> 'val_acc ≥ 80%'; time_to_val_mse_0.03 -> 'val_mse ≤ 0.03'."""
        m = TARGET.match(col)
        if not m or m.group(3) not in self.metrics:
            return None
        d, t = self.metrics[m.group(3)], float(m.group(4))
        what = f"{m.group(2)}_{d.name}"
        op = "≤" if d.goal == "minimize" else "≥"
        return f"{what} {op} {t * 100:g}%" if d.percent else f"{what} {op} {t:g}"

    def unit(self, col: str, digits: int = 3) -> Optional[Unit]:
        """The Unit of a declared metric's column, of a target column, or None."""
        sm = self.split_metric(col)
        if sm:
            return sm[1].unit_for(sm[0], digits)
        label = self.target_label(col)
        if label:
            if col.startswith("time_"):
                return Unit(f"time to {label}", "s", 1, 1)
            return Unit(f"epochs to {label}", "", 1, 1)
        return None

    def sentence(self) -> str:
        """'headline test accuracy (higher is better), monitored on validation accuracy'."""
        h = self.metric(self.headline)
        if h is None:
            return "no declared metrics"
        out = f"{h.said} ({goal_word(h.goal)})"
        mon = self.metric(self.monitor)
        if mon is not None and mon.name != h.name:
            out += f"; best epoch and early stopping follow the validation {mon.said} ({goal_word(mon.goal)})"
        return out


def parse_summary(task: str, summary: Mapping[str, Any], schema: int) -> Optional[TaskDecl]:
    """A schema-2 (or later) summary's declarations; None when it declares nothing readable."""
    raw = summary.get("metrics")
    items: Iterable = raw.items() if hasattr(raw, "items") else ()
    metrics = {}
    for name, d in items:
        m = MetricDecl.parse(name, d)
        if m is not None:
            metrics[m.name] = m
    if not metrics:
        return None
    headline = summary.get("headline")
    headline = str(headline) if headline in metrics else None
    if headline is None:  # the summary's ranking column names it: metric = "test_<headline>"
        col = str(summary.get("metric") or "")
        headline = next((n for n in metrics if col in (f"test_{n}", f"val_{n}")), None)
    monitor = summary.get("monitor")
    monitor = str(monitor) if monitor in metrics else headline
    return TaskDecl(task=task, family=str(summary.get("family") or "unknown"), headline=headline,
                    monitor=monitor, metrics=metrics, source="summary", schema=schema)


def from_registry(task: str) -> Optional[TaskDecl]:
    """The task registry's declarations (for summaries that predate declared metrics, and for
    runs without a summary yet); None if the library or the task is unknown here."""
    try:
        from dl2bench.families import TASKS

        t = TASKS[task]()
    except Exception:  # noqa: BLE001 - a renamed task, or the report run without the library
        return None
    metrics = {}
    for m in t.metrics:
        d = m.to_dict()
        metrics[m.name] = MetricDecl(m.name, d["goal"], d["unit"], d["label"], bool(d["percent"]),
                                     tuple(d["splits"]))
    return TaskDecl(task=task, family=str(t.family), headline=t.headline, monitor=t.monitor or t.headline,
                    metrics=metrics, source="registry")
