"""Sweep -> what the report shows: the factors found in the data (with their levels and colours),
aggregates with n and spread, and the units and number formats every figure and table shares."""
from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field, replace
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from .load import BOOKKEEPING, COUNTED, EVALUATED_PREFIX, REPLICATE, RESOLVED_BY_SUMMARY, UNKNOWN_TASK, Sweep
from .units import TaskDecl, Unit, goal_word

__all__ = ["Analysis", "Factor", "Unit", "aggregate", "analyse", "analyse_tasks", "fmt", "mean_std", "unit"]

# two-sided 95% Student-t quantiles for df = 1..30 (no scipy needed); beyond, a Cornish-Fisher step
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
         2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
         2.052, 2.048, 2.045, 2.042)
MAX_HEATMAP_PAIRS = 6
DEVICE_COLORS = {"cpu": (0.30, 0.45, 0.70), "cuda": (0.35, 0.65, 0.20), "mps": (0.80, 0.50, 0.20)}
MAX_LEVELS_CATEGORICAL_PALETTE = 10


def t975(n: int) -> float:
    """Half-width factor of a 95% CI of a mean of n samples (in units of the standard error); NaN for n < 2."""
    df = n - 1
    if df < 1:
        return float("nan")
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959964
    return z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df ** 2)


def aggregate(df: pd.DataFrame, by: Sequence[str], value: str,
              bounds: Tuple[float, float] = (-math.inf, math.inf)) -> pd.DataFrame:
    """Per group of `by`: n, mean, std (ddof 1), and the 95% CI of the mean (lo, hi), clipped to
    the value's possible range `bounds` (an accuracy is never above 1); NaN values skipped."""
    d = df[list(by) + [value]].dropna(subset=[value])
    g = d.groupby(list(by), sort=False, observed=True, dropna=False)[value]
    out = g.agg(n="count", mean="mean", std="std").reset_index()
    half = out["n"].map(t975) * out["std"] / np.sqrt(out["n"])
    out["lo"] = (out["mean"] - half).clip(lower=bounds[0])
    out["hi"] = (out["mean"] + half).clip(upper=bounds[1])
    return out


def aggregate_log(df: pd.DataFrame, by: Sequence[str], value: str) -> pd.DataFrame:
    """Per group of `by`, for a positive quantity drawn on a log axis (a throughput): n, the
    geometric mean, and the 95% CI taken in log space (lo, hi) -- a ratio either side of it, so it
    never runs below zero off the axis as an arithmetic CI of a few spread runs does."""
    d = df[list(by) + [value]].dropna(subset=[value])
    d = d[d[value] > 0].assign(_log=lambda x: np.log(x[value]))
    g = d.groupby(list(by), sort=False, observed=True, dropna=False)["_log"]
    out = g.agg(n="count", mlog="mean", slog="std").reset_index()
    half = out["n"].map(t975) * out["slog"] / np.sqrt(out["n"])
    out["mean"] = np.exp(out["mlog"])
    out["lo"] = np.exp(out["mlog"] - half)
    out["hi"] = np.exp(out["mlog"] + half)
    out["factor"] = np.exp(half)  # the CI is mean ÷ factor .. mean × factor
    return out.drop(columns=["mlog", "slog"])


UNSTEADY_RATIO = 1.5  # fastest/slowest epoch of one run beyond this: flagged, not trusted as one speed


def throughput_spread(curves: pd.DataFrame) -> pd.DataFrame:
    """Per run with two or more timed epochs: epochs, the slowest and fastest epoch's training
    samples/s, their ratio, and `unsteady` (ratio > UNSTEADY_RATIO). The warm-up steps are already
    out of each epoch's figure, so a large ratio means the run's speed changed while it trained
    (another process on the machine, throttling, a shared GPU)."""
    cols = ["sweep", "run", "epochs", "slowest", "fastest", "ratio", "unsteady"]
    if curves.empty or "samples_per_s" not in curves.columns:
        return pd.DataFrame(columns=cols)
    d = curves[["sweep", "run", "samples_per_s"]].dropna()
    d = d[d["samples_per_s"] > 0]
    g = d.groupby(["sweep", "run"], sort=False)["samples_per_s"].agg(epochs="count", slowest="min",
                                                                      fastest="max").reset_index()
    g = g[g["epochs"] >= 2]
    g["ratio"] = g["fastest"] / g["slowest"]
    g["unsteady"] = g["ratio"] > UNSTEADY_RATIO
    return g[cols].reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# units: every axis label and table header says what the number is measured in. A metric's unit
# comes from its task's declarations (Analysis.unit); this table holds what every task shares.

UNITS: Dict[str, Unit] = {
    "samples_per_s": Unit("training throughput", "samples/s", 1, 0),
    "train_time_total": Unit("training time", "s", 1, 1),
    "eval_time_total": Unit("evaluation time", "s", 1, 2),
    "test_eval_time": Unit("test evaluation time", "s", 1, 2),
    "peak_mem_mb": Unit("peak memory", "MiB", 1, 0),
    "epoch": Unit("epoch", "", 1, 0),
    "epochs_completed": Unit("epochs completed", "", 1, 0),
    "best_epoch": Unit("best epoch", "", 1, 0),
}


def unit(col: str, decl: Optional[TaskDecl] = None, digits: int = 3) -> Unit:
    """The display unit of a column: a declared metric's (with `decl`), a shared one, or guessed
    from the name (time columns in s; anything else plain)."""
    if decl is not None:
        u = decl.unit(col, digits)
        if u is not None:
            return u
    if col in UNITS:
        return UNITS[col]
    name = col.replace("_", " ")
    if col.startswith("time_to_"):
        return Unit(f"time to {target_label(col, decl)}", "s", 1, 1)
    if col.startswith("epochs_to_"):
        return Unit(f"epochs to {target_label(col, decl)}", "", 1, 1)
    if col.endswith("_time") or col.endswith("_s"):
        return Unit(name, "s", 1, 2)
    return Unit(name, "", 1, digits, bounds=(-math.inf, math.inf))


def target_label(col: str, decl: Optional[TaskDecl] = None) -> str:
    """time_to_val_acc_0.80 -> 'val_acc ≥ 80%' (the direction and % from the declarations)."""
    if decl is not None:
        label = decl.target_label(col)
        if label:
            return label
    m = re.match(r"(?:time|epochs)_to_(.+)_([0-9.]+)$", col)
    return f"{m.group(1)} reaching {float(m.group(2)):g}" if m else col


def magnitude_digits(values: np.ndarray) -> int:
    """Decimals that show three significant digits of a typical value (at least 3, at most 6):
    an MSE of 0.0123 prints as 0.0123, a loss of 0.35 as 0.350."""
    v = np.abs(values[np.isfinite(values)])
    v = v[v > 0]
    if not len(v):
        return 3
    return int(min(6, max(3, 2 - math.floor(math.log10(float(np.median(v)))))))


def fmt(x: Any, u: Unit, digits: Optional[int] = None) -> str:
    """One number in its unit's scale and precision; NaN/None -> '–'."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    d = u.digits if digits is None else digits
    v = float(x) * u.scale
    if abs(v) >= 1e5:
        return f"{v:,.0f}"
    return f"{v:,.{d}f}"


def mean_std(mean: float, std: float, n: int, u: Unit, with_unit: bool = False) -> str:
    """'85.31 ± 0.42 (n=3)' ('85.31 ± 0.42 % (n=3)' with_unit); one sample has no spread and says so."""
    sfx = f" {u.unit}" if with_unit and u.unit else ""
    if n == 0:
        return "– (n=0)"
    if n == 1 or not math.isfinite(std):
        return f"{fmt(mean, u)}{sfx} (n=1, no spread)"
    d = spread_digits(std * u.scale, u.digits)
    return f"{fmt(mean, u, d)} ± {fmt(std, u, d)}{sfx} (n={n})"


def spread_digits(spread: float, digits: int) -> int:
    """Decimals that show a spread with two significant digits (at least `digits`, at most 4),
    so a small std never prints as a bare '± 0.0'."""
    if not math.isfinite(spread) or spread <= 0:
        return digits
    return int(min(4, max(digits, 1 - math.floor(math.log10(spread)))))


def level_str(v: Any) -> str:
    """A config value as a level label: numbers in %g, None as 'default' (the config's meaning)."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "default"
    if isinstance(v, bool) or isinstance(v, np.bool_):
        return "true" if v else "false"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return f"{float(v):g}"
    return str(v)


def level_labels(values: pd.Series) -> pd.Series:
    """level_str of every value, worked out once per distinct value: 50,000 runs have a few dozen
    levels, and a Python call per run and column cost a report seconds."""
    arr = values.to_numpy(dtype=object)
    kinds = set(map(type, arr))
    if not (kinds & {bool, np.bool_} and kinds - {bool, np.bool_, type(None)}):
        # no True beside a 1 (equal to pandas, different levels): label each distinct value once
        codes, uniques = pd.factorize(arr, use_na_sentinel=False)
        labels = np.array([level_str(u) for u in uniques], dtype=object)
        return pd.Series(labels[codes] if len(codes) else [], index=values.index, dtype=object)
    seen: Dict[Tuple[type, Any], str] = {}
    out = []
    for v in arr:
        try:
            key = (type(v), v)  # the type too: True == 1, but they are the levels "true" and "1"
            label = seen.get(key)
            if label is None:
                label = seen[key] = level_str(v)
        except TypeError:  # unhashable (never in a config): as it comes
            label = level_str(v)
        out.append(label)
    return pd.Series(out, index=values.index, dtype=object)


# ---------------------------------------------------------------------------------------------
# factors

@dataclass
class Factor:
    """A varying setting. Config columns that always change together (an optimizer with its own
    lr) are one factor; `column` holds each run's level label."""

    name: str
    columns: List[str]
    column: str
    levels: List[str]  # natural order (numeric ascending, else alphabetical)
    colors: Dict[str, Tuple[float, float, float]] = field(default_factory=dict)
    numeric: bool = False


def varying_columns(sw: Sweep) -> List[str]:
    """Config columns (bookkeeping and seed aside) with more than one distinct value among the
    runs that wrote their own config.json (a manifest's copy may leave task defaults unresolved)."""
    out = []
    own = sw.runs[sw.runs["config_source"] == "run"] if "config_source" in sw.runs.columns else sw.runs
    if own.empty:
        own = sw.runs
    for c in sw.config_keys:
        if c in BOOKKEEPING or c == REPLICATE or c not in sw.runs.columns:
            continue
        vals = own[c]
        if c.startswith(EVALUATED_PREFIX):  # known from a summary only: a run still going has no level
            vals = vals.dropna()
        if c in RESOLVED_BY_SUMMARY:  # "auto" of a run without a summary is not a level of its own
            vals = vals[~vals.isin([v for v in RESOLVED_BY_SUMMARY[c] if v is not None]) & vals.notna()]
        if level_labels(vals).nunique() > 1:
            out.append(c)
    return out


def _determines(labels: pd.DataFrame, a: str, b: str) -> bool:
    return bool((labels.groupby(a, sort=False)[b].nunique() <= 1).all())


def find_factors(sw: Sweep, preferred: Sequence[str] = ()) -> List[Factor]:
    """Group the varying config columns into factors: columns that determine each other are
    merged; a column determined by another (but not vice versa) is folded into its labels."""
    cols = varying_columns(sw)
    labels = pd.DataFrame({c: level_labels(sw.runs[c]) for c in cols}, index=sw.runs.index)
    if "config_source" in sw.runs.columns:  # a run whose config is unknown has no level to show
        labels.loc[sw.runs["config_source"] == "none", :] = "unknown"
    nlev = {c: labels[c].nunique() for c in cols}
    order = {c: i for i, c in enumerate(preferred)}

    def rank(c: str) -> tuple:  # who names a merged factor: most levels, then words over numbers
        return (-nlev[c], _is_numeric(sw.runs[c]), order.get(c, len(order)), c)

    groups: List[List[str]] = []
    for c in sorted(cols, key=rank):
        for g in groups:
            if _determines(labels, g[0], c):
                g.append(c)  # c is a function of the group's head: no own factor
                break
        else:
            groups.append([c])
    factors = []
    for g in groups:
        head, rest = g[0], g[1:]
        col = "factor:" + head
        if rest:
            lab = labels[head]
            for k in rest:  # ", lr=0.01" for each folded-in column that is not at its default
                lab = lab + labels[k].where(labels[k] == "default", ", " + k + "=" + labels[k]).replace("default", "")
        else:
            lab = labels[head]
        sw.runs[col] = lab
        numeric = _is_numeric(sw.runs[head])
        if numeric:
            key = sw.runs[head].astype(float)
            levels = list(dict.fromkeys(lab.iloc[np.argsort(key.to_numpy(), kind="stable")]))
        else:
            levels = sorted(lab.unique(), key=_natural)
        name = head if not rest else f"{head} + {' + '.join(rest)}"
        factors.append(Factor(name=name, columns=g, column=col, levels=levels, numeric=numeric))
    # the factors with most levels first (they carry the comparison), then in the schema's order
    factors.sort(key=lambda f: (-len(f.levels), order.get(f.columns[0], len(order)), f.columns[0]))
    for f in factors:
        f.colors = palette(f)
    return factors


def _is_numeric(s: pd.Series) -> bool:
    vals = s.dropna()
    return len(vals) > 0 and all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
                                 for v in vals)


def _natural(s: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]


def palette(f: Factor) -> Dict[str, Tuple[float, float, float]]:
    """One colour per level, fixed for the whole report: ordered numbers get a sequential ramp,
    names a qualitative (colour-blind safe) palette."""
    import seaborn as sns

    n = len(f.levels)
    if f.columns[0] == "device" and set(f.levels) <= set(DEVICE_COLORS):  # as in the speed figures
        return {lvl: DEVICE_COLORS[lvl] for lvl in f.levels}
    if f.numeric and n > 2:
        cols = sns.color_palette("viridis", n + 1)[:n]  # drop the pale yellow end: unreadable on white
    elif n <= MAX_LEVELS_CATEGORICAL_PALETTE:
        cols = sns.color_palette("colorblind", n)
    else:
        cols = sns.color_palette("husl", n)
    return {lvl: tuple(c) for lvl, c in zip(f.levels, cols)}



# ---------------------------------------------------------------------------------------------
# the analysed sweep that every figure and table function receives

@dataclass
class Analysis:
    """A Sweep plus its factors; `ok` are the runs whose metric counts (finished, early stopped)."""

    sweep: Sweep
    factors: List[Factor]
    config_column: str  # the combined level label of all factors (one 'configuration')
    metric: str
    goal: str
    curves: pd.DataFrame  # sweep.curves joined with status, seed and the factor columns
    decl: TaskDecl = field(default_factory=lambda: TaskDecl(UNKNOWN_TASK))  # the task's declarations
    _digits: Dict[str, int] = field(default_factory=dict, repr=False)
    _fraction: Dict[str, bool] = field(default_factory=dict, repr=False)
    _ok: Optional[Tuple[Tuple, pd.DataFrame]] = field(default=None, repr=False)

    @property
    def task(self) -> str:
        return self.decl.task

    @property
    def family(self) -> str:
        return self.decl.family

    @property
    def better(self) -> str:
        """'higher is better' / 'lower is better' for the ranking metric."""
        return goal_word(self.goal)

    def unit(self, col: str) -> Unit:
        """The display unit of a column, from the task's declarations; its decimals from the data,
        and a unit-less score whose values all lie in [0, 1] (IoU, Dice, AUROC) bounded there."""
        sm = self.decl.split_metric(col)
        if sm is None:
            u = unit(col, self.decl)
            if col == "samples_per_s" and "samples_are" in self.runs.columns:  # a task's own sample: a transition, a token
                kinds = self.runs["samples_are"].dropna().unique()
                if len(kinds) == 1:
                    per = {"environment transitions": "transitions/s", "characters (tokens)": "tokens/s"}
                    u = replace(u, unit=per.get(str(kinds[0]), f"{kinds[0]}/s"))
            return u
        name = sm[1].name
        if name not in self._digits:
            cols = [c for c in self.runs.columns if (x := self.decl.split_metric(c)) and x[1].name == name]
            ccols = [c for c in self.curves.columns if (x := self.decl.split_metric(c)) and x[1].name == name]
            vals = [pd.to_numeric(self.runs[c], errors="coerce").to_numpy(float) for c in cols]
            vals += [self.curves[c].to_numpy(float) for c in ccols]
            v = np.concatenate(vals) if vals else np.array([])
            v = v[np.isfinite(v)]
            self._digits[name] = magnitude_digits(v)
            self._fraction[name] = bool(len(v)) and not sm[1].unit and float(v.min()) >= 0 and float(v.max()) <= 1
        u = unit(col, self.decl, self._digits[name])
        return dataclasses.replace(u, bounds=(0.0, 1.0)) if self._fraction[name] and not sm[1].percent else u

    @property
    def runs(self) -> pd.DataFrame:
        return self.sweep.runs

    @property
    def ok(self) -> pd.DataFrame:
        """The counted runs. Made once and kept while the runs frame keeps its rows and columns:
        tables and figures ask for it ~40 times, and a 50,000-run frame of ~100 columns is a
        tenth of a second to select each time. Callers read it; they do not write to it."""
        r = self.sweep.runs
        key = (r, r.columns, r.index, self.metric)  # compared by identity: held, so never reused
        if self._ok is None or any(x is not y for x, y in zip(self._ok[0], key)):
            self._ok = (key, r[r["status"].isin(COUNTED) & r[self.metric].notna()])
        return self._ok[1]

    @property
    def metric_unit(self) -> Unit:
        return self.unit(self.metric)

    @property
    def ascending(self) -> bool:
        """Sort order that puts the best first."""
        return self.goal == "minimize"

    def ranked_levels(self, column: str) -> List[str]:
        """Levels of `column` best first by mean metric; levels without a counted run last."""
        a = aggregate(self.ok, [column], self.metric).sort_values("mean", ascending=self.ascending)
        seen = list(a[column])
        return seen + [l for l in self.runs[column].unique() if l not in seen]


def analyse(sw: Sweep) -> Analysis:
    """A one-task sweep's Analysis: find the factors, label each run's configuration (columns
    added to sw.runs), and join the curves with them. A sweep of several tasks: analyse_tasks."""
    parts = analyse_tasks(sw)
    if len(parts) > 1:
        raise ValueError(f"{sw.name}: runs of {len(parts)} tasks ({', '.join(a.task for a in parts)}); "
                         "use analyse_tasks (one Analysis per task)")
    return parts[0]


def analyse_tasks(sw: Sweep) -> List[Analysis]:
    """One Analysis per task, in the order the tasks first appear: runs of different tasks are
    never compared. Each part's configuration labels are written back to sw.runs (runs.csv)."""
    tasks = list(dict.fromkeys(sw.task_of()))
    if len(tasks) == 1:  # the sweep itself (its runs frame gets the labels), less other families' keys
        decl = sw.tasks.get(tasks[0]) or TaskDecl(tasks[0])
        return [_analyse(dataclasses.replace(sw, config_keys=sw.keys_for(decl)), decl)]
    parts = []
    for task in tasks:
        part = sw.part(task)
        parts.append(_analyse(part, part.tasks[task]))
    sw.runs["configuration"] = pd.concat([a.runs["configuration"] for a in parts])
    return parts


def _analyse(sw: Sweep, decl: TaskDecl) -> Analysis:
    try:
        from dl2bench.config import RunConfig  # the schema's order reads naturally: model before lr

        preferred = RunConfig.keys()
    except Exception:  # noqa: BLE001 - the report must also work without the library installed
        preferred = []
    factors = find_factors(sw, preferred)
    runs = sw.runs
    if len(factors) == 1:
        runs["configuration"] = runs[factors[0].column]
    elif factors:  # "optimizer=sgd, lr=0.05, batch_size=64"
        runs["configuration"] = runs[[f.column for f in factors]].apply(
            lambda r: ", ".join(f"{f.columns[0]}={v}" for f, v in zip(factors, r)), axis=1)
    else:
        runs["configuration"] = "all runs"
    if REPLICATE not in runs.columns:
        runs[REPLICATE] = np.nan
    keep = ["sweep", "run", "status", REPLICATE, "configuration"] + [f.column for f in factors]
    curves = sw.curves.merge(runs[keep], on=["sweep", "run"], how="left")
    return Analysis(sweep=sw, factors=factors, config_column="configuration", metric=sw.metric,
                    goal=sw.goal, curves=curves, decl=decl)


def status_counts(runs: pd.DataFrame) -> Dict[str, int]:
    from .load import STATUSES

    vc = runs["status"].value_counts()
    return {s: int(vc.get(s, 0)) for s in STATUSES}


def not_counted(runs: pd.DataFrame, metric: str) -> str:
    """'1 diverged, 2 incomplete' for the runs of a group whose metric does not count."""
    bad = runs[~(runs["status"].isin(COUNTED) & runs[metric].notna())]
    if bad.empty:
        return ""
    vc = bad["status"].value_counts()
    return ", ".join(f"{int(n)} {s.replace('_', ' ')}" for s, n in vc.items())


def unique_str(values: Iterable[Any]) -> List[str]:
    # distinct first (pandas' hash table, equal values merged as dict keys merge them), then the
    # None/NaN filter over the few that are left instead of over every run
    arr = values.to_numpy(dtype=object) if isinstance(values, pd.Series) else np.array(list(values) + [None], dtype=object)[:-1]
    return [str(v) for v in pd.unique(arr) if v is not None and not (isinstance(v, float) and math.isnan(v))]
