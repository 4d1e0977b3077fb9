"""A suite: several sweep files submitted as one, in the order their dependencies need.

    name: course
    description: every shipped sweep
    sweeps:
      - optimizers               # a shipped sweep by name, or a path relative to this file
      - cifar_cnn
      - attack_classifiers       # found to need cifar_cnn and optimizers (its attack block's `from`)
      - {sweep: my_eval.yaml, after: [gan]}   # an order nothing in the files says

A sweep needs another when its attack/evaluate/select block reads that sweep's folder (`from: NAME`), or a
parameter names it (`feature_run: gan_features`, a GAN's feature classifier). `after:` adds what
the files cannot say. The dependencies must be listed in the suite, or already finished under
--out; a cycle is refused. Nothing here expands a sweep: a dependent sweep's runs exist only once
what it evaluates has finished, so it is expanded then.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List

from . import shipped
from .sweep import ATTACK_BLOCK, EVALUATE_BLOCK, SELECT_BLOCK, SweepError, read_yaml

SUITE_KEYS = ("name", "description", "sweeps")
ENTRY_KEYS = ("sweep", "after")
# run-config keys whose value may be a sweep's folder (a run of that sweep, looked up under --out)
RUN_KEYS = ("feature_run", "generator_run", "attack_run")
BENCHMARK_BLOCK = "benchmark"  # a benchmark file (dl2bench.benchmark, which builds a suite from it)
SHIPPED = shipped.SWEEPS  # where a suite looks for a sweep it names that is not beside it


@dataclass
class Member:
    name: str  # the sweep's name (its folder under --out)
    path: Path
    needs: Dict[str, str] = field(default_factory=dict)  # sweep name -> why (which key says so)


@dataclass
class Suite:
    name: str
    path: Path
    members: List[Member]  # in an order every member comes after what it needs

    def member(self, name: str) -> Member:
        return next(m for m in self.members if m.name == name)


def is_suite(path: str | Path) -> bool:
    """A suite file has `sweeps:` and no `parameters:` (a sweep file has parameters)."""
    return kind(path) == "suite"


def kind(path: str | Path) -> str:
    """What submit.py was given, from one read of its top-level keys: a benchmark file (a benchmark
    block), a suite or a sweep. A file that cannot be read is a sweep: loading it says what is wrong."""
    try:
        raw = read_yaml(Path(path))
    except SweepError:
        return "sweep"
    if BENCHMARK_BLOCK in raw:
        return "benchmark"
    return "suite" if "sweeps" in raw and "parameters" not in raw else "sweep"


def _sweep_path(entry: str, base: Path, where: str) -> Path:
    for p in (base / entry, base / f"{entry}.yaml", SHIPPED / entry, SHIPPED / f"{entry}.yaml"):
        if p.is_file():
            return p
    raise SweepError(f"{where}: sweep {entry!r}: no such file (looked for {base / entry}[.yaml] and the shipped "
                     f"sweeps/{entry}.yaml)")


def _needs(raw: Dict[str, Any]) -> Dict[str, str]:
    """Sweep folders a sweep file reads, each with the key that says so."""
    out: Dict[str, str] = {}
    for block in (ATTACK_BLOCK, EVALUATE_BLOCK, SELECT_BLOCK):
        sources = raw.get(block)
        for src in sources if isinstance(sources, list) else [sources] if sources else []:
            if isinstance(src, dict) and isinstance(src.get("from"), str) and not Path(src["from"]).is_absolute():
                out.setdefault(Path(src["from"]).parts[0], f"its {block} block's from")
    for key, spec in (raw.get("parameters") or {}).items():
        if key in RUN_KEYS and isinstance(spec, dict):
            for v in spec.get("values", [spec["value"]] if "value" in spec else []):
                if isinstance(v, str) and v:
                    out.setdefault(v, f"parameters.{key}")
    return out


def load_suite(path: str | Path, root: str | Path = "runs") -> Suite:
    """Read a suite, find each sweep's dependencies and order them; SweepError (one line naming the
    file and key) for an unknown key, a missing sweep or dependency, or a cycle."""
    path = Path(path)
    where = str(path)
    raw = read_yaml(path)
    unknown = sorted(set(raw) - set(SUITE_KEYS))
    if unknown:
        raise SweepError(f"{where}: {unknown[0]}: unknown key; a suite has {', '.join(SUITE_KEYS)}")
    entries = raw.get("sweeps")
    if not isinstance(entries, list) or not entries:
        raise SweepError(f"{where}: sweeps: expected a list of sweep files (names or paths), got {entries!r}")
    members: List[Member] = []
    afters: Dict[str, List[str]] = {}
    for i, entry in enumerate(entries):
        at = f"{where}: sweeps[{i}]"
        after: List[str] = []
        if isinstance(entry, dict):
            bad = sorted(set(entry) - set(ENTRY_KEYS))
            if bad or "sweep" not in entry:
                raise SweepError(f"{at}: expected {{sweep: FILE, after: [NAMES]}}, got keys {sorted(entry)}")
            after = entry.get("after") or []
            if isinstance(after, str):
                after = [after]
            if not isinstance(after, list) or not all(isinstance(a, str) for a in after):
                raise SweepError(f"{at}.after: expected a list of sweep names, got {entry.get('after')!r}")
            entry = entry["sweep"]
        if not isinstance(entry, str) or not entry:
            raise SweepError(f"{at}: expected a sweep file's name or path, got {entry!r}")
        file = _sweep_path(entry, path.parent, at)
        sweep_raw = read_yaml(file)
        name = str(sweep_raw.get("name") or file.stem)
        if any(m.name == name for m in members):
            raise SweepError(f"{at}: sweep {name!r} is listed twice")
        members.append(Member(name, file, _needs(sweep_raw)))
        afters[name] = after
    names = {m.name for m in members}
    for m in members:
        for a in afters[m.name]:
            if a not in names:
                raise SweepError(f"{where}: {m.name}.after: {a!r} is not a sweep of this suite "
                                 f"({', '.join(sorted(names))})")
            m.needs.setdefault(a, "after")
        for dep, why in list(m.needs.items()):
            if dep == m.name:
                raise SweepError(f"{where}: {m.name}: {why} names the sweep itself")
            if dep not in names:
                if (Path(root) / dep).is_dir():
                    del m.needs[dep]  # finished before this suite: nothing to wait for
                    continue
                raise SweepError(f"{where}: {m.name}: {why} reads sweep {dep!r}, which the suite does not list "
                                 f"and {Path(root) / dep} does not hold; add it to the suite")
    return Suite(str(raw.get("name") or path.stem), path, _ordered(members, where))


def _ordered(members: List[Member], where: str) -> List[Member]:
    """Depth-first topological order, stable in the file's order; a cycle is one error naming it."""
    by_name = {m.name: m for m in members}
    out: List[Member] = []
    state: Dict[str, int] = {}  # 1 visiting, 2 done

    def visit(m: Member, trail: List[str]) -> None:
        if state.get(m.name) == 2:
            return
        if state.get(m.name) == 1:
            cycle = trail[trail.index(m.name):] + [m.name]
            raise SweepError(f"{where}: a cycle: {' -> '.join(cycle)} (each needs the next); remove one `after` "
                             "or reference")
        state[m.name] = 1
        for dep in m.needs:
            visit(by_name[dep], trail + [m.name])
        state[m.name] = 2
        out.append(m)

    for m in members:
        visit(m, [])
    return out


def blocked_by(suite: Suite, failed: set) -> Dict[str, str]:
    """Sweep -> the failed sweep it waits on (directly or through others)."""
    out: Dict[str, str] = {}
    for m in suite.members:  # dependencies come first in this order
        for dep in m.needs:
            if dep in failed or dep in out:
                out[m.name] = dep if dep in failed else out[dep]
                break
    return out


def describe(suite: Suite) -> List[str]:
    lines = [f"suite {suite.name}: {len(suite.members)} sweep(s), in this order:"]
    for i, m in enumerate(suite.members, 1):
        needs = "; ".join(f"after {d} ({why})" for d, why in m.needs.items())
        lines.append(f"  {i:>2}. {m.name}" + (f"   {needs}" if needs else ""))
    return lines


def suite_names() -> List[str]:
    """The shipped sweeps' names (for the course suite's test)."""
    return shipped.names()
