"""`dl2bench dashboard OUT/<sweep>`: a W&B workspace and a W&B report for one sweep, built with
wandb-workspaces from the sweep's results folder, in the sections report.html has:

    Headline by factor              the ranking metric by each swept factor (seeds and the other factors pooled)
    Learning curves (seeds pooled)  the task's validation curves and the training loss against epoch
    Parallel coordinates            the swept keys and the ranking metric, one line per run
    Parameter importance            which config keys predict the ranking metric
    Speed                           throughput and time per epoch; training time and time to targets per configuration

Every name is the one W&B holds (dl2bench.wandb_view: `test_acc` is `test/acc` there), the runs are
this sweep's (its W&B group, which a sweep sets to its name, and its run ids; an online sweep's W&B
sweep id), grouped by the swept keys without the seed. The task's declared metrics say what ranks the
runs and which way is better, read from the runs' summaries as the report reads them (reports.units).

Without --save it builds both, checks them (the library's pydantic models, and a round trip through
W&B's own spec format) and writes that spec to OUT/<sweep>/dashboard/{workspace.json, report.json}.
Saving needs a W&B server and an API key (WANDB_API_KEY or `wandb login`): `--save` uploads both
through W&B's API, which nothing here can reach or test offline.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from . import record as R
from . import runs as F
from . import wandb_log as W
from . import wandb_view as V

OUT = "dashboard"  # OUT/<sweep>/dashboard/: the built spec
FILES = ("workspace.json", "report.json")
MANIFEST = "manifest.json"  # written by every submit: what makes a folder a sweep's
REPLICATE = "seed"  # pooled, never a factor (as in the report)
# Past this many runs the runset names the sweep's W&B group only, not every run id as well: a filter
# listing 50,000 ids is ~1 MB of spec on every page load. The group alone also matches a same-named
# sweep's runs from another results folder in the same project, and the printout says so.
MAX_LISTED_RUNS = 1000
# What the runs log about speed (local names; W&B's come from wandb_view.key): per epoch, and in the summary
SPEED_CURVES = ("samples_per_s", "train_time")
SPEED_TOTALS = ("samples_per_s", "train_time_total")
CURVE_SAMPLE = 20  # finished runs per task whose metrics.jsonl is read for the keys they log
AGG, SPREAD = "mean", "stderr"  # over the runs of a group: the report draws the mean and a CI of it


class DashboardError(ValueError):
    """Bad input: one line naming the folder, file or flag, and nothing written."""


# ---------------------------------------------------------------------------------------------
# the sweep's folder, as the dashboard needs it

@dataclass
class Sweep:
    """A sweep's results folder: its manifest, every run's config, the finished runs' summaries and
    (a sample of) their per-epoch rows, and the keys it varies."""

    name: str
    folder: Path
    manifest: Dict[str, Any]
    configs: Dict[str, Dict[str, Any]]  # run id -> config.json
    finished: Dict[str, Dict[str, Any]]  # run id -> summary.json, for the counted runs
    rows: Dict[str, List[Dict[str, Any]]]  # run id -> metrics.jsonl rows (a sample of the finished runs)
    swept: List[str]


def read_sweep(folder: Path) -> Sweep:
    """Read a sweep's results folder; DashboardError naming what is wrong with it."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DashboardError(f"{folder}: no such folder (give a sweep's results folder, OUT/<sweep>)")
    if F.is_run(folder):
        raise DashboardError(f"{folder}: a run's folder, not a sweep's (give its parent, OUT/<sweep>)")
    if not (folder / MANIFEST).exists():
        raise DashboardError(f"{folder}: not a sweep's results folder (no {MANIFEST}: `dl2bench submit` writes "
                             "one beside the runs it launches)")
    try:
        manifest = F.read_json(folder / MANIFEST)
        configs = {}
        for run in F.runs_in(folder):
            cfg = F.config(run)
            configs[str(cfg.get("run_id") or run.name)] = cfg
    except (OSError, F.RunFolderError) as e:
        raise DashboardError(str(e)) from None
    if not configs:
        raise DashboardError(f"{folder}: no runs yet (no OUT/<sweep>/<run id>/config.json): nothing to chart")
    finished, statuses = {}, {}
    for rid in configs:
        s = F.summary(folder / rid)
        status = (s or {}).get("status") or R.INCOMPLETE
        statuses[status] = statuses.get(status, 0) + 1
        if status in R.COUNTED:
            finished[rid] = s
    if not finished:
        said = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in statuses.items())
        raise DashboardError(f"{folder}: no finished runs ({said}): the dashboard charts what finished runs "
                             "report; build it when some have")
    name = str((manifest.get("sweep") or {}).get("name") or folder.name)
    return Sweep(name=name, folder=folder, manifest=manifest, configs=configs, finished=finished,
                 rows=_sample_rows(folder, finished), swept=_swept(folder, list(configs.values())))


def _sample_rows(folder: Path, finished: Dict[str, Dict[str, Any]]) -> Dict[str, List[Dict[str, Any]]]:
    """metrics.jsonl of up to CURVE_SAMPLE finished runs per task: which keys the runs log per epoch
    (reading every run of a 50,000-run sweep would take longer than building the dashboard)."""
    out: Dict[str, List[Dict[str, Any]]] = {}
    per_task: Dict[str, int] = {}
    for rid, s in finished.items():
        task = str(s.get("task"))
        if per_task.get(task, 0) >= CURVE_SAMPLE:
            continue
        per_task[task] = per_task.get(task, 0) + 1
        rows = []
        try:
            text = F.read_bytes(folder / rid / F.METRICS).decode("utf-8", "replace")
        except (OSError, F.RunFolderError):
            text = ""
        for line in text.splitlines():
            try:
                row = json.loads(line)
            except ValueError:  # a torn line
                continue
            if isinstance(row, dict):
                rows.append(row)
        out[rid] = rows
    return out


def _swept(folder: Path, configs: List[Dict[str, Any]]) -> List[str]:
    """The keys the sweep varies: its swept.json (written at submit, what the runs' W&B names use);
    for a sweep submitted before it existed, or online (W&B's agents pick the values), worked out
    from the run configs the same way."""
    keys = (F.maybe_json(folder / V.SWEPT) or {}).get("keys")
    if isinstance(keys, list):
        return [str(k) for k in keys]
    from .schema import BOOKKEEPING

    return V.swept_keys(configs, ignore=BOOKKEEPING | {"run_id"})


# ---------------------------------------------------------------------------------------------
# what the dashboard shows, in W&B's names

@dataclass
class Plan:
    """The dashboard's content in W&B's names: where the runs are, how they are picked and grouped,
    the ranking metric(s) with their goals, and which curves and speed figures the runs have."""

    sweep: str
    entity: str  # "" = the W&B login's default entity (as it was for the runs)
    project: str
    filters: List[Any]  # wandb_workspaces.expr filters, AND-ed
    selection: str  # the filters in words
    factors: List[str]  # config keys, swept and not the seed: the runset's grouping
    headlines: List[Tuple[str, str]]  # (W&B summary key, goal)
    curves: List[Tuple[str, Optional[str]]]  # (W&B history key, goal or None)
    speed_curves: List[str]
    speed_totals: List[str]
    n_runs: int
    n_finished: int
    tasks: List[str]
    notes: List[str] = field(default_factory=list)


def plan(sw: Sweep, entity: Optional[str] = None, project: Optional[str] = None) -> Plan:
    """What to show for a sweep; `entity`/`project` override the runs' own."""
    from .config import RunConfig

    if {c.get("mode") for c in sw.configs.values()} == {"benchmark"}:
        raise DashboardError(f"{sw.folder}: a sweep of benchmarks (mode: benchmark: timed steps, no learning curves "
                             f"or ranking metric); its report shows them: dl2bench report {sw.folder}")
    online = (sw.manifest.get("sweep") or {}).get("wandb_sweep_id")
    entity, project = _where(sw, online, entity, project)
    # W&B got each run's recipe (its own family's keys, no bookkeeping) and run id as its config
    # (Tracker.start_wandb): only those can group or filter the runs there
    sent = set().union(*(RunConfig.recipe_of(c) for c in sw.configs.values()))
    factors = [k for k in sw.swept if k != REPLICATE and k in sent]
    filters, selection = _selection(sw, online)
    tasks = list(dict.fromkeys(str(s.get("task")) for s in sw.finished.values()))
    decls = {t: _declarations(t, [s for s in sw.finished.values() if str(s.get("task")) == t]) for t in tasks}
    stated = (sw.manifest.get("sweep") or {}).get("metric")
    headlines: List[Tuple[str, str]] = []
    curves: List[Tuple[str, Optional[str]]] = []
    for t in tasks:
        mine = [s for s in sw.finished.values() if str(s.get("task")) == t]
        col, goal = headline(stated, mine, decls[t])
        if (V.key(col), goal) not in headlines:
            headlines.append((V.key(col), goal))
        logged = _logged(sw, t)
        for c in list(decls[t].curve_metrics()) + [R.train_key("loss")]:
            if c in logged and V.key(c) not in [k for k, _ in curves]:
                curves.append((V.key(c), decls[t].goal_of(c)))
    logged = set().union(*(_logged(sw, t) for t in tasks))
    speed_curves = [V.key(c) for c in SPEED_CURVES if c in logged]
    totals = [c for c in SPEED_TOTALS if _present(c, sw.finished.values())]
    # the time to each of the task's targets that some run reached (a target nobody reached is an empty chart)
    targets = sorted({k for s in sw.finished.values() for k, v in s.items()
                      if k.startswith("time_to_") and _number(v)})
    notes = _notes(sw, online)
    return Plan(sweep=sw.name, entity=entity, project=project, filters=filters, selection=selection,
                factors=factors, headlines=headlines, curves=curves, speed_curves=speed_curves,
                speed_totals=[V.key(c) for c in totals + targets], n_runs=len(sw.configs),
                n_finished=len(sw.finished), tasks=tasks, notes=notes)


def _where(sw: Sweep, online: Optional[str], entity: Optional[str], project: Optional[str]) -> Tuple[str, str]:
    """The W&B entity and project: as given, else the runs' own. An online sweep's runs log where its
    W&B sweep configuration says (its agents start them); others where their configs say, which must
    agree when not given."""
    if online:
        wb = sw.manifest.get("wandb_config") or {}
        entities, projects = [str(wb.get("entity") or "")], [str(wb.get("project") or "dl2bench")]
    else:
        entities = sorted({str(c.get("entity") or "") for c in sw.configs.values()})
        projects = sorted({str(c.get("project") or "dl2bench") for c in sw.configs.values()})
    if project is None and len(projects) > 1:
        raise DashboardError(f"{sw.folder}: the runs log to several W&B projects ({', '.join(projects)}); "
                             "give --project for the dashboard's")
    if entity is None and len(entities) > 1:
        raise DashboardError(f"{sw.folder}: the runs log to several W&B entities "
                             f"({', '.join(e or 'the default' for e in entities)}); give --entity for the dashboard's")
    return (entities[0] if entity is None else entity), (projects[0] if project is None else project)


def _selection(sw: Sweep, online: Optional[str]) -> Tuple[List[Any], str]:
    """Filters that pick exactly this sweep's runs in its project. An online sweep's runs are W&B's
    sweep's (its agents start them; they carry no group). Otherwise the runs' W&B group, which a
    sweep sets to its name (sweep.expand), and their run ids (a config key W&B holds): the group alone
    would also take a same-named sweep's runs from another results folder logged to that project."""
    from wandb_workspaces import expr

    if online:
        return [expr.Metric("Sweep") == str(online)], f"the runs of W&B sweep {online}"
    groups = sorted({str(c.get("group") or "") for c in sw.configs.values()})
    if groups != [sw.name]:
        said = ", ".join(repr(g) for g in groups)
        raise DashboardError(f"{sw.folder}: the runs' W&B group is {said}, not the sweep's name {sw.name!r}: "
                             "these runs were not launched by this sweep's submit, so W&B cannot pick them "
                             "out as this sweep's")
    ids = sorted(sw.configs)
    filters = [expr.Metric("Group") == sw.name]
    if len(ids) > MAX_LISTED_RUNS:
        return filters, (f"W&B group {sw.name!r} (its {len(ids):,} run ids are too many to list: a same-named "
                         "sweep's runs from another results folder in this project are included too)")
    return filters + [expr.Config("run_id").isin(ids)], f"W&B group {sw.name!r} and this folder's {len(ids)} run ids"


def _declarations(task: str, summaries: List[Dict[str, Any]]):
    """The task's declared metrics as the report reads them: from its runs' summaries (schema 2),
    else from the task registry."""
    from reports.units import TaskDecl, from_registry, parse_summary

    for s in summaries:
        d = parse_summary(task, s, int(s.get("schema") or 1))
        if d is not None:
            return d
    return from_registry(task) or TaskDecl(task)


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v


def _present(col: str, summaries) -> bool:
    return any(_number(s.get(col)) for s in summaries)


def headline(stated: Any, summaries: List[Dict[str, Any]], decl) -> Tuple[str, str]:
    """The summary key the sweep ranks by and its goal, chosen as the report chooses it
    (reports/load.py choose_metric): the sweep's stated metric (or its best_/final_ value), else the
    task's test_<headline>, else best_val_<monitor>. A declared metric's goal is the declared one."""
    if isinstance(stated, dict) and stated.get("name"):
        name = str(stated["name"])
        goal = decl.goal_of(name) or ("minimize" if str(stated.get("goal") or "").startswith("min") else "maximize")
        for c in (name, f"best_{name}" if goal == "maximize" else f"final_{name}", f"final_{name}"):
            if _present(c, summaries):
                return c, decl.goal_of(c) or goal
    for choice in (decl.default_metric, decl.fallback_metric):
        if choice and _present(choice[0], summaries):
            return choice
    raise DashboardError(f"task {decl.task}: no finished run reports "
                         f"{(decl.default_metric or ('a declared metric',))[0]} (nor its validation value): "
                         "nothing to rank the runs by")


def _logged(sw: Sweep, task: str) -> set:
    """The local keys the sampled finished runs of `task` log per epoch."""
    out: set = set()
    for rid, rows in sw.rows.items():
        if str(sw.finished[rid].get("task")) == task:
            for row in rows:
                out.update(k for k, v in row.items() if _number(v))
    return out


def _notes(sw: Sweep, online: Optional[str]) -> List[str]:
    """What a reader of the dashboard must know that it cannot show: runs W&B never got, and runs
    whose offline W&B records are not uploaded yet."""
    notes = []
    off = [rid for rid, c in sw.configs.items() if c.get("wandb") == "disabled"]
    if off:
        notes.append(f"{len(off)} of {len(sw.configs)} runs were trained with W&B disabled: they are not in W&B")
    unsynced = [rid for rid in sw.configs if W.unsynced(sw.folder / rid)]
    if unsynced:
        notes.append(f"{len(unsynced)} runs logged offline and are not uploaded yet: {W.sync_command(sw.folder)}")
    return notes


# ---------------------------------------------------------------------------------------------
# the sections: one list of panels each, for the workspace and the report alike

@dataclass
class Section:
    name: str
    intro: str
    panels: List[Any]


def _better(goal: Optional[str]) -> str:
    return {"maximize": "higher is better", "minimize": "lower is better"}.get(goal or "", "")


def _titled(text: str, goal: Optional[str]) -> str:
    return f"{text} ({_better(goal)})" if _better(goal) else text


def sections(p: Plan) -> List[Section]:
    """The dashboard's sections, as report.html orders its own. New panel objects on every call: a
    panel carries its own id, and the workspace and the report each get their own."""
    import wandb_workspaces.reports.v2 as wr

    out = []
    heads = []
    for key, goal in p.headlines:
        if p.factors:  # one bar per level: the mean over seeds and the other factors, as the report's level figures
            heads += [wr.BarPlot(title=_titled(f"{key} by {f}", goal), metrics=[wr.SummaryMetric(key)],
                                 groupby=wr.Config(f), groupby_aggfunc=AGG, groupby_rangefunc=SPREAD)
                      for f in p.factors]
        else:  # one configuration: its mean and spread over the seeds
            heads.append(wr.ScalarChart(title=_titled(key, goal), metric=wr.SummaryMetric(key),
                                        groupby_aggfunc=AGG, groupby_rangefunc=SPREAD))
    by = ", ".join(p.factors) or "nothing (one configuration)"
    out.append(Section("Headline by factor", f"The ranking metric by each factor: mean and standard error over the "
                       f"runs at each level (seeds and the other factors pooled). Factors: {by}.", heads))
    curves = [wr.LinePlot(title=_titled(k, goal), x="epoch", y=[k], groupby_aggfunc=AGG, groupby_rangefunc=SPREAD)
              for k, goal in p.curves]
    out.append(Section("Learning curves (seeds pooled)", f"Against epoch, one line per configuration (grouped by "
                       f"{by}): the mean over its seeds and its standard error.", curves))
    if p.factors:  # with nothing varied, an axis per key and an importance ranking say nothing
        columns = ([wr.ParallelCoordinatesPlotColumn(metric=wr.Config(f)) for f in p.factors]
                   + [wr.ParallelCoordinatesPlotColumn(metric=wr.SummaryMetric(k)) for k, _ in p.headlines])
        out.append(Section("Parallel coordinates", "One line per run through its setting of each factor to its "
                           "ranking metric.", [wr.ParallelCoordinatesPlot(title="factors → " + ", ".join(
                               k for k, _ in p.headlines), columns=columns)]))
        out.append(Section("Parameter importance", "W&B's importance and correlation of each config key with the "
                           "ranking metric, over this sweep's runs.",
                           [wr.ParameterImportancePlot(with_respect_to=k) for k, _ in p.headlines]))
    speed = [wr.LinePlot(title=f"{k} per epoch", x="epoch", y=[k], groupby_aggfunc=AGG, groupby_rangefunc=SPREAD)
             for k in p.speed_curves]
    speed += [wr.BarPlot(title=f"{k} per configuration", metrics=[wr.SummaryMetric(k)], groupby_aggfunc=AGG,
                         groupby_rangefunc=SPREAD) for k in p.speed_totals]
    out.append(Section("Speed", "Training throughput (samples/s, warm-up excluded) and time per epoch, the training "
                       "time of each configuration and the time to the task's targets.", speed))
    return [s for s in out if s.panels]


def workspace(p: Plan):
    """The W&B workspace (a saved view of the project) showing this sweep's runs, grouped."""
    import wandb_workspaces.workspaces as ws
    from wandb_workspaces import expr

    return ws.Workspace(
        entity=p.entity, project=p.project, name=f"dl2bench sweep {p.sweep}",
        sections=[ws.Section(name=s.name, panels=s.panels, is_open=True) for s in sections(p)],
        # epoch is every series' step (Tracker defines it so); W&B's `Step` counts wandb.log calls
        settings=ws.WorkspaceSettings(x_axis="epoch", max_runs=_max_lines(p)),
        runset_settings=ws.RunsetSettings(filters=list(p.filters),
                                          groupby=[expr.Config(f) for f in p.factors]))


def _max_lines(p: Plan) -> int:
    # W&B draws 10 runs (or groups) per chart unless told: one line per configuration, up to 100
    return max(10, min(100, p.n_runs))


def report(p: Plan):
    """The W&B report: the sections as headed panel grids over this sweep's runs, grouped."""
    import wandb_workspaces.reports.v2 as wr

    blocks: List[Any] = [wr.TableOfContents(), wr.P(_about(p))]
    for s in sections(p):
        runset = wr.Runset(entity=p.entity, project=p.project, name=p.sweep, filters=list(p.filters),
                           groupby=[f"config.{f}" for f in p.factors])
        blocks += [wr.H1(s.name), wr.P(s.intro), wr.PanelGrid(runsets=[runset], panels=s.panels)]
    # entity given, always: the library's default asks W&B's API for the login's
    return wr.Report(entity=p.entity, project=p.project, title=f"Sweep report: {p.sweep}"[:128],
                     description=f"dl2bench sweep {p.sweep}: {p.n_finished} of {p.n_runs} runs finished",
                     blocks=blocks, width="fluid")


def _about(p: Plan) -> str:
    heads = "; ".join(_titled(k, g) for k, g in p.headlines)
    return (f"Sweep {p.sweep} ({', '.join(p.tasks)}): {p.n_runs} runs, {p.n_finished} finished. Ranked by {heads}. "
            f"Runs: {p.selection}; grouped by {', '.join(p.factors) or 'nothing'} (seeds pooled). "
            "Built by `dl2bench dashboard` from the sweep's results folder; report.html holds the same figures "
            "with confidence intervals.")


# ---------------------------------------------------------------------------------------------
# checking and writing: W&B's spec, as the library would send it

def workspace_spec(w) -> Dict[str, Any]:
    """The workspace as W&B's view spec (what `save` uploads, less the ids the server gives it)."""
    return json.loads(w._to_model().model_dump_json(by_alias=True, exclude_none=True))


def report_spec(r) -> Dict[str, Any]:
    """The report as W&B's report spec. A runset names its project by W&B's internal id, which only the
    server knows (`save` looks it up): offline the runsets are written without it, and the report's
    own entity/project say where they are."""
    import wandb_workspaces.reports.v2 as wr

    def offline(b):
        if isinstance(b, wr.PanelGrid):
            return dataclasses.replace(b, runsets=[dataclasses.replace(rs, entity="", project="") for rs in b.runsets])
        return b

    model = dataclasses.replace(r, blocks=[offline(b) for b in r.blocks])._to_model()
    return json.loads(model.model_dump_json(by_alias=True, exclude_none=True))


def describe_workspace(w) -> List[str]:
    """The workspace's runset and sections in words (what the command prints)."""
    rs = w.runset_settings
    groups = ", ".join(_name(g) for g in rs.groupby) or "nothing"
    lines = [f"runs: {rs.filters}", f"grouped by: {groups}"]
    for i, s in enumerate(w.sections, 1):
        lines.append(f"{i}. {s.name}")
        lines += [f"     {_panel(x)}" for x in s.panels]
    return lines


def describe_report(r) -> List[str]:
    """The report's runset and sections in the words of describe_workspace (they must say the same)."""
    import wandb_workspaces.reports.v2 as wr

    grids = [b for b in r.blocks if isinstance(b, wr.PanelGrid)]
    heads = [b for b in r.blocks if isinstance(b, wr.H1)]
    rs = grids[0].runsets[0] if grids else None
    groups = ", ".join(_config_key(g) for g in rs.groupby) if rs and rs.groupby else "nothing"
    lines = [f"runs: {rs.filters if rs else ''}", f"grouped by: {groups}"]
    for i, (h, g) in enumerate(zip(heads, grids), 1):
        lines.append(f"{i}. {_text(h)}")
        lines += [f"     {_panel(x)}" for x in g.panels]
    return lines


def _config_key(groupby: str) -> str:
    """A report runset's grouping as the config key: written `config.lr`, read back `config.lr.value`
    (wandb-workspaces 0.4.13) or `lr.value` (before)."""
    return groupby.removeprefix("config.").removesuffix(".value")


def _text(block) -> str:
    t = block.text
    return t if isinstance(t, str) else "".join(getattr(x, "text", str(x)) for x in t)


def _name(m: Any) -> str:
    return getattr(m, "name", m) if not isinstance(m, str) else m


def _panel(x: Any) -> str:
    kind = type(x).__name__
    if kind == "LinePlot":
        return f"line      {', '.join(map(_name, x.y))} vs {_name(x.x)}" + _agg(x)
    if kind == "BarPlot":
        by = f" by {_name(x.groupby)}" if x.groupby else " per configuration"
        return f"bar       {', '.join(map(_name, x.metrics))}{by}" + _agg(x)
    if kind == "ScalarChart":
        return f"scalar    {_name(x.metric)}" + _agg(x)
    if kind == "ParallelCoordinatesPlot":
        return "parallel  " + " | ".join(_name(c.metric) for c in x.columns)
    if kind == "ParameterImportancePlot":
        return f"importance of the config keys for {x.with_respect_to}"
    return kind


def _agg(x: Any) -> str:
    return f" ({x.groupby_aggfunc} ± {x.groupby_rangefunc})" if x.groupby_aggfunc else ""


def validate(w, r) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """Both specs, after checking that each reads back through the library's own models (pydantic
    validates every field) into a dashboard that says what the built one says."""
    import wandb_workspaces.reports.v2 as wr
    import wandb_workspaces.workspaces as ws
    from wandb_workspaces.reports.v2 import internal as report_internal
    from wandb_workspaces.workspaces import internal as ws_internal

    wspec, rspec = workspace_spec(w), report_spec(r)
    models = {}
    for what, spec, model in (("workspace", wspec, ws_internal.View), ("report", rspec, report_internal.ReportViewspec)):
        models[what] = model.model_validate(spec)
        if _pruned(json.loads(models[what].model_dump_json(by_alias=True, exclude_none=True))) != _pruned(spec):
            raise DashboardError(f"the {what}'s W&B spec does not read back as written (wandb-workspaces changed its format?)")
    back_w = ws.Workspace._from_model(models["workspace"])
    back_r = wr.Report._from_model(models["report"])
    if describe_workspace(back_w) != describe_workspace(w):
        raise DashboardError("the workspace does not read back as built (wandb-workspaces changed its format?): "
                             + "; ".join(set(describe_workspace(w)) ^ set(describe_workspace(back_w))))
    if describe_report(back_r) != describe_report(r):
        raise DashboardError("the report does not read back as built (wandb-workspaces changed its format?): "
                             + "; ".join(set(describe_report(r)) ^ set(describe_report(back_r))))
    return wspec, rspec


def _pruned(x: Any) -> Any:
    """A spec without its empty entries: the library writes a field it leaves empty and reads it back as
    an empty list (a heading's inline comments), which say the same to W&B."""
    if isinstance(x, dict):
        return {k: v for k, v in ((k, _pruned(v)) for k, v in x.items()) if v not in (None, [], {})}
    if isinstance(x, list):
        return [_pruned(v) for v in x]
    return x


def write(folder: Path, specs: Dict[str, Dict[str, Any]]) -> List[Path]:
    """OUT/<sweep>/dashboard/<file> for each spec: all written to temporary files first, then each
    renamed into place (fsynced), so a failure leaves the old files or nothing, never half of one."""
    out = Path(folder) / OUT
    try:
        out.mkdir(exist_ok=True)
    except OSError as e:
        raise DashboardError(f"{out}: cannot create the dashboard folder ({e.strerror or e})") from None
    tmp = {name: out / f".{name}.tmp{os.getpid()}" for name in specs}
    try:
        for name, spec in specs.items():
            tmp[name].write_text(json.dumps(spec, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        for name in specs:
            F.publish(tmp[name], out / name)
    except OSError as e:
        raise DashboardError(f"{out}: cannot write the dashboard ({e.strerror or e})") from None
    finally:
        for p in tmp.values():
            p.unlink(missing_ok=True)
    return [out / name for name in specs]


def save(w, r) -> Tuple[str, str]:
    """Upload both to W&B: the library's own save (GraphQL). Needs the server and an API key, so no
    test here exercises it; its failure (no login, no such project, no network) is one error."""
    try:
        w.save()
        r.save()
        return str(w.url), str(r.url)
    except Exception as e:  # noqa: BLE001 - whatever W&B's API raises, said in one line
        raise DashboardError(f"--save: W&B did not take the dashboard ({type(e).__name__}: "
                             f"{str(e).splitlines()[0] if str(e) else 'no message'}); the spec written offline "
                             "is unchanged") from None


# ---------------------------------------------------------------------------------------------
# command line

class _Parser(argparse.ArgumentParser):
    """Bad input is one line, as every other dl2bench refusal is."""

    def error(self, message):
        self.exit(2, f"error: {message} ({self.prog} --help)\n")


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    ap = _Parser(prog="dl2bench dashboard", description=__doc__.split("\n\n")[0],
                 formatter_class=argparse.RawDescriptionHelpFormatter,
                 epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    ap.add_argument("folder", type=Path, help="the sweep's results folder, OUT/<sweep>")
    ap.add_argument("--entity", help="W&B entity of the workspace and report (default: the runs'; saving needs one)")
    ap.add_argument("--project", help="W&B project (default: the runs')")
    ap.add_argument("--save", action="store_true",
                    help="also upload both to W&B: needs a W&B server and an API key (WANDB_API_KEY or `wandb login`)")
    return ap.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """0 built (and saved with --save); 2 bad input, 1 W&B refused the upload: one 'error: ...' line."""
    a = parse_args(argv)
    try:
        _importable()
        p = plan(read_sweep(a.folder), entity=a.entity, project=a.project)
        if a.save and not p.entity:
            raise DashboardError("--save: no W&B entity known (the runs' config names none: they went to the "
                                 "login's default); give --entity ENTITY")
        w, r = workspace(p), report(p)
        wspec, rspec = validate(w, r)
        paths = write(a.folder, dict(zip(FILES, (wspec, rspec))))
    except DashboardError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for line in summary_lines(p, w, paths):
        print(line)
    if not a.save:
        print(f"not saved: saving needs a W&B server: dl2bench dashboard {a.folder} --save "
              "(with WANDB_API_KEY set or after `wandb login`)")
        return 0
    try:
        urls = save(w, r)
    except DashboardError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"saved: workspace {urls[0]}\n       report {urls[1]}")
    return 0


def _importable() -> None:
    """The library imports here: an installed wandb-workspaces older than this wandb fails on import
    (before 0.4.2 it needs the wandb_gql that wandb no longer ships), and says so in one line."""
    try:
        import wandb_workspaces.reports.v2  # noqa: F401
        import wandb_workspaces.workspaces  # noqa: F401
    except ImportError as e:
        raise DashboardError(f"wandb-workspaces cannot be imported here ({type(e).__name__}: {e}): "
                             "pip install -U 'dl2bench[dashboard]'") from None


def summary_lines(p: Plan, w, paths: Sequence[Path]) -> List[str]:
    """What the command prints: where, what ranks the runs, the sections, and the spec files."""
    heads = "; ".join(_titled(k, g) for k, g in p.headlines)
    out = [f"dashboard of sweep {p.sweep}: {p.n_runs} runs ({p.n_finished} finished) in W&B project "
           f"{(p.entity or '<your default entity>')}/{p.project}",
           f"ranked by: {heads}"]
    out.append(f"runs: {p.selection}")  # the filter itself lists every run id
    out += describe_workspace(w)[1:]
    out += [f"note: {n}" for n in p.notes]
    out.append("written: " + ", ".join(str(x) for x in paths) + " (W&B's spec of the workspace and the report)")
    return out
