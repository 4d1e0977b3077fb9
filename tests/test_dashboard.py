"""`dl2bench dashboard` (issue 26, part 4): a W&B workspace and report per sweep, built and checked
offline from sweeps that really ran here (a classification sweep, and a GAN sweep over the feature
classifier it needs, each submitted with --cluster debug and W&B offline, 20-30 s together).

Every name the dashboard uses is held to what the runs put in W&B: their offline W&B records
(dl2bench.wandb_log reads them as `wandb sync` would upload them) and wandb_view.key of their local
metrics. Saving (`--save`) talks to W&B's server, which no test here can reach: it is not tested,
beyond refusing before any network call when no entity is known."""
from __future__ import annotations

import contextlib
import io
import json
import shutil
import sys
from pathlib import Path

import pytest

pytest.importorskip("wandb_workspaces", reason="the dashboard extra: pip install 'dl2bench[dashboard]'")

import wandb_workspaces.reports.v2 as wr  # noqa: E402
import wandb_workspaces.workspaces as ws  # noqa: E402
from wandb_workspaces.reports.v2 import internal as report_internal  # noqa: E402
from wandb_workspaces.workspaces import internal as ws_internal  # noqa: E402

from dl2bench import dashboard as D  # noqa: E402
from dl2bench import wandb_view as V  # noqa: E402
from dl2bench.wandb_log import read_run  # noqa: E402

SECTIONS = ["Headline by factor", "Learning curves (seeds pooled)", "Parallel coordinates", "Parameter importance",
            "Speed"]
TINY = """  epochs: {value: 2}
  batch_size: {value: 32}
  val_size: {value: 100}
  threads: {value: 1}
  progress: {value: none}
"""
SWEEPS = {
    "clf": "metric: {name: test_acc, goal: maximize}\nparameters:\n  task: {value: fashion_mnist}\n"
           "  model: {value: mlp}\n  optimizer: {values: [sgd, adam]}\n" + TINY + "  seed: {values: [0, 1]}\n",
    # the GAN's precision/recall/FID are measured in a trained classifier's features: that sweep first
    "gan_features": "parameters:\n  task: {value: fashion_mnist}\n  model: {value: lenet}\n  optimizer: {value: adam}\n"
                    "  lr: {value: 0.001}\n" + TINY + "  seed: {value: 0}\n",
    # no metric stated: the sweep ranks by what its task declares (test FID, lower is better)
    "gan": "parameters:\n  task: {value: fashion_mnist_gan}\n  model: {value: gan_mlp}\n  lr: {values: [0.0002, 0.001]}\n"
           "  pr_samples: {value: 100}\n  feature_run: {value: gan_features}\n" + TINY + "  seed: {values: [0, 1]}\n",
}


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """OUT holding clf/, gan_features/ and gan/, each submitted as a user would and run to the end."""
    from dl2bench.cli import main as dl2bench
    from dl2bench.data import datasets
    from helpers import make_idx_dataset

    root = tmp_path_factory.mktemp("dashboard")
    make_idx_dataset(root / "data" / "fashion-mnist")
    mp = pytest.MonkeyPatch()  # the module's runs happen before conftest's per-test isolation
    for k, v in {"DL2BENCH_DATA": root / "data", "DL2BENCH_CACHE": root / "cache", "WANDB_MODE": "offline",
                 "WANDB_SILENT": "true"}.items():
        mp.setenv(k, str(v))
    mp.delenv("WANDB_API_KEY", raising=False)
    mp.delenv("SLURM_CPUS_PER_TASK", raising=False)
    datasets._load.cache_clear()
    out = root / "runs"
    try:
        for name, body in SWEEPS.items():
            path = root / f"{name}.yaml"
            path.write_text(f"name: {name}\nmethod: grid\n{body}")
            with contextlib.redirect_stdout(io.StringIO()):
                assert dl2bench(["submit", str(path), "--cluster", "debug", "--out", str(out), "--wandb", "offline"]) == 0
        yield out
    finally:
        datasets._load.cache_clear()
        mp.undo()


def run_dashboard(*args):
    """`dl2bench dashboard ARGS` in-process (as the console script runs it): (exit status, stdout, stderr)."""
    from dl2bench.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(["dashboard", *map(str, args)])
        except SystemExit as e:  # argparse's refusals (and --help) end the process
            code = e.code
    return code, out.getvalue(), err.getvalue()


def wandb_records(folder: Path):
    """What W&B holds of each run of a sweep (its offline records, as `wandb sync` uploads them)."""
    out = {}
    for run in sorted(p for p in folder.iterdir() if (p / "config.json").exists()):
        (f,) = run.glob("wandb/offline-run-*/run-*.wandb")
        out[run.name] = read_run(f)
    return out


def panels(built):
    """(section name, panel) of a workspace, in order."""
    return [(s.name, p) for s in built.sections for p in s.panels]


def keys_used(built):
    """The W&B names the workspace's panels read: (history keys, summary keys, config keys)."""
    history, summary, config = set(), set(), set()
    for _, p in panels(built):
        if isinstance(p, wr.LinePlot):
            history.update(p.y)
            assert p.x == "epoch"  # the step every series is defined against (Tracker.start_wandb)
        elif isinstance(p, wr.BarPlot):
            summary.update(m.name for m in p.metrics)
            if p.groupby is not None:
                config.add(p.groupby.name)
        elif isinstance(p, wr.ScalarChart):
            summary.add(p.metric.name)
        elif isinstance(p, wr.ParallelCoordinatesPlot):
            for c in p.columns:
                (config if isinstance(c.metric, wr.Config) else summary).add(c.metric.name)
        elif isinstance(p, wr.ParameterImportancePlot):
            summary.add(p.with_respect_to)
    return history, summary, config


def named(key):
    """(section, name) of a filter or grouping key: `==` on one builds a filter, it does not compare."""
    return key.section, key.name


def check_against_wandb(folder: Path, built, plan):
    """Every key the dashboard reads is one that every finished run logged to W&B, and its filters
    pick exactly the folder's runs out of what W&B holds of them."""
    records = wandb_records(folder)
    history, summary, config = keys_used(built)
    for rid, rec in records.items():
        logged = set().union(*rec["history"])
        assert history <= logged, (rid, history - logged)
        assert summary <= set(rec["summary"]), (rid, summary - set(rec["summary"]))
        assert config <= set(rec["config"]), (rid, config - set(rec["config"]))
    # the filters: the group W&B got, and the run ids in W&B's config
    group, ids = plan.filters
    assert named(group.key) == ("run", "Group") and group.op == "=" and {rec["group"] for rec in records.values()} == {group.value}
    assert named(ids.key) == ("config", "run_id") and ids.op == "IN"
    assert sorted(ids.value) == sorted(rec["config"]["run_id"] for rec in records.values()) == sorted(records)
    return records


def check_specs(folder: Path, built_w, built_r):
    """The files written are W&B's spec models (pydantic-validated when read back), and they say what
    the built workspace and report say."""
    wspec = json.loads((folder / "dashboard" / "workspace.json").read_text())
    rspec = json.loads((folder / "dashboard" / "report.json").read_text())
    back_w = ws.Workspace._from_model(ws_internal.View.model_validate(wspec))
    back_r = wr.Report._from_model(report_internal.ReportViewspec.model_validate(rspec))
    assert D.describe_workspace(back_w) == D.describe_workspace(built_w)
    assert D.describe_report(back_r) == D.describe_report(built_r)
    assert D.describe_report(built_r) == D.describe_workspace(built_w)  # the report and the workspace agree
    assert sorted(p.name for p in (folder / "dashboard").iterdir()) == ["report.json", "workspace.json"]  # no temporaries
    return wspec, rspec


def build(folder: Path, **kw):
    p = D.plan(D.read_sweep(folder), **kw)
    return p, D.workspace(p), D.report(p)


def test_a_classification_sweeps_dashboard_builds_validates_and_reads_what_its_runs_log(swept):
    folder = swept / "clf"
    code, said, err = run_dashboard(folder)
    assert code == 0 and err == "", err
    p, w, r = build(folder)
    assert [s.name for s in w.sections] == SECTIONS
    assert [D._text(b) for b in r.blocks if isinstance(b, wr.H1)] == SECTIONS
    # grouping: the swept keys (swept.json, what the runs' W&B names use) without the seed
    assert json.loads((folder / V.SWEPT).read_text())["keys"] == ["optimizer", "seed"]
    assert p.factors == ["optimizer"] and list(map(named, w.runset_settings.groupby)) == [("config", "optimizer")]
    assert all(g.runsets[0].groupby == ["config.optimizer"] for g in r.blocks if isinstance(g, wr.PanelGrid))
    # the ranking metric: the sweep's test_acc, in W&B's name, higher is better
    summary = json.loads(next(folder.glob("*/summary.json")).read_text())
    assert summary["metric"] == "test_acc" and p.headlines == [(V.key("test_acc"), "maximize")] == [("test/acc", "maximize")]
    by_section = {}
    for name, panel in panels(w):
        by_section.setdefault(name, []).append(panel)
    assert [(b.metrics, b.groupby) for b in by_section["Headline by factor"]] == [
        ([wr.SummaryMetric("test/acc")], wr.Config("optimizer"))]
    # learning curves: the task's validation metrics and the training loss, each as the runs log it
    rows = [json.loads(line) for line in next(folder.glob("*/metrics.jsonl")).read_text().splitlines()]
    assert [c.y for c in by_section["Learning curves (seeds pooled)"]] == [[V.key(k)] for k in ("val_acc", "val_loss", "train_loss")]
    assert {"val_acc", "val_loss", "train_loss"} <= set(rows[0])
    pc = by_section["Parallel coordinates"][0]
    assert [c.metric for c in pc.columns] == [wr.Config("optimizer"), wr.SummaryMetric("test/acc")]
    assert [x.with_respect_to for x in by_section["Parameter importance"]] == ["test/acc"]
    speed = {k for x in by_section["Speed"] for k in (x.y if isinstance(x, wr.LinePlot) else [m.name for m in x.metrics])}
    assert {"samples_per_s", V.key("train_time"), V.key("train_time_total")} <= speed
    check_against_wandb(folder, w, p)
    check_specs(folder, w, r)
    # what the command printed: where, the ranking metric, the sections and their panels, and that it is not saved
    assert "ranked by: test/acc (higher is better)" in said and "grouped by: optimizer" in said
    assert [line.split(". ", 1)[1] for line in said.splitlines() if line[:1].isdigit()] == SECTIONS
    assert "bar       test/acc by optimizer (mean ± stderr)" in said and "line      val/acc vs epoch" in said
    assert "not saved: saving needs a W&B server" in said and "--save" in said
    assert "runs: W&B group 'clf' and this folder's 4 run ids" in said


def test_a_gan_sweeps_dashboard_ranks_by_its_declared_fid_lower_is_better(swept):
    folder = swept / "gan"
    code, said, err = run_dashboard(folder)
    assert code == 0 and err == "", err
    p, w, r = build(folder)
    assert [s.name for s in w.sections] == SECTIONS
    # the GAN declares FID (goal: minimize) as its headline: no accuracy anywhere
    summary = json.loads(next(folder.glob("*/summary.json")).read_text())
    assert summary["headline"] == "fid" and summary["metrics"]["fid"]["goal"] == "minimize"
    assert p.headlines == [(V.key("test_fid"), "minimize")] == [("test/fid", "minimize")]
    history, summaries, config = keys_used(w)
    assert not any("acc" in k for k in history | summaries)
    assert p.factors == ["lr"] and config == {"lr"} and list(map(named, w.runset_settings.groupby)) == [("config", "lr")]
    curves = [x.y[0] for name, x in panels(w) if name == "Learning curves (seeds pooled)"]
    assert curves == [V.key("val_fid"), V.key("train_loss")]  # FID per epoch, and the discriminator's loss
    assert [x.with_respect_to for _, x in panels(w) if isinstance(x, wr.ParameterImportancePlot)] == ["test/fid"]
    assert all("lower is better" in x.title for _, x in panels(w) if isinstance(x, wr.BarPlot) and "fid" in x.title)
    check_against_wandb(folder, w, p)
    check_specs(folder, w, r)
    assert "ranked by: test/fid (lower is better)" in said and "grouped by: lr" in said
    assert [line.split(". ", 1)[1] for line in said.splitlines() if line[:1].isdigit()] == SECTIONS


def test_the_ranking_metric_and_its_direction_follow_the_tasks_declaration(swept):
    sw = D.read_sweep(swept / "gan")
    done = list(sw.finished.values())
    decl = D._declarations("fashion_mnist_gan", done)
    assert D.headline(None, done, decl) == ("test_fid", "minimize")
    assert D.headline({"name": "test_fid", "goal": "maximize"}, done, decl) == ("test_fid", "minimize")  # declared wins
    assert D.headline({"name": "val_recall", "goal": "maximize"}, done, decl) == ("final_val_recall", "maximize")
    # runs without their test values: the best validation value of the monitored metric, as the report does
    no_test = [{k: v for k, v in s.items() if not k.startswith("test_")} for s in done]
    assert D.headline(None, no_test, decl) == ("best_val_fid", "minimize")
    with pytest.raises(D.DashboardError, match="task fashion_mnist_gan: no finished run reports test_fid"):
        D.headline(None, [{k: v for k, v in s.items() if "fid" not in k} for s in done], decl)


def test_the_notes_say_what_wandb_lacks(swept, tmp_path):
    folder = tmp_path / "clf"
    shutil.copytree(swept / "clf", folder, ignore=shutil.ignore_patterns("dashboard", "model.pt"))
    p = D.plan(D.read_sweep(folder))
    assert p.notes == [f"4 runs logged offline and are not uploaded yet: find {folder} -mindepth 3 -maxdepth 3 "
                       f"-path '*/wandb/offline-run-*' -type d -print0 | xargs -0 wandb sync && "
                       f"python -m dl2bench.wandb_lineage {folder}"]
    for f in folder.glob("*/wandb/offline-run-*/run-*.wandb"):  # what `wandb sync` leaves beside each it uploaded
        f.with_name(f.name + ".synced").touch()
    cfg_path = next(folder.glob("*/config.json"))
    cfg_path.write_text(json.dumps({**json.loads(cfg_path.read_text()), "wandb": "disabled"}))
    assert D.plan(D.read_sweep(folder)).notes == ["1 of 4 runs were trained with W&B disabled: they are not in W&B"]


def test_entity_and_project_come_from_the_runs_unless_given(swept):
    p, w, r = build(swept / "clf")
    assert (p.entity, p.project) == ("", "dl2bench") and (w.entity, w.project) == ("", "dl2bench")
    p, w, r = build(swept / "clf", entity="team", project="elsewhere")
    assert (w.entity, w.project, r.entity, r.project) == ("team", "elsewhere", "team", "elsewhere")
    assert all((g.runsets[0].entity, g.runsets[0].project) == ("team", "elsewhere")
               for g in r.blocks if isinstance(g, wr.PanelGrid))
    # offline, the report's runsets leave out the project's internal id, which only the server knows
    spec = D.report_spec(r)
    assert spec["project"] == {"name": "elsewhere", "entityName": "team"}


def test_an_online_sweep_is_picked_by_its_wandb_sweep_and_project(swept, tmp_path):
    folder = tmp_path / "clf"
    shutil.copytree(swept / "clf", folder, ignore=shutil.ignore_patterns("wandb", "dashboard", V.SWEPT))
    m = json.loads((folder / "manifest.json").read_text())
    m["sweep"]["wandb_sweep_id"] = "abc123xy"
    m["wandb_config"] = {**m.get("wandb_config", {}), "project": "online-proj", "entity": "team"}
    (folder / "manifest.json").write_text(json.dumps(m))
    p, w, r = build(folder)
    assert (p.entity, p.project) == ("team", "online-proj")
    assert w.runset_settings.filters == "Metric(\"Sweep\") == 'abc123xy'"
    assert p.factors == ["optimizer"]  # no swept.json: worked out from the run configs, seed left out


def test_past_the_listing_cap_the_runs_are_picked_by_their_group_and_it_says_so(swept, monkeypatch):
    monkeypatch.setattr(D, "MAX_LISTED_RUNS", 3)
    p, w, _ = build(swept / "clf")
    assert len(p.filters) == 1 and "too many to list" in p.selection
    assert "run_id" not in w.runset_settings.filters


def copy_of(swept: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "clf"
    shutil.copytree(swept / "clf", folder, ignore=shutil.ignore_patterns("wandb", "dashboard", "model.pt"))
    return folder


def refused(args, needle: str, watched: Path):
    before = sorted(str(p) for p in watched.rglob("*")) if watched.exists() else []
    code, said, err = run_dashboard(*args)
    assert code == 2 and said == "" and err.startswith("error: ") and err.count("\n") == 1, (code, said, err)
    assert needle in err and "Traceback" not in err, err
    assert (sorted(str(p) for p in watched.rglob("*")) if watched.exists() else []) == before  # nothing written
    return err


def test_bad_input_is_one_line_naming_it_and_nothing_is_written(swept, tmp_path):
    refused([tmp_path / "nope"], "nope: no such folder", tmp_path)
    folder = copy_of(swept, tmp_path)
    run = next(p for p in folder.iterdir() if (p / "config.json").exists())
    refused([run], "a run's folder, not a sweep's (give its parent", tmp_path)
    (tmp_path / "loose").mkdir()
    shutil.copytree(run, tmp_path / "loose" / run.name)
    refused([tmp_path / "loose"], "not a sweep's results folder (no manifest.json", tmp_path)
    # a sweep of benchmarks (speed only: nothing to rank or draw against epoch)
    configs = {p: json.loads(p.read_text()) for p in folder.glob("*/config.json")}
    for p, c in configs.items():
        p.write_text(json.dumps({**c, "mode": "benchmark"}))
    refused([folder], "a sweep of benchmarks (mode: benchmark", tmp_path)
    for p, c in configs.items():
        p.write_text(json.dumps(c))
    # a sweep none of whose runs has finished yet
    for s in folder.glob("*/summary.json"):
        s.unlink()
    refused([folder], "no finished runs (4 incomplete)", tmp_path)
    refused([], "required: folder (dl2bench dashboard --help)", tmp_path)


def test_runs_not_launched_by_the_sweep_are_refused(swept, tmp_path):
    folder = copy_of(swept, tmp_path)
    cfg_path = next(folder.glob("*/config.json"))
    cfg = json.loads(cfg_path.read_text())
    cfg_path.write_text(json.dumps({**cfg, "group": ""}))
    refused([folder], "the runs' W&B group is '', 'clf', not the sweep's name 'clf'", tmp_path)
    cfg_path.write_text(json.dumps({**cfg, "project": "other"}))
    refused([folder], "the runs log to several W&B projects (dl2bench, other); give --project", tmp_path)
    code, said, err = run_dashboard(folder, "--project", "other")
    assert code == 0 and "in W&B project <your default entity>/other" in said, err


def test_saving_without_an_entity_is_refused_before_anything_reaches_wandb(swept, tmp_path):
    folder = copy_of(swept, tmp_path)
    refused([folder, "--save"], "--save: no W&B entity known", tmp_path)


def test_a_failed_write_leaves_the_old_dashboard_whole(swept, tmp_path, monkeypatch):
    folder = copy_of(swept, tmp_path)
    assert run_dashboard(folder)[0] == 0
    before = {p.name: p.read_text() for p in (folder / "dashboard").iterdir()}

    def full_disk(tmp, path):  # both new files written to temporaries; the disk fills at the rename
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(D.F, "publish", full_disk)
    code, said, err = run_dashboard(folder)
    assert code == 2 and "cannot write the dashboard (No space left on device)" in err
    assert {p.name: p.read_text() for p in (folder / "dashboard").iterdir()} == before  # no temporaries, old files


def test_without_its_extra_the_command_names_what_to_install(monkeypatch):
    from dl2bench.cli import extras

    real = extras.importlib.util.find_spec
    monkeypatch.setattr(extras.importlib.util, "find_spec",
                        lambda m, *a: None if m == "wandb_workspaces" else real(m, *a))
    code, said, err = run_dashboard("runs/x")
    assert code == 2 and err == ("error: dashboard: needs wandb_workspaces, not installed here: "
                                 "pip install 'dl2bench[dashboard]'\n")


def test_a_wandb_workspaces_that_cannot_import_is_named(swept, tmp_path, monkeypatch):
    """An old wandb-workspaces beside a new wandb fails on import (0.4.1 and older need wandb_gql)."""
    monkeypatch.setitem(sys.modules, "wandb_workspaces.workspaces", None)
    refused([copy_of(swept, tmp_path)], "wandb-workspaces cannot be imported here (ModuleNotFoundError", tmp_path)


def test_a_refused_upload_is_one_line_and_the_offline_spec_stays(swept, tmp_path, monkeypatch):
    """W&B's side of --save cannot run here; its failure is stood in for (the library's save raising, as it
    does with no API key or no network), to hold the command to one line, exit status 1."""
    def no_server(self):
        raise RuntimeError("No API key configured. Use `wandb login` to log in.\nmore detail")

    monkeypatch.setattr(ws.Workspace, "save", no_server)
    folder = copy_of(swept, tmp_path)
    code, said, err = run_dashboard(folder, "--save", "--entity", "team")
    assert code == 1 and err == ("error: --save: W&B did not take the dashboard (RuntimeError: No API key configured. "
                                 "Use `wandb login` to log in.); the spec written offline is unchanged\n")
    assert "W&B project team/dl2bench" in said and "not saved" not in said
    assert json.loads((folder / "dashboard" / "workspace.json").read_text())["entity"] == "team"
