"""The import graph of dl2bench: no circle between modules, and every import points down (or
sideways) the table of layers below, never up.

The graph is read from the source (ast), every import counted: module-level, function-level
(a lazy import is still a dependency, it only moves the moment it bites) and TYPE_CHECKING ones
(a type a module needs is a dependency too). Two things Python does that the import lines do not
say are added:
- importing `a.b.c` runs `a/b/__init__.py` first: an edge to each package above the target that
  is not also above the importer (a sibling import inside one package does not re-run its own
  __init__, so a package re-exporting its submodules is no circle);
- `dl2bench.families` imports every wing's `task` module by discovery (importlib in its
  __init__): edges to each `dl2bench.families.<wing>.task` found on disk.

Layers match on module-name prefixes (the longest wins, at a dot), so `dl2bench.launch` covers a
module or a package of that name, and a new module under a listed prefix needs no entry here.
"""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Optional, Set, Tuple

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "dl2bench"

# lowest first; a module may import its own layer and any layer below it, never one above
LAYERS: Tuple[Tuple[str, Tuple[str, ...]], ...] = (
    # no dl2bench imports beyond each other: names, errors, clocks, the machine, W&B's files and pictures
    ("core", ("dl2bench", "dl2bench.errors", "dl2bench.record", "dl2bench.registry", "dl2bench.timing",
              "dl2bench.env", "dl2bench.wandb_log", "dl2bench.wandb_view", "dl2bench.wandb_lineage",
              "dl2bench.media", "dl2bench.shipped")),
    # the registered building blocks (each imports only the registry and errors)
    ("components", ("dl2bench.nets", "dl2bench.optim", "dl2bench.inits", "dl2bench.regularizers")),
    # the run folder and what writes into it
    ("run folder", ("dl2bench.runs", "dl2bench.checkpoint", "dl2bench.track")),
    ("data", ("dl2bench.data",)),
    ("families", ("dl2bench.families",)),
    # the config's keys come from the families' declarations (schema -> families.family_keys)
    ("config", ("dl2bench.schema", "dl2bench.config", "dl2bench.registries")),
    ("train", ("dl2bench.train",)),
    ("sweep", ("dl2bench.tuning", "dl2bench.sweep", "dl2bench.suite", "dl2bench.benchmark")),
    ("launch", ("dl2bench.launch",)),
    # the commands: dl2bench train/submit/status/report/list/dashboard (`python -m dl2bench` too), and
    # the dashboard's builder (it reads a sweep's folder through the run folder, config and record layers)
    ("commands", ("dl2bench.cli", "dl2bench.__main__", "dl2bench.dashboard")),
)

# (importer, imported): today's imports that break the rules, in files owned elsewhere. Each is
# left out of both checks; test_known_exceptions_are_still_needed fails once one is gone, so the
# list only shrinks.
KNOWN_EXCEPTIONS: Dict[Tuple[str, str], str] = {
    # none today. An entry reads:
    # ("dl2bench.importer", "dl2bench.imported"): "why it cannot point down yet, and what replaces it",
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> Dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _owner(name: str, known: Set[str]) -> Optional[str]:
    """The module `name` lives in: itself, or the closest enclosing module (`pkg.mod.attr` -> pkg.mod)."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(name: str, path: Path, known: Set[str]) -> Set[str]:
    """The dl2bench modules `name` imports, every import statement in the file counted."""
    is_package = path.name == "__init__.py"
    here = name if is_package else name.rpartition(".")[0]
    found: Set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets: List[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                source = f"{base}.{node.module}" if node.module else base
            else:
                source = node.module or ""
            # `from pkg import sub` imports the submodule; `from mod import name` the module
            targets = [f"{source}.{a.name}" if f"{source}.{a.name}" in known else source for a in node.names]
        for t in targets:
            if t != "dl2bench" and not t.startswith("dl2bench."):
                continue
            owner = _owner(t, known)
            if owner is None:
                continue
            found.add(owner)
            # importing a.b.c runs a.b's __init__ first, unless the importer is inside a.b already
            parent = owner.rpartition(".")[0]
            while parent and not (name == parent or name.startswith(parent + ".")):
                found.add(parent)
                parent = parent.rpartition(".")[0]
    found.discard(name)
    return found


def import_graph() -> Dict[str, Set[str]]:
    mods = modules()
    known = set(mods)
    graph = {name: imports_of(name, path, known) for name, path in mods.items()}
    # dl2bench/families/__init__.py imports every wing's task module by discovery
    graph["dl2bench.families"] |= {m for m in known if m.startswith("dl2bench.families.") and m.endswith(".task")
                                   and m.count(".") == 3}
    return graph


def checked_graph() -> Dict[str, Set[str]]:
    return {m: {t for t in ts if (m, t) not in KNOWN_EXCEPTIONS} for m, ts in import_graph().items()}


def layer_of(module: str) -> Optional[Tuple[int, str]]:
    """(rank, layer name) of the longest prefix in LAYERS that `module` falls under."""
    best: Optional[Tuple[int, int, str]] = None
    for rank, (layer, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and (best is None or len(p) > best[0]):
                best = (len(p), rank, layer)
    # the bare "dl2bench" prefix is the package's own __init__, not a catch-all
    if best is None or (best[0] == len("dl2bench") and module != "dl2bench"):
        return None
    return best[1], best[2]


def find_cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """One circle (a path back to its start) per strongly connected component of more than one
    module (Tarjan), each starting at its smallest name."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on: Set[str] = set()
    comps: List[Set[str]] = []

    def connect(v: str) -> None:  # recursion depth: the graph's longest chain, a few dozen
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(comp)

    for v in sorted(graph):
        if v not in index:
            connect(v)
    cycles = []
    for comp in comps:
        start = min(comp)
        # breadth-first within the component from start back to start: the shortest circle through it
        prev: Dict[str, str] = {}
        frontier, seen = [start], {start}
        end = None
        while frontier and end is None:
            nxt = []
            for v in frontier:
                for w in sorted(graph[v] & comp):
                    if w == start:
                        end = v
                        break
                    if w not in seen:
                        seen.add(w)
                        prev[w] = v
                        nxt.append(w)
                if end is not None:
                    break
            frontier = nxt
        path = [end]
        while path[-1] != start:
            path.append(prev[path[-1]])
        cycles.append(list(reversed(path)) + [start])
    return sorted(cycles)


def test_every_module_has_a_layer():
    missing = sorted(m for m in modules() if layer_of(m) is None)
    assert not missing, f"modules under no prefix of LAYERS in {Path(__file__).name}; add them: {missing}"


def test_import_graph_has_no_cycle():
    cycles = find_cycles(checked_graph())
    assert not cycles, "import cycles:\n" + "\n".join("  " + " -> ".join(c) for c in cycles)


def test_no_import_from_a_lower_layer_to_a_higher_one():
    upward = []
    for m, targets in sorted(checked_graph().items()):
        lm = layer_of(m)
        for t in sorted(targets):
            lt = layer_of(t)
            if lm is not None and lt is not None and lt[0] > lm[0]:
                upward.append(f"{m} ({lm[1]}) imports {t} ({lt[1]})")
    order = " < ".join(name for name, _ in LAYERS)
    assert not upward, f"imports up the layers ({order}):\n" + "\n".join("  " + u for u in upward)


def test_known_exceptions_are_still_needed():
    graph = import_graph()
    gone = [f"{a} -> {b}" for a, b in KNOWN_EXCEPTIONS if b not in graph.get(a, ())]
    assert not gone, f"no longer imported: remove from KNOWN_EXCEPTIONS in {Path(__file__).name}: {gone}"


# the checks themselves, on small graphs

def test_a_cycle_is_reported_with_its_path():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"e2"}, "e2": {"e"}}
    assert find_cycles(graph) == [["a", "b", "c", "a"], ["e", "e2", "e"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_imports_are_resolved_as_python_runs_them(tmp_path):
    known = {"dl2bench", "dl2bench.pkg", "dl2bench.pkg.sub", "dl2bench.pkg.other", "dl2bench.low", "dl2bench.top"}
    src = tmp_path / "sub.py"
    src.write_text("from typing import TYPE_CHECKING\nfrom . import other\nfrom .. import low as L\n"
                   "if TYPE_CHECKING:\n    from ..top import Thing\n")
    assert imports_of("dl2bench.pkg.sub", src, known) == {"dl2bench.pkg.other", "dl2bench.low", "dl2bench.top"}
    outside = tmp_path / "outside.py"
    outside.write_text("def f():\n    import dl2bench.pkg.sub\n    from dl2bench.pkg import Name\n")
    # importing dl2bench.pkg.sub from outside the package runs dl2bench/pkg/__init__.py too
    assert imports_of("dl2bench.low", outside, known) == {"dl2bench.pkg.sub", "dl2bench.pkg"}
    assert layer_of("dl2bench.launch.slurm") == layer_of("dl2bench.launch") == (len(LAYERS) - 2, "launch")
    assert layer_of("dl2bench.runs") == layer_of("dl2bench.track") and layer_of("dl2bench.nowhere") is None
