"""What every task family shares: the TASKS registry, the declarations a task makes (its metrics,
losses, config keys and known-good defaults) and the `Problem` it hands the one training loop.

The loop only ever talks to a Problem, so a family plugs in by building one:
- the default update (one optimizer, AMP, scaler, clipping) needs only `loss`;
- a family with other state (two networks and two optimizers, a replay buffer and a target
  network) supplies its own `step` (a `Step`); the loop then builds no optimizer, calls it once per
  batch and checkpoints its `state_dict()` with the rest;
- what one epoch is, is `len(train_batches)`: batches of a dataset, or N environment steps;
- an evaluation of trained weights trains nothing: `NoTraining` is its batches and its step.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, List, NamedTuple, Optional, Protocol, Tuple

from ..registry import Registry

if TYPE_CHECKING:
    import torch
    from torch import nn

# torch is imported inside the families' functions: listing and validating names (jobs/submit.py
# expanding 1,000 runs) must not pay torch's ~1.5 s import

TASKS = Registry("task")
# benchmark workloads (a task at a known-good setting and a budget): each family's workloads.py
WORKLOADS = Registry("workload")
SIZES = ("smoke", "laptop", "full")  # minutes on this machine, a 2-core laptop, a GPU node


class Key(NamedTuple):
    """One config key: its type, default, what it means, and (for family keys) checks."""

    type: Any
    default: Any
    doc: str
    family: Optional[str] = None  # set for keys a family declares; None for core keys
    choices: Tuple[Any, ...] = ()
    min: Optional[float] = None  # inclusive bounds, checked when the value is not None
    max: Optional[float] = None
    bookkeeping: bool = False  # where to find things, not what to compute: never in the run id
    factor: bool = True  # False: names another run (its id); reports group by that run's config instead


@dataclass(frozen=True)
class Metric:
    """A quantity a task reports: its direction, unit and how to read it."""

    name: str  # summary keys are derived from it (dl2bench.record)
    goal: str  # maximize | minimize
    unit: str = ""  # "nats", "MSE", "bits/dim", "" for a fraction
    label: str = ""  # for a reader: "accuracy", "mean IoU (foreground)"
    percent: bool = False  # a fraction shown as a percentage
    splits: Tuple[str, ...] = ("train", "val", "test")  # where it exists

    def to_dict(self) -> Dict[str, Any]:
        return {"goal": self.goal, "unit": self.unit, "label": self.label or self.name,
                "percent": self.percent, "splits": list(self.splits)}

    def better(self, a: float, b: float) -> bool:
        """a is strictly better than b."""
        return a > b if self.goal == "maximize" else a < b

    def reached(self, value: float, target: float) -> bool:
        return value >= target if self.goal == "maximize" else value <= target


# one allocation of a run: (the config key that sizes it, bytes, what it is)
Need = Tuple[str, float, str]
# a float32 weight held with its gradient and two Adam moments
PARAM_BYTES = 16


@dataclass(frozen=True)
class Augment:
    """Random crop after `pad` pixels of zero padding, plus horizontal flip where it makes sense;
    applied jointly to an image and its mask where the target is an image."""

    pad: int = 4
    flip: bool = True


@dataclass(frozen=True)
class Task:
    """A task's fixed facts; `prepare(task, cfg, device, reg)` builds its Problem."""

    name: str
    description: str
    family: str
    prepare: Callable[..., "Problem"]
    metrics: Tuple[Metric, ...]  # every one the task reports; one must be named "loss"
    headline: str  # the metric a sweep ranks by, evaluated on the test split
    monitor: Optional[str] = None  # the validation metric for best epoch, early stopping and
    # targets; None = the headline (a one-class task has no anomalies to validate on)
    losses: Tuple[str, ...] = ()  # values of config `loss`; the first is the default
    model_family: str = ""  # models registered with this family fit the task
    defaults: Dict[str, Any] = field(default_factory=dict)  # known-good settings for None config fields
    targets: Tuple[float, ...] = ()  # values of the monitored validation metric whose time/epochs-to-reach are recorded
    data: Any = None  # the family's dataset handle (e.g. a loader function)
    augment: Augment = Augment()
    check: Optional[Callable[[Any], None]] = None  # the family's own config checks (raise ConfigError)
    # defaults that depend on the config itself (an attack takes its model from the run it attacks):
    # (config dict) -> {key: value} for keys left None
    derive: Optional[Callable[[Dict[str, Any]], Dict[str, Any]]] = None
    trains: bool = True  # False: an evaluation of trained weights (epochs 0, nothing saved)
    evaluates: str = ""  # (trains False) the family of the runs it evaluates
    run_keys: Tuple[str, str] = ("", "")  # (trains False) the keys naming the evaluated run and where to find it
    # settings that do not apply to the task, as data: config key -> {value: why}. Validation refuses
    # them with the reason; a comparison across tasks (optimizers, regularisers) reads "n/a" from here
    refuses: Dict[str, Dict[Any, str]] = field(default_factory=dict)
    # (config) -> [(key, bytes, what)]: the largest allocations a run of this config will hold, each
    # with the key that sizes it; validation refuses a config whose total cannot fit (registries.py)
    memory: Optional[Callable[[Any], List["Need"]]] = None

    def refusal(self, key: str, value: Any) -> Optional[str]:
        """Why `key` = `value` does not apply to this task, or None if it may be set."""
        return self.refuses.get(key, {}).get(value)

    def metric(self, name: str) -> Metric:
        for m in self.metrics:
            if m.name == name:
                return m
        raise KeyError(f"task {self.name!r} declares no metric {name!r}; it has "
                       f"{', '.join(m.name for m in self.metrics)}")

    @property
    def monitored(self) -> Metric:
        return self.metric(self.monitor or self.headline)

    def __post_init__(self) -> None:
        names = [m.name for m in self.metrics]
        if "loss" not in names or self.headline not in names or (self.monitor and self.monitor not in names):
            raise ValueError(f"task {self.name!r}: metrics {names} must include 'loss', the headline "
                             f"{self.headline!r} and the monitored {self.monitor!r}")


@dataclass(frozen=True)
class Workload:
    """A benchmark problem: a task with its model and known-good settings, and a budget at each size.

    The known-good lr is the centre of the tuning grid; the budget is what every compared setting
    gets (epochs, environment steps, data sizes). The target on the task's monitored validation
    metric is, at every size, what the known-good setting itself reaches there (the median of its
    best values over seeds, from the benchmark's own runs), so a target is never a number nobody
    ran; `reference` names the published figure a full-size run can be held against."""

    task: str
    settings: Dict[str, Any]  # known-good: model, optimizer, lr, batch size, family keys
    budgets: Dict[str, Dict[str, Any]]  # size -> the config keys that set the budget
    source: str  # where the known-good settings come from
    reference: str = ""  # a published result at full size, if there is one
    needs: Dict[str, str] = field(default_factory=dict)  # a key naming another run -> the shipped sweep that trains it

    def __post_init__(self) -> None:
        for size, budget in self.budgets.items():
            both = sorted(set(budget) & set(self.settings))
            if both:  # every compared setting gets the budget; the known-good one is not changed by it
                raise ValueError(f"workload of task {self.task!r}: budget {size!r} sets {both}, a known-good setting")

    def config(self, size: str) -> Dict[str, Any]:
        if size not in self.budgets:
            raise KeyError(f"size {size!r}: expected one of {', '.join(self.budgets)}")
        return {"task": self.task, **self.settings, **self.needs, **self.budgets[size]}


class Step(Protocol):
    """A training update, called by the loop once per batch. `DefaultStep` (train/step.py) is the
    one-optimizer update; a family with other state (GANStep, DQNStep) subclasses this and owns its
    optimizers. Subclasses inherit the no-op hooks below."""

    lr: Optional[float]  # the learning rate logged per epoch (None: nothing to log)

    def __call__(self, batch: Any, detail: bool) -> Tuple[Any, int, Dict[str, Any]]:
        """(data loss or None before any update, batch size, {metric: tensor summed over the batch});
        `detail`: compute the training stats (asked on every train_stats_every-th batch)."""
        ...

    def state_dict(self) -> Dict[str, Any]:
        """Everything a resume needs beyond the model's weights (checkpointed every epoch)."""
        ...

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        ...

    def epoch_end(self, val_loss: Optional[float]) -> None:
        """After the epoch's validation (a plateau schedule reads the loss)."""

    def epoch_metrics(self) -> Dict[str, Any]:
        """What the step counts its own way (per episode, per update), merged into the epoch's row."""
        return {}


class NoTraining(Step):
    """No batches and no update, for tasks that evaluate trained weights: the loop runs zero
    epochs, then the test evaluation."""

    lr = None

    def __len__(self) -> int:
        return 0

    def iterate(self, generator: Any = None) -> Iterator[Any]:
        return iter(())

    def __call__(self, batch: Any, detail: bool) -> Tuple[Any, int, Dict[str, Any]]:
        raise RuntimeError("an evaluation task has no training step")  # there are no batches

    def state_dict(self) -> Dict[str, Any]:
        return {}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        pass


@dataclass
class Problem:
    """What the training loop needs from a task, ready on the device."""

    model: nn.Module  # trained, evaluated, counted and saved
    build: Dict[str, Any]  # {"model": name, "args": [...], "kwargs": {...}}: MODELS[name](*args, **kwargs) rebuilds it
    train_batches: object  # .iterate(generator) -> batches; len() = steps per epoch
    splits: Tuple[str, ...]  # the splits `evaluate` knows: ("val", "test"), or ("test",) for an evaluation
    # (model, split name, autocast) -> {metric name: value} for the metrics that exist on that split;
    # the family holds whatever a split is to it (batches, episode seeds, real images' features)
    evaluate: Callable[[nn.Module, str, Any], Dict[str, float]]
    n_train: int
    source: str  # what data was read, for the record
    in_shape: Tuple[int, ...] = ()  # one sample's shape, for FLOPs (or give example_input)
    # the default update: (model, batch, detail) -> (objective to minimise, data loss (mean over the
    # batch), batch size, {metric: tensor summed over the batch}); stats are asked for on every
    # train_stats_every-th batch
    loss: Optional[Callable] = None
    # a task's own update instead of the default one; it owns its optimizers and is checkpointed
    step: Optional[Step] = None
    example_input: Optional[Callable[[torch.device], torch.Tensor]] = None
    metrics: Tuple[Metric, ...] = ()  # this run's declarations (a loss's unit depends on the loss)
    facts: Dict[str, Any] = field(default_factory=dict)  # for the summary: loss, noise, scaling, ...
    # after the test evaluation: (model, autocast, run folder) -> extra summary values; it may also
    # write the family's files for the report (e.g. examples.npz: a few test inputs and outputs)
    final: Optional[Callable[[nn.Module, Any, Any], Dict[str, Any]]] = None
    # the trained runs this one loads, config key -> run id (an attack's victim, a GAN's feature
    # classifier, a sampled generator): W&B lineage, each the use of that run's model artifact
    uses: Dict[str, str] = field(default_factory=dict)
