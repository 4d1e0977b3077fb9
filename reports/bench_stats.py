"""The statistics of a benchmark report (issue 25), as plain functions of numbers: performance
profiles (Dolan & More 2002) and their area up to tau (AlgoPerf's score), the mean rank with a
bootstrap interval, pairwise Welch tests with Holm's correction, and the width of the good-lr band.
Kept free of files and figures so each can be checked against a hand computation."""
from __future__ import annotations

import math
from typing import Dict, List, Mapping, Sequence, Tuple

import numpy as np

INF = math.inf
TAU_MAX = 4.0  # AlgoPerf scores the area under the profile up to tau = 4


def ratios(cost: Mapping[str, Mapping[str, float]]) -> Dict[str, Dict[str, float]]:
    """cost[problem][solver] (lower is better, inf = failed) -> performance ratio r = cost / best
    cost on that problem. A problem no solver finished gives every solver inf; a solver with no cost
    on a problem (n/a) is left out of that problem, not counted as failing it."""
    out: Dict[str, Dict[str, float]] = {}
    for p, row in cost.items():
        finite = [c for c in row.values() if math.isfinite(c)]
        best = min(finite) if finite else INF
        out[p] = {s: (c / best if math.isfinite(c) and best > 0 else 1.0 if c == best else INF)
                  for s, c in row.items()}
    return out


def profile(r: Mapping[str, Mapping[str, float]], solver: str, taus: Sequence[float]) -> np.ndarray:
    """rho_s(tau): the fraction of the problems the solver runs on whose ratio is <= tau."""
    mine = [row[solver] for row in r.values() if solver in row]
    if not mine:
        return np.full(len(taus), np.nan)
    v = np.asarray(mine, dtype=float)
    return np.array([(v <= t).mean() for t in taus])


def area(r: Mapping[str, Mapping[str, float]], solver: str, tau_max: float = TAU_MAX) -> float:
    """The area under rho_s from tau = 1 to tau_max, divided by (tau_max - 1): 1 when the solver is
    best everywhere, 0 when it is never within tau_max of the best. Exact for the step function."""
    mine = [row[solver] for row in r.values() if solver in row]
    if not mine:
        return math.nan
    return float(np.mean([(tau_max - min(max(x, 1.0), tau_max)) / (tau_max - 1.0) for x in mine]))


def ranks(scores: Mapping[str, float], better: str) -> Dict[str, float]:
    """Rank 1 = best; ties share the mean of their ranks; nan scores rank last (tied)."""
    names = list(scores)
    sign = -1.0 if better == "higher" else 1.0
    key = np.array([sign * scores[n] if math.isfinite(scores[n]) else INF for n in names])
    order = np.argsort(key, kind="stable")
    out = np.empty(len(names))
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and key[order[j + 1]] == key[order[i]]:
            j += 1
        out[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return {n: float(out[k]) for k, n in enumerate(names)}


def mean_ranks(seeds: Mapping[str, Mapping[str, Sequence[float]]], better: Mapping[str, str]) -> Dict[str, float]:
    """seeds[problem][solver] = final values over seeds -> each solver's mean rank over the problems
    it runs on (ranked by the mean over seeds)."""
    total: Dict[str, List[float]] = {}
    for p, row in seeds.items():
        rk = ranks({s: float(np.mean(v)) if len(v) else math.nan for s, v in row.items()}, better[p])
        for s, x in rk.items():
            total.setdefault(s, []).append(x)
    return {s: float(np.mean(x)) for s, x in total.items()}


def bootstrap_ranks(seeds: Mapping[str, Mapping[str, Sequence[float]]], better: Mapping[str, str],
                    n: int = 2000, seed: int = 0) -> Dict[str, Tuple[float, float]]:
    """A 95% percentile interval of each solver's mean rank, resampling both what a reader would
    resample: the problems (with replacement) and, within each, every solver's seeds."""
    rng = np.random.default_rng(seed)
    probs = list(seeds)
    draws: Dict[str, List[float]] = {}
    for _ in range(n):
        pick = rng.integers(0, len(probs), len(probs))
        total: Dict[str, List[float]] = {}
        for k in pick:
            row = seeds[probs[k]]
            means = {s: float(np.mean(rng.choice(np.asarray(v, dtype=float), len(v)))) if len(v) else math.nan
                     for s, v in row.items()}
            for s, x in ranks(means, better[probs[k]]).items():
                total.setdefault(s, []).append(x)
        for s, x in total.items():
            draws.setdefault(s, []).append(float(np.mean(x)))
    return {s: (float(np.percentile(d, 2.5)), float(np.percentile(d, 97.5))) for s, d in draws.items()}


def welch_p(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided Welch t-test p-value; 1 when either side has fewer than 2 values or both have no
    spread and the same mean (no evidence of a difference), 0 when neither has spread and they differ."""
    from scipy import stats

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) < 2 or len(b) < 2:
        return 1.0
    if a.std() == 0 and b.std() == 0:
        return 1.0 if a.mean() == b.mean() else 0.0
    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def holm(pvalues: Sequence[float]) -> List[float]:
    """Holm-Bonferroni adjusted p-values (same order as given): controls the family-wise error."""
    m = len(pvalues)
    order = np.argsort(pvalues, kind="stable")
    adj = np.empty(m)
    running = 0.0
    for i, k in enumerate(order):
        running = max(running, min(1.0, (m - i) * pvalues[k]))
        adj[k] = running
    return [float(x) for x in adj]


def pairwise(seeds: Mapping[str, Mapping[str, Sequence[float]]], better: Mapping[str, str],
             alpha: float = 0.05) -> Dict[Tuple[str, str], Dict[str, int]]:
    """For every pair (a, b) of solvers: on how many problems a wins, ties or loses, where a win is a
    Welch test significant after Holm's correction over every (pair, problem) test of the benchmark."""
    tests: List[Tuple[str, str, str, float, int]] = []
    solvers = sorted({s for row in seeds.values() for s in row})
    for i, a in enumerate(solvers):
        for b in solvers[i + 1:]:
            for p, row in seeds.items():
                if a in row and b in row:
                    va, vb = row[a], row[b]
                    sign = 1 if better[p] == "higher" else -1
                    diff = sign * (float(np.mean(va)) - float(np.mean(vb))) if len(va) and len(vb) else 0.0
                    tests.append((a, b, p, welch_p(va, vb), int(np.sign(diff))))
    adj = holm([t[3] for t in tests])
    out: Dict[Tuple[str, str], Dict[str, int]] = {}
    for (a, b, _, _, d), q in zip(tests, adj):
        cell = out.setdefault((a, b), {"win": 0, "tie": 0, "loss": 0})
        cell["win" if q < alpha and d > 0 else "loss" if q < alpha and d < 0 else "tie"] += 1
    return out


def band(lrs: Sequence[float], scores: Sequence[float], better: str, tolerance: float) -> Tuple[float, float, float]:
    """The good-lr band around the best grid point: the contiguous grid points whose score is within
    `tolerance` of the best. Returns (low lr, high lr, width in decades); a band of one point is 0
    decades wide, which says 'tuned to one grid point', not 'robust'."""
    order = np.argsort(lrs)
    x = np.asarray(lrs, dtype=float)[order]
    y = np.asarray(scores, dtype=float)[order]
    sign = 1.0 if better == "higher" else -1.0
    y = np.where(np.isfinite(y), sign * y, -INF)
    best = int(np.argmax(y))
    ok = y >= y[best] - tolerance
    lo = hi = best
    while lo > 0 and ok[lo - 1]:
        lo -= 1
    while hi + 1 < len(x) and ok[hi + 1]:
        hi += 1
    return float(x[lo]), float(x[hi]), float(math.log10(x[hi] / x[lo]))


def ci95(values: Sequence[float]) -> Tuple[float, float]:
    """Mean and the half-width of its 95% t interval (nan half-width for one value)."""
    from scipy import stats

    v = np.asarray([x for x in values if math.isfinite(x)], dtype=float)
    if len(v) == 0:
        return math.nan, math.nan
    if len(v) == 1:
        return float(v[0]), math.nan
    return float(v.mean()), float(stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))


def median_time(times: Sequence[float]) -> float:
    """The median time-to-target over seeds, a seed that never reached it counting as infinite (so
    a setting that reaches the target on fewer than half its seeds has not reached it)."""
    if not len(times):
        return INF
    v = sorted(times)
    n = len(v)
    mid = v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2
    return float(mid)


def cost_of_final(value: float, best: float, better: str, bounded: bool) -> float:
    """A final metric as a cost for a profile (lower is better, positive): for a metric bounded in
    [0, 1] with higher better (accuracy, AUROC), the error 1 - value; for a positive lower-is-better
    metric (MSE, FID), the value; otherwise 1 + the gap to the best relative to its magnitude."""
    if not math.isfinite(value):
        return INF
    if bounded and better == "higher":
        return max(1.0 - value, 1e-12)
    if better == "lower" and best > 0:
        return value
    gap = (best - value) if better == "higher" else (value - best)
    return 1.0 + max(gap, 0.0) / max(abs(best), 1e-12)

