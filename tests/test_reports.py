"""Reports (reports/build.py) over generated result stores in the real on-disk format
(tests/gen_results.py), over real runs of dl2bench.train, and over a stand-in for the W&B API.
The HTML is opened in headless Chromium and the PDF read back with poppler, as a person would."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # reports/ is a folder of the repo, not an installed package
    sys.path.insert(0, str(ROOT))

import matplotlib  # noqa: E402

matplotlib.use("Agg")

import gen_results as G  # noqa: E402
from reports import build, render  # noqa: E402
from reports.analysis import aggregate, analyse, t975  # noqa: E402
from reports.load import ReportError, load_folders  # noqa: E402
from reports.wandb_source import load_wandb  # noqa: E402

OUTPUTS = ("report.html", "report.pdf", "runs.csv", "curves.csv")


def make(path: Path, fn) -> Path:
    fn(path)
    return path


def report(folder: Path, out: Path = None):
    """Build into `out` (default: the folder); returns (analysis, paths)."""
    sw = load_folders([folder])
    paths = build.build_report(sw, out or folder)
    return analyse(load_folders([folder])), paths


def pdf_text(path: Path) -> str:
    return subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True).stdout


def pdf_pages(path: Path) -> int:
    info = subprocess.run(["pdfinfo", str(path)], capture_output=True, text=True, check=True).stdout
    return int(re.search(r"^Pages:\s+(\d+)", info, re.M).group(1))


needs_poppler = pytest.mark.skipif(shutil.which("pdftotext") is None or shutil.which("pdftoppm") is None,
                                   reason="poppler-utils (pdftotext, pdftoppm) not installed: apt-get install poppler-utils")


# ---------------------------------------------------------------------------------------------
# generated stores, built once per module (a build takes a few seconds)

@pytest.fixture(scope="module")
def one_factor(tmp_path_factory):
    root = tmp_path_factory.mktemp("reports") / "optimizers"
    G.write_grid(root, {"optimizer": ["sgd", "momentum", "adam"]}, seeds=(0, 1, 2), manifest="optimizers")
    return (root,) + report(root)


@pytest.fixture(scope="module")
def two_factors(tmp_path_factory):
    root = tmp_path_factory.mktemp("reports") / "grid"
    G.write_grid(root, {"optimizer": ["sgd", "adam"], "lr": [0.1, 0.01, 0.001]}, seeds=(0, 1))
    return (root,) + report(root)


@pytest.fixture(scope="module")
def cpu_gpu(tmp_path_factory):
    root = tmp_path_factory.mktemp("reports") / "devices"
    G.write_grid(root, {"model": ["mlp", "cnn"], "batch_size": [64, 256]}, seeds=(0, 1), devices=("cpu", "cuda"))
    return (root,) + report(root)


@pytest.fixture(scope="module")
def troubled(tmp_path_factory):
    """Finished runs plus one diverged, one failed, one killed mid-write and one early-stopped."""
    root = tmp_path_factory.mktemp("reports") / "troubled"
    G.write_grid(root, {"optimizer": ["sgd", "adam"]}, seeds=(0, 1, 2))
    G.write_run(root, {"optimizer": "sgd", "seed": 3}, status="diverged", stop_at=2)
    G.write_run(root, {"optimizer": "adam", "seed": 4}, status="failed", stop_at=1)
    G.write_run(root, {"optimizer": "adam", "seed": 5}, status="incomplete", stop_at=2, torn=True)
    G.write_run(root, {"optimizer": "sgd", "seed": 6}, status="early_stopped", stop_at=3)
    return (root,) + report(root)


def check_outputs(paths, root_out: Path):
    assert sorted(p.name for p in paths.values()) == sorted(OUTPUTS)
    for p in paths.values():
        assert p.parent == root_out and p.stat().st_size > 0
    assert not list(root_out.glob(".*.tmp*")), "temporary files left behind"


# ---------------------------------------------------------------------------------------------
# content

def test_one_factor(one_factor):
    root, a, paths = one_factor
    check_outputs(paths, root)
    assert [f.name for f in a.factors] == ["optimizer"]
    assert a.sweep.name == "optimizers" and a.metric == "test_acc"
    assert a.ranked_levels(a.factors[0].column) == ["adam", "momentum", "sgd"]  # gen_results' ceilings
    runs = pd.read_csv(paths["runs.csv"])
    assert len(runs) == 9 and set(runs["status"]) == {"finished"}
    assert {"optimizer", "lr", "test_acc", "samples_per_s", "device_name"} <= set(runs.columns)
    curves = pd.read_csv(paths["curves.csv"])
    assert len(curves) == 9 * 4 and {"run", "epoch", "val_acc", "val_loss", "seed"} <= set(curves.columns)
    html = paths["report.html"].read_text()
    for s in ("Sweep report: optimizers", "Factor: optimizer", "Learning curves by optimizer", "(n=3)",
              "Training throughput", "Time to target accuracy", "not reached"):
        assert s in html, s
    assert "Test accuracy: optimizer ×" not in html  # one factor: no heatmap


def test_two_factors_heatmap_and_ranking(two_factors):
    root, a, paths = two_factors
    assert [f.name for f in a.factors] == ["lr", "optimizer"]  # most levels first
    lr = a.factors[0]
    assert lr.numeric and lr.levels == ["0.001", "0.01", "0.1"]  # numeric levels in numeric order
    html = paths["report.html"].read_text()
    assert 'id="heatmap-factor:lr-factor:optimizer"' in html
    assert "Configurations ranked" in html and re.search(r"lr=0\.0+1, optimizer=adam", html)


def test_columns_that_change_together_are_one_factor(tmp_path):
    root = tmp_path / "opt"
    for opt, lr in (("sgd", 0.05), ("momentum", 0.01), ("adam", 0.001)):
        for seed in (0, 1):
            G.write_run(root, {"optimizer": opt, "lr": lr, "seed": seed})
    a = analyse(load_folders([root]))
    assert [f.name for f in a.factors] == ["optimizer + lr"]
    assert a.factors[0].levels == ["adam, lr=0.001", "momentum, lr=0.01", "sgd, lr=0.05"]


def test_bookkeeping_and_seed_are_not_factors(tmp_path):
    root = tmp_path / "same"
    for seed, group in ((0, "a"), (1, "b")):
        G.write_run(root, {"seed": seed, "group": group, "tags": group, "wandb": "offline", "progress": "none"})
    assert analyse(load_folders([root])).factors == []


@pytest.mark.slow  # the CPU/GPU report folder
def test_cpu_and_gpu_speedup(cpu_gpu):
    root, a, paths = cpu_gpu
    assert {f.name for f in a.factors} == {"model", "batch_size", "device"}
    html = paths["report.html"].read_text()
    assert 'id="speedup"' in html and "NVIDIA H100" in html
    m = re.search(r"<td>mlp, batch 64</td>.*?<td>([0-9.]+) ± [0-9.]+</td>", html)
    assert m and 20 < float(m.group(1)) < 30, "gen_results makes the GPU ~25x faster"
    facts = dict(render.document(a).facts)
    assert "NVIDIA H100" in facts["devices"] and "Intel" in facts["devices"] and "13.0" in facts["CUDA"]


def test_speedup_table_needs_both_devices(one_factor):
    _, a, paths = one_factor
    assert 'id="speedup"' not in paths["report.html"].read_text()


def test_diverged_failed_incomplete_runs_are_listed(troubled):
    root, a, paths = troubled
    runs = pd.read_csv(paths["runs.csv"])
    assert len(runs) == 10  # nothing dropped
    assert runs["status"].value_counts().to_dict() == {"finished": 6, "diverged": 1, "failed": 1,
                                                       "incomplete": 1, "early_stopped": 1}
    html = paths["report.html"].read_text()
    for s in ("non-finite training loss in epoch 2", "CUDA out of memory", "no summary.json: still running or killed",
              "dropped a torn last line", "1 diverged", "1 failed", "1 incomplete"):
        assert s in html, s
    # the means count finished and early-stopped runs only
    sgd = a.ok[a.ok["optimizer"] == "sgd"]
    assert len(sgd) == 4 and "(n=4)" in html
    header = dict(render.document(a).facts)["runs"]
    assert header.startswith("10:") and "1 diverged" in header and "1 incomplete" in header


def test_single_run(tmp_path):
    root = tmp_path / "one"
    G.write_run(root, {"optimizer": "adam"})
    a, paths = report(root)
    check_outputs(paths, root)
    assert a.factors == []
    html = paths["report.html"].read_text()
    assert "No config setting varies" in html and "n=1, no spread" in html
    # a run folder given directly is a sweep of one
    direct = next(p for p in root.iterdir() if p.is_dir())
    assert len(load_folders([direct]).runs) == 1


def test_runs_of_the_launch_manifest_without_a_result(tmp_path):
    """The launch layer lists every run in manifest.json ({run_id: config}) and writes a summary
    without config.json for a job lost before it started; queued runs have no folder at all."""
    root = tmp_path / "launched"
    done = G.write_grid(root, {"optimizer": ["sgd", "adam"]}, seeds=(0,), manifest="launched")
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["runs"] = {p.name: {k: v for k, v in json.loads((p / "config.json").read_text()).items() if k != "run_id"}
                        for p in done}
    lost = G.config_of({"optimizer": "adam", "seed": 1})
    queued = G.config_of({"optimizer": "sgd", "seed": 1, "batch_size": None})  # unresolved, as submitted
    manifest["runs"].update({lost["run_id"]: lost, queued["run_id"]: queued})
    (root / "manifest.json").write_text(json.dumps(manifest))
    (root / lost["run_id"]).mkdir()
    (root / lost["run_id"] / "summary.json").write_text(json.dumps(
        {"run_id": lost["run_id"], "status": "failed", "reason": "job 12_1 ended (TIMEOUT) without writing a summary"}))
    (root / "logs").mkdir()  # submitit's logs are not a run
    (root / "logs" / "12_0_log.out").write_text("...")
    a = analyse(load_folders([root]))
    assert len(a.runs) == 4 and [f.name for f in a.factors] == ["optimizer"]  # batch_size None is no level
    by_run = a.runs.set_index("run")
    assert by_run.loc[lost["run_id"], "status"] == "failed" and by_run.loc[lost["run_id"], "optimizer"] == "adam"
    assert by_run.loc[queued["run_id"], "status"] == "incomplete"
    assert "not started" in by_run.loc[queued["run_id"], "reason"]


@pytest.mark.slow  # three report builds
def test_several_folders_in_one_report(tmp_path):
    G.write_grid(tmp_path / "a", {"optimizer": ["sgd"]}, seeds=(0,))
    G.write_grid(tmp_path / "b", {"optimizer": ["adam"]}, seeds=(0,))
    sw = load_folders([tmp_path / "a", tmp_path / "b"])
    assert sw.name == "a + b" and len(sw.runs) == 2
    assert build.main([str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "out")]) == 0
    check_outputs({n: tmp_path / "out" / n for n in OUTPUTS}, tmp_path / "out")


def test_metric_from_manifest_and_fallback(tmp_path):
    root = tmp_path / "m"
    G.write_grid(root, {"optimizer": ["sgd", "adam"]}, seeds=(0,))
    G.write_manifest(root, "renamed", metric="test_loss", goal="minimize")
    sw = load_folders([root])
    assert (sw.name, sw.metric, sw.goal) == ("renamed", "test_loss", "minimize")
    assert analyse(sw).ranked_levels("optimizer")[0] == "adam"  # lowest loss first
    G.write_manifest(root, "renamed", metric="no_such_metric")
    sw = load_folders([root])
    assert sw.metric == "test_acc" and any("no_such_metric" in n for n in sw.notes)
    (root / "manifest.json").unlink()
    for s in root.glob("*/summary.json"):
        d = json.loads(s.read_text())
        d.pop("test_acc")
        s.write_text(json.dumps(d))
    sw = load_folders([root])
    assert sw.metric == "best_val_acc" and any("best_val_acc" in n for n in sw.notes)


def test_confidence_intervals():
    assert t975(2) == pytest.approx(12.706) and t975(31) == pytest.approx(2.042, abs=1e-3)
    assert t975(1000) == pytest.approx(1.962, abs=2e-3)
    agg = aggregate(pd.DataFrame({"g": ["a"] * 3 + ["b"], "v": [1.0, 2.0, 3.0, 5.0]}), ["g"], "v").set_index("g")
    assert agg.loc["a", "n"] == 3 and agg.loc["a", "std"] == pytest.approx(1.0)
    assert agg.loc["a", "hi"] - agg.loc["a", "mean"] == pytest.approx(4.303 / 3 ** 0.5)
    assert pd.isna(agg.loc["b", "lo"])  # one value: no interval, never a fake one


def test_one_colour_per_level_everywhere(two_factors):
    _, a, _ = two_factors
    with render.style():
        doc = render.document(a)
    opt = next(f for f in a.factors if f.name == "optimizer")
    figs = {b.key: b for s in doc.sections for b in s.blocks if hasattr(b, "fig")}
    curve_ax = figs[f"curves-{opt.column}"].fig.axes[0]
    line_colors = [tuple(round(c, 4) for c in matplotlib.colors.to_rgb(l.get_color())) for l in curve_ax.lines]
    expected = [tuple(round(c, 4) for c in opt.colors[l]) for l in opt.levels]
    assert list(dict.fromkeys(line_colors)) == expected  # each level's runs and mean, in level order
    final_ax = figs[f"final-{opt.column}"].fig.axes[0]
    ticks = {t.get_text(): tuple(round(c, 4) for c in matplotlib.colors.to_rgb(t.get_color()))
             for t in final_ax.get_yticklabels()}
    assert ticks == dict(zip(opt.levels, expected))
    table = next(b for s in doc.sections for b in s.blocks if getattr(b, "key", "") == f"table-{opt.column}")
    assert [tuple(round(c, 4) for c in x) for x in table.colors] == [ticks[l] for l in table.df.iloc[:, 0]]


@pytest.mark.slow  # the CPU/GPU report folder
def test_axis_labels_carry_units(cpu_gpu):
    _, a, _ = cpu_gpu
    with render.style():
        doc = render.document(a)
    for s in doc.sections:
        for b in s.blocks:
            if hasattr(b, "fig"):
                for ax in b.fig.axes:
                    if ax.get_label() == "<colorbar>":
                        continue
                    ylabel = ax.get_ylabel()
                    if ax.get_yscale() == "log" or "accuracy" in ylabel or "loss" in ylabel:
                        assert "(" in ylabel, f"{b.key}: no unit in {ylabel!r}"
                    xlabel = ax.get_xlabel()
                    if "accuracy" in xlabel:
                        assert "(%)" in xlabel, f"{b.key}: no unit in {xlabel!r}"


# ---------------------------------------------------------------------------------------------
# real runs of the training loop (the writer the report reads)

def test_report_from_real_training_runs(tiny, tmp_path):
    from dl2bench.train import run

    root = tmp_path / "real"
    for opt, lr in (("sgd", 0.05), ("adam", 1e-3)):
        run({**tiny, "optimizer": opt, "lr": lr, "epochs": 2}, root / opt)
    a, paths = report(root)
    assert [f.name for f in a.factors] == ["optimizer + lr"]
    assert set(a.runs["status"]) == {"finished"} and a.runs["test_acc"].notna().all()
    assert len(pd.read_csv(paths["curves.csv"])) == 4
    assert "Learning curves by optimizer + lr" in paths["report.html"].read_text()


# ---------------------------------------------------------------------------------------------
# bad input: one clear error naming the path, exit status 2, nothing written

@pytest.mark.parametrize("case", ["missing", "empty", "no_runs"])
def test_bad_input_is_one_clear_error(tmp_path, capsys, case):
    root = tmp_path / "sweep"
    if case != "missing":
        root.mkdir()
    culprit = root
    if case == "no_runs":
        (root / "notes.txt").write_text("hello")
        (root / "logs").mkdir()
    assert build.main([str(root)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and str(culprit) in err[0], err
    if root.exists():
        assert not [p.name for p in root.iterdir() if p.name in OUTPUTS or ".tmp" in p.name]


@pytest.mark.parametrize("case", ["bad_summary", "bad_config"] + [  # the rest in the slow tier: a report build each
    pytest.param(c, marks=pytest.mark.slow) for c in ("binary_summary", "bad_metrics", "bad_manifest", "list_manifest")])
def test_damaged_files_are_named_and_the_report_still_builds(tmp_path, capsys, case):
    """A damaged file (a disk error, a hand edit) is named on stderr and in the report's notes; the
    report is built from what can be trusted: a run with a damaged summary is listed as failed and not
    counted, one with damaged metrics keeps its results but loses its curves; never wrong numbers."""
    root = tmp_path / "sweep"
    G.write_grid(root, {"optimizer": ["sgd", "adam"]}, seeds=(0, 1), manifest="sweep")
    run_dir = sorted(p for p in root.iterdir() if p.is_dir())[0]
    m = json.loads((root / "manifest.json").read_text())  # the configs, as the launcher records them
    m["runs"] = {p.name: json.loads((p / "config.json").read_text()) for p in root.iterdir() if p.is_dir()}
    (root / "manifest.json").write_text(json.dumps(m))
    culprit = root / "manifest.json" if case.endswith("manifest") else \
        run_dir / {"bad_summary": "summary.json", "binary_summary": "summary.json", "bad_config": "config.json",
                   "bad_metrics": "metrics.jsonl"}[case]
    text = culprit.read_text()
    if case == "bad_metrics":  # a line torn in the middle of a finished run's file
        lines = text.splitlines()
        culprit.write_text("\n".join(lines[:1] + [lines[1][:25]] + lines[2:]) + "\n")
    elif case == "binary_summary":
        culprit.write_bytes(b"\xff\xfe\x00garbage")
    elif case == "list_manifest":
        culprit.write_text("[1, 2]")
    else:
        culprit.write_text(text[:20])
    assert build.main([str(root)]) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("warning: ") and str(culprit) in err[0], err
    runs = pd.read_csv(root / "runs.csv")
    html = (root / "report.html").read_text()
    assert str(culprit) in html
    mine = runs[runs["run"] == run_dir.name].iloc[0]
    if case.endswith("summary"):
        assert mine["status"] == "failed" and "summary.json is damaged" in mine["reason"]
        assert pd.isna(mine.get("test_acc"))
    else:
        assert mine["status"] == "finished" and 0 < mine["test_acc"] < 1
    curves = pd.read_csv(root / "curves.csv")
    assert (run_dir.name in set(curves["run"])) == (case != "bad_metrics")
    if case == "bad_config":
        assert mine["optimizer"] in ("sgd", "adam")  # from the manifest
    assert len(runs) == 4


def test_command_line_exit_status(tmp_path):
    (tmp_path / "empty").mkdir()
    got = subprocess.run([sys.executable, str(ROOT / "reports" / "build.py"), str(tmp_path / "empty")],
                         capture_output=True, text=True, cwd=tmp_path)
    assert got.returncode == 2 and got.stdout == ""
    assert got.stderr.strip() == f"error: {tmp_path / 'empty'}: empty folder, no runs to report (a run folder holds config.json)"


def test_a_failed_write_leaves_nothing_half_written(tmp_path, monkeypatch):
    root = tmp_path / "s"
    G.write_grid(root, {"optimizer": ["sgd", "adam"]}, seeds=(0,))
    old = {n: f"old {n}" for n in OUTPUTS}
    for n, text in old.items():
        (root / n).write_text(text)

    def boom(*a, **k):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(render, "to_pdf", boom)
    with pytest.raises(RuntimeError):
        build.build_report(load_folders([root]), root)
    assert {n: (root / n).read_text() for n in OUTPUTS} == old  # the previous report is intact
    assert not list(root.glob(".*tmp*"))


@pytest.mark.slow  # a large store
def test_large_reports_write_their_csvs_in_a_forked_process(tmp_path, monkeypatch):
    """Past CSV_IN_CHILD_ROWS the CSVs are written by a forked child while the figures are drawn: the
    same files as written in-process; a write that fails there fails the report here with its reason,
    and leaves the previous report and no temporary file."""
    root = tmp_path / "s"
    G.write_grid(root, {"optimizer": ["sgd", "adam"]}, seeds=(0, 1))
    build.build_report(load_folders([root]), tmp_path / "inline")
    monkeypatch.setattr(build, "CSV_IN_CHILD_ROWS", 0)
    build.build_report(load_folders([root]), tmp_path / "forked")
    for name in ("runs.csv", "curves.csv"):
        assert (tmp_path / "forked" / name).read_text() == (tmp_path / "inline" / name).read_text()
    old = {n: (tmp_path / "forked" / n).read_bytes() for n in OUTPUTS}

    def full(frames, tmp):
        (tmp["runs.csv"]).write_text("half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(build, "write_csvs", full)
    with pytest.raises(ReportError, match="No space left on device"):
        build.build_report(load_folders([root]), tmp_path / "forked")
    assert {n: (tmp_path / "forked" / n).read_bytes() for n in OUTPUTS} == old
    assert not list((tmp_path / "forked").glob(".*tmp*"))


# ---------------------------------------------------------------------------------------------
# W&B as a source. No W&B server is reachable here, so this is tested up to the API call: a
# stand-in for wandb.Api() with the attributes the adapter uses (runs with .id, .state, .config,
# .summary, .history(); api.sweep(path).runs/.config/.name; api.runs(path, filters)), filled with
# data shaped as the public API returns it for runs our Tracker mirrored (W&B's own "_" keys
# included). It is generated from a local store, not recorded from a live server.

class FakeRun:
    def __init__(self, run_dir: Path, state: str = "finished", drop_summary: bool = False):
        self.id = run_dir.name
        self.state = state
        cfg = json.loads((run_dir / "config.json").read_text())
        # what the Tracker sends (dl2bench.wandb_view): the run's own keys, sectioned metric names,
        # no declarations in the summary
        from dl2bench import wandb_view as V
        from dl2bench.config import RunConfig

        self.config = {**RunConfig.recipe_of(cfg), "run_id": cfg["run_id"], "_wandb": {"cli_version": "0.31.0"}}
        rows = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines() if l.strip()]
        summary = {} if drop_summary or not (run_dir / "summary.json").exists() \
            else json.loads((run_dir / "summary.json").read_text())
        last = rows[-1] if rows else {}
        self.summary = SimpleNamespace(items=lambda: {**V.row(last), **V.summary(summary), "_runtime": 12.5, "_step": len(rows),
                                                      "_wandb": {"runtime": 12}}.items())
        self._history = [{**V.row(r), "_step": i, "_runtime": float(i), "_timestamp": 1.7e9 + i} for i, r in enumerate(rows)]
        self._history.append({"_step": len(rows), "_runtime": 13.0, "system.cpu": 50.0})  # a row without epoch

    def history(self, samples=500, keys=None, x_axis="_step", pandas=True, stream="default"):
        assert pandas is False and samples >= len(self._history)
        return list(self._history)


class FakeApi:
    def __init__(self, runs):
        self._runs = runs
        self.calls = []

    def sweep(self, path):
        self.calls.append(("sweep", path))
        return SimpleNamespace(runs=self._runs, name="optimizers-sweep",
                               config={"method": "grid", "metric": {"name": "test_acc", "goal": "maximize"}})

    def runs(self, path, filters=None, **kw):
        self.calls.append(("runs", path, filters))
        return self._runs


@pytest.fixture
def wandb_store(tmp_path):
    root = tmp_path / "local"
    G.write_grid(root, {"optimizer": ["sgd", "adam"]}, seeds=(0, 1))
    G.write_run(root, {"optimizer": "sgd", "seed": 7}, status="incomplete", stop_at=2)
    G.write_run(root, {"optimizer": "adam", "seed": 8}, status="finished")
    dirs = sorted(p for p in root.iterdir() if p.is_dir())
    crashed = next(d for d in dirs if json.loads((d / "config.json").read_text())["seed"] == 8)
    fakes = []
    for d in dirs:
        if d == crashed:
            fakes.append(FakeRun(d, state="crashed", drop_summary=True))
        elif not (d / "summary.json").exists():
            fakes.append(FakeRun(d, state="running"))
        else:
            fakes.append(FakeRun(d))
    return root, FakeApi(fakes)


def test_wandb_adapter_gives_the_same_frames(wandb_store):
    root, api = wandb_store
    local = load_folders([root])
    remote = load_wandb("me/dl2bench", sweep="abc123", api=api)
    assert api.calls == [("sweep", "me/dl2bench/abc123")]
    assert remote.name == "optimizers-sweep" and remote.metric == "test_acc"
    key = ["run", "status"]
    lr = local.runs.set_index("run").sort_index()
    rr = remote.runs.set_index("run").sort_index()
    crashed = rr.index[rr["status"] == "failed"]
    assert len(crashed) == 1 and "crashed" in rr.loc[crashed[0], "reason"]
    same = rr.index.difference(crashed)
    assert (lr.loc[same, "status"] == rr.loc[same, "status"]).all()
    pd.testing.assert_series_equal(lr.loc[same, "test_acc"], rr.loc[same, "test_acc"])
    assert not any(c.startswith("_") for c in rr.columns)
    lc = local.curves.sort_values(["run", "epoch"]).reset_index(drop=True)
    rc = remote.curves.sort_values(["run", "epoch"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(lc[["run", "epoch", "val_acc", "val_loss"]], rc[["run", "epoch", "val_acc", "val_loss"]],
                                  check_dtype=False)
    assert [f.name for f in analyse(remote).factors] == [f.name for f in analyse(local).factors] == ["optimizer"]
    del key


def test_wandb_command_line(wandb_store, tmp_path, monkeypatch):
    _, api = wandb_store
    import wandb

    monkeypatch.setattr(wandb, "Api", lambda *a, **k: api)
    out = tmp_path / "wb"
    assert build.main(["--wandb", "me/dl2bench", "--group", "optimizers", "--out", str(out)]) == 0
    assert api.calls == [("runs", "me/dl2bench", {"group": "optimizers"})]
    check_outputs({n: out / n for n in OUTPUTS}, out)
    assert "wandb:me/dl2bench" in (out / "report.html").read_text()


def test_wandb_errors_are_clear(capsys, monkeypatch, tmp_path):
    class Down:
        def runs(self, *a, **k):
            raise ConnectionError("cannot reach api.wandb.ai")

    with pytest.raises(ReportError, match="wandb:me/p group g: ConnectionError"):
        load_wandb("me/p", group="g", api=Down())
    with pytest.raises(ReportError, match="expected ENTITY/PROJECT"):
        load_wandb("just-a-project", api=Down())
    with pytest.raises(ReportError, match="no runs"):
        load_wandb("me/p", api=FakeApi([]))


# ---------------------------------------------------------------------------------------------
# as a person would see them: the HTML in headless Chromium, the PDF through poppler

CHECK_SCRIPT = """<script>
window.addEventListener('load', () => {
  const imgs = Array.from(document.images).map(i => ({src: i.src.slice(0, 22), complete: i.complete,
                                                       w: i.naturalWidth, h: i.naturalHeight}));
  const pre = document.createElement('pre'); pre.id = 'imgcheck';
  pre.textContent = JSON.stringify({imgs: imgs, title: document.title,
                                    sections: document.querySelectorAll('section').length});
  document.body.appendChild(pre);
});
</script></body>"""


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.skip("chromium not installed (CI installs Debian's: apt-get install chromium)")


@pytest.mark.slow  # a real browser
@pytest.mark.parametrize("which", ["troubled", "cpu_gpu"])
def test_html_in_headless_chromium(which, request, tmp_path):
    exe = chromium()
    root, a, paths = request.getfixturevalue(which)
    html = paths["report.html"].read_text()
    # self-contained: every image inline, nothing fetched from anywhere
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", html) and "url(" not in html
    n_img = html.count("<img ")
    assert n_img >= 3 and html.count('src="data:image/png;base64,') == n_img
    probe = tmp_path / "probe.html"
    probe.write_text(html.replace("</body>", CHECK_SCRIPT))
    got = subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                          "--disable-component-update", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
                          "--virtual-time-budget=10000", "--dump-dom", probe.as_uri()],
                         capture_output=True, text=True, timeout=120)
    m = re.search(r'<pre id="imgcheck">(.*?)</pre>', got.stdout, re.S)
    assert m, f"no result from chromium: {got.stderr[-2000:]}"
    res = json.loads(m.group(1).replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">"))
    assert len(res["imgs"]) == n_img
    bad = [i for i in res["imgs"] if not i["complete"] or i["w"] <= 0 or i["h"] <= 0]
    assert not bad, f"images that did not decode: {bad}"
    assert res["title"].startswith("Sweep report") and res["sections"] >= 4


@pytest.mark.slow  # a real PDF renderer
@needs_poppler
def test_pdf_pages_and_text(troubled, tmp_path):
    root, a, paths = troubled
    pdf = paths["report.pdf"]
    text = pdf_text(pdf)
    pages = pdf_pages(pdf)
    assert f"page 1 of {pages}" in text and f"page {pages} of {pages}" in text
    figures = sum(1 for s in render.document(a).sections for b in s.blocks if hasattr(b, "fig"))
    assert pages >= 1 + figures  # title page, then a page per figure, tables flowing after them
    for s in ("Sweep report: troubled", "runs", "10: 6 finished, 1 early stopped, 1 diverged, 1 failed, 1 incomplete",
              "Learning curves by optimizer", "Runs without a final result", "non-finite training loss",
              "validation accuracy (%)", "mean ± std"):
        assert s in text, s
    subprocess.run(["pdftoppm", "-r", "40", "-png", str(pdf), str(tmp_path / "page")], check=True)
    pngs = sorted(tmp_path.glob("page-*.png"))
    assert len(pngs) == pages
    from PIL import Image

    for p in pngs:  # every page rendered and none blank
        im = Image.open(p).convert("L")
        assert im.getextrema()[0] < 100, f"{p.name} is blank"


@pytest.mark.parametrize("accs,verdict", [
    # the main command's smoke figures (3 seeds each): the best is within the noise of the runner-up
    ({"cnn": (0.35, 0.31, 0.40), "mlp": (0.34, 0.31, 0.36)}, "not resolved: the runner-up mlp is within the noise"),
    ({"cnn": (0.900, 0.910, 0.905), "mlp": (0.80, 0.81, 0.805)}, "ahead of the runner-up mlp (Welch's t-test"),
    ({"cnn": (0.90,), "mlp": (0.80,)}, "not resolved: one run of it or of the runner-up (mlp)"),
])
def test_the_best_says_whether_its_ranking_is_resolved(tmp_path, accs, verdict):
    """From recorded results: the title page's "best" names the runner-up it was compared with and
    whether the difference stands out of the seeds' noise, rather than crowning a level that merely
    has the higher mean."""
    from reports.tables import best_fact

    root = tmp_path / "s"
    G.write_manifest(root, "s")
    for model, values in accs.items():
        for seed, acc in enumerate(values):
            run = G.write_run(root, {"model": model, "seed": seed})
            s = json.loads((run / "summary.json").read_text())
            (run / "summary.json").write_text(json.dumps({**s, "test_acc": acc}))
    fact = best_fact(analyse(load_folders([root])))
    assert fact.startswith("cnn: ") and verdict in fact, fact


def test_a_smoke_sweep_says_so_first_with_its_description(tmp_path):
    """The title page of a sweep submitted with --smoke says it is laptop-sized (with the sizes it ran
    at) before anything else, and shows what the sweep file says it compares; a full-size one does not."""
    from reports.tables import header

    root = tmp_path / "s"
    G.write_manifest(root, "s")
    for seed in (0, 1):
        G.write_run(root, {"model": "mlp", "seed": seed})
    m = json.loads((root / "manifest.json").read_text())
    m["sweep"]["description"] = "MLP against\n  itself."
    m["submissions"] = [{"time": "2026-12-01T10:00:00+00:00", "command": "python jobs/submit.py s.yaml --smoke --wait"}]
    m["slurm"] = {"smoke": {"epochs": 2, "train_size": 4000}}
    (root / "manifest.json").write_text(json.dumps(m))
    facts = header(analyse(load_folders([root])))
    assert [k for k, _ in facts[:3]] == ["sweep", "size", "description"]
    assert facts[1][1].startswith("SMOKE SIZE (--smoke): s: epochs 2, train_size 4,000.") and "not a full-size" in facts[1][1]
    assert facts[2][1] == "s: MLP against itself."
    m["submissions"][0]["command"] = "python jobs/submit.py s.yaml --wait"
    (root / "manifest.json").write_text(json.dumps(m))
    assert "size" not in dict(header(analyse(load_folders([root]))))


def test_level_tables_give_each_models_parameters_and_flops(tmp_path):
    """What a model costs stands beside what it scores: parameters and forward FLOPs per sample per level,
    from the runs' summaries (a range where the runs of a level differ)."""
    from reports.tables import by_level

    root = tmp_path / "s"
    G.write_manifest(root, "s")
    for model, params, flops in (("cnn", 62006, 1_300_000), ("mlp", 52650, 105088)):
        for seed in (0, 1):
            run = G.write_run(root, {"model": model, "seed": seed})
            s = json.loads((run / "summary.json").read_text())
            (run / "summary.json").write_text(json.dumps({**s, "params": params + seed * (model == "mlp"),
                                                          "flops_per_sample": flops}))
    a = analyse(load_folders([root]))
    df = next(by_level(a, a.factors[0])).df.set_index("model")
    assert df.loc["cnn", "parameters"] == "62,006" and df.loc["cnn", "forward FLOPs/sample"] == "1.3 MFLOP"
    assert df.loc["mlp", "parameters"] == "52,650–52,651" and df.loc["mlp", "forward FLOPs/sample"] == "105 kFLOP"


def test_throughput_mean_and_ci_are_taken_in_log_space():
    """Throughput is drawn on a log axis: two runs at 100 and 10,000 samples/s have the geometric mean
    1,000, and a CI that is a ratio either side and stays above zero (an arithmetic one, 5,050 ± 63,000,
    runs off the axis)."""
    from reports.analysis import aggregate_log

    df = pd.DataFrame({"g": ["a", "a", "b", "b", "b"], "v": [100.0, 10000.0, 50.0, 50.0, 50.0]})
    out = aggregate_log(df, ["g"], "v").set_index("g")
    assert out.loc["a", "mean"] == pytest.approx(1000.0)
    assert 0 < out.loc["a", "lo"] < 100 and out.loc["a", "hi"] > 10000
    assert out.loc["a", "lo"] * out.loc["a", "hi"] == pytest.approx(1000.0 ** 2)  # symmetric in log space
    assert aggregate(df, ["g"], "v").set_index("g").loc["a", "lo"] < 0  # what the arithmetic CI gave
    assert out.loc["b", ["mean", "lo", "hi"]].tolist() == pytest.approx([50.0, 50.0, 50.0])


def test_targets_nobody_reached_collapse(tmp_path):
    """A target no run reached is not a column of 'not reached' cells: the caption says it once; when
    no run reached any target, the table is one line."""
    from reports.tables import epochs_to_target, time_to_target

    root = tmp_path / "s"
    G.write_manifest(root, "s")
    G.write_grid(root, {"optimizer": ["sgd", "adam"]}, seeds=(0, 1))
    a = analyse(load_folders([root]))
    t = next(time_to_target(a))
    reached = [c for c in t.df.columns if c != "configuration"]
    assert reached and all(not t.df[c].str.startswith("not reached (0/").all() for c in reached)
    assert "No run reached" in t.caption and "≥ 90%" in t.caption and not any("90%" in c for c in reached)
    for run in root.glob("*/summary.json"):  # now nobody reaches anything
        s = json.loads(run.read_text())
        run.write_text(json.dumps({k: (None if k.startswith(("time_to_", "epochs_to_")) else v) for k, v in s.items()}))
    a = analyse(load_folders([root]))
    assert list(epochs_to_target(a)) == []  # the time table says it for both
    t = next(time_to_target(a))
    assert len(t.df) == 1 and list(t.df.columns) == ["targets", "result"]
    assert t.df.iloc[0]["result"] == "not reached by any run (0/4 runs with a summary)"
    assert "≥ 80%" in t.df.iloc[0]["targets"] and "≥ 90%" in t.df.iloc[0]["targets"]


def test_throughput_that_changed_between_epochs_is_flagged(tmp_path):
    """A run that slowed to 40% half-way (another process on the machine) is listed with its slowest and
    fastest epoch and drawn hollow; steady runs are not listed."""
    from reports.figures import throughput
    from reports.tables import unsteady_throughput

    root = tmp_path / "s"
    G.write_manifest(root, "s")
    G.write_grid(root, {"optimizer": ["sgd", "adam"]}, seeds=(0, 1))
    assert list(unsteady_throughput(analyse(load_folders([root])))) == []
    slow = G.write_run(root, {"optimizer": "adam", "seed": 2}, slowed=0.4)
    a = analyse(load_folders([root]))
    (t,) = unsteady_throughput(a)
    assert t.df["run"].tolist() == [slow.name] and t.df.iloc[0]["configuration"] == "adam"
    ratio = float(t.df.iloc[0]["fastest/slowest"].rstrip("×"))
    assert 2.2 < ratio < 2.9 and "1 of 5 runs" in t.caption
    fig = next(throughput(a))
    from matplotlib.collections import PathCollection

    dots = [c for c in fig.fig.axes[0].collections if isinstance(c, PathCollection)]
    hollow = [c for c in dots if not len(c.get_facecolor())]
    assert sum(len(c.get_offsets()) for c in hollow) == 1
    assert "Hollow: a run whose fastest epoch" in fig.caption


def test_json_is_read_as_the_standard_library_reads_it(tmp_path):
    """orjson parses the run files where it can; what it refuses (NaN, integers past 64 bits) falls
    back to json, and damage is reported with json's line and column."""
    from reports.load import Damaged, read_json_or_damaged, read_metrics

    f = tmp_path / "summary.json"
    for text in ('{"a": 1, "b": [1.5, null, "x"], "c": {"d": true}}', '{"loss": NaN, "n": 123456789012345678901234}',
                 '{"big": 1e308, "neg": -0.0, "u": "\\u00e9\\u20ac"}'):
        f.write_text(text)
        assert read_json_or_damaged(f) == json.loads(text)
    f.write_text('{"a": 1,\n "b": }')
    with pytest.raises(Damaged, match="line 2 column 7"):
        read_json_or_damaged(f)
    m = tmp_path / "metrics.jsonl"
    m.write_text('{"epoch": 1, "loss": NaN}\n{"epoch": 2, "loss": 0.5}\n')
    rows, note = read_metrics(m, complete=True)
    assert rows[1] == {"epoch": 2, "loss": 0.5} and rows[0]["loss"] != rows[0]["loss"] and note is None


def test_a_table_of_many_columns_fits_the_pdf_page():
    """The GPU/CPU speedup table has 13 columns of figures like '18,091 (IQR 636)': it ran off the
    right edge of the PDF page while no column could shrink below 14 characters."""
    from reports.render import CHAR_W, MARGIN, PAGE, _layout_columns
    from reports.tables import Table

    cols = [f"GPU batch-1 latency speedup {i}" for i in range(14)]
    df = pd.DataFrame([["18,091 (IQR 1,636)"] * 14] * 3, columns=cols)
    widths, body, head = _layout_columns(Table(key="k", title="t", caption="", df=df))
    avail = int((PAGE[0] - 2 * MARGIN) / CHAR_W) - 2 * len(cols)
    assert sum(widths) <= avail
    assert all(len(line) <= w for row in body for cell, w in zip(row, widths) for line in cell)


def test_the_fast_paths_of_a_large_store_keep_every_value(tmp_path):
    """What the 50,000-run speed-ups (summary keys taken once per shape, curve columns named up
    front, the counted runs selected once) must not change: a list or mapping in a summary is JSON
    text in its cell, the config's value wins over the summary's, a key first logged by a later
    run or epoch is a column (empty for the runs that never logged it), and the counted runs
    follow the runs frame when a column is added."""
    from collections import OrderedDict

    from reports.load import assemble

    def rec(run, summary, metrics, **cfg):
        return {"sweep": "s", "run": run, "path": str(tmp_path / run), "config": {"task": "mnist_mlp", **cfg},
                "summary": summary, "metrics": metrics, "notes": [], "damaged": []}

    base = {"status": "finished", "best_val_acc": 0.9, "test_acc": 0.88, "model": "from-summary"}
    records = [
        rec("a", {**base, "classes": ["t-shirt", "trouser"]},
            [{"epoch": 1, "val_acc": 0.5}, {"epoch": 2, "val_acc": 0.7}], model="mlp", seed=0),
        rec("b", {**base, "best_val_acc": 0.8, "classes": OrderedDict(x=1), "lr": 0.5},
            [{"epoch": 1, "val_acc": 0.4}, {"epoch": 2, "val_acc": 0.6, "val_late": 3.0}], model="mlp", seed=1),
        rec("c", {**base, "status": "diverged", "best_val_acc": None}, [{"epoch": 1, "val_acc": 0.1}],
            model="cnn", seed=0),
    ]
    sw = assemble("s", None, records, [str(tmp_path)])
    runs = sw.runs.set_index("run")
    assert runs.loc["a", "classes"] == '["t-shirt", "trouser"]' and runs.loc["b", "classes"] == '{"x": 1}'
    assert runs.loc["a", "model"] == "mlp" and runs.loc["b", "lr"] == 0.5 and pd.isna(runs.loc["a", "lr"])
    cur = sw.curves
    assert list(cur.columns[:4]) == ["sweep", "run", "epoch", "val_acc"] and "val_late" in cur.columns
    late = cur.set_index(["run", "epoch"])["val_late"]
    assert late.loc[("b", 2)] == 3.0 and late.drop(("b", 2)).isna().all()
    a = analyse(sw)
    assert sorted(a.ok["run"]) == ["a", "b"] and a.ok is a.ok  # made once
    a.sweep.runs["extra"] = 1
    assert "extra" in a.ok.columns
    a.sweep.runs = a.sweep.runs[a.sweep.runs["run"] != "a"]
    assert sorted(a.ok["run"]) == ["b"]


def test_reading_ahead_changes_nothing_and_leaves_no_process(tmp_path, monkeypatch):
    """Large stores are read ahead into the page cache by a child process (xargs cat): the frames
    are the same as without it, and the child is gone once the store is read."""
    import os

    from reports import load as L

    root = tmp_path / "s"
    G.write_grid(root, {"optimizer": ["sgd", "adam"]}, seeds=(0, 1, 2))
    G.write_run(root, {"optimizer": "adam", "seed": 5}, status="incomplete", stop_at=2, torn=True)
    monkeypatch.setattr(L, "READ_AHEAD_MIN", 10**9)
    plain = load_folders([root])
    spawned = []
    import subprocess

    class Spy(subprocess.Popen):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            spawned.append(self)

    monkeypatch.setattr(subprocess, "Popen", Spy)
    monkeypatch.setattr(L, "READ_AHEAD_MIN", 1)
    ahead = load_folders([root])
    assert len(spawned) == 1 and spawned[0].args[-2:] == ["cat", "--"]
    assert spawned[0].returncode is not None  # waited for: no zombie left behind
    children = " ".join(open(f"/proc/self/task/{t}/children").read() for t in os.listdir("/proc/self/task"))
    assert str(spawned[0].pid) not in children.split()
    pd.testing.assert_frame_equal(plain.runs, ahead.runs)
    pd.testing.assert_frame_equal(plain.curves, ahead.curves)
    assert plain.notes == ahead.notes


def test_the_report_is_logged_as_a_wandb_report_artifact(tmp_path):
    """A real offline W&B run of job type report holding the report's files, read back from its
    record (dl2bench.wandb_log); the report stands even when W&B refuses it."""
    import time

    from dl2bench import wandb_log as W

    root = tmp_path / "optimizers"
    G.write_grid(root, {"optimizer": ["sgd", "adam"]}, seeds=(0, 1), manifest="optimizers")
    out = tmp_path / "rep"
    assert build.main([str(root), "--out", str(out), "--log-artifact", "offline"]) == 0
    (f,) = out.glob("wandb/offline-run-*/run-*.wandb")
    deadline = time.monotonic() + 30
    while (rec := W.read_run(f))["exit_code"] is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert rec["job_type"] == "report" and rec["exit_code"] == 0
    (art,) = rec["artifacts"]
    assert art["name"] == "report-optimizers" and art["type"] == "report"
    assert sorted(art["files"]) == sorted(OUTPUTS) and art["metadata"]["runs"] == 4
    # W&B refusing it (here: an init that raises, as a server would) is exit 1, the report kept
    import wandb

    def refused(*a, **k):
        raise wandb.errors.CommError("permission denied")

    out2 = tmp_path / "rep2"
    real = wandb.init
    wandb.init = refused
    try:
        assert build.main([str(root), "--out", str(out2), "--log-artifact", "online"]) == 1
    finally:
        wandb.init = real
    assert all((out2 / n).exists() for n in OUTPUTS)
