"""Reports over task families (reports/units.py, reports/families/): every metric as its task
declares it, one section per task in a mixed folder, family figures only where their runs are,
schema-1 summaries still read, unknown future schemas a note. Generated stores in the real
on-disk format (tests/gen_results.py); one full build of a four-family folder, the rest cheaper."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import matplotlib  # noqa: E402

matplotlib.use("Agg")

import gen_results as G  # noqa: E402
from reports import build, render  # noqa: E402
from reports.analysis import analyse, analyse_tasks  # noqa: E402
from reports.load import load_folders  # noqa: E402
from reports.units import MetricDecl, TaskDecl, parse_summary  # noqa: E402


def task_sections(html: str) -> dict:
    """task -> the HTML of its part (from its task heading to the next one)."""
    starts = [(m.start(), m.group(1)) for m in re.finditer(r'<section class="task" id="task-([^"]+)"', html)]
    return {t: html[s:(starts[i + 1][0] if i + 1 < len(starts) else len(html))] for i, (s, t) in enumerate(starts)}


def text(html: str) -> str:
    """The visible text (tags dropped, entities kept as they are)."""
    return re.sub(r"<[^>]+>", " ", re.sub(r'src="data:[^"]+"', "", html))


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """Classification + autoencoder + anomaly + segmentation sweep folders in one report."""
    root = tmp_path_factory.mktemp("families")
    folders = G.write_mixed(root, small=True)
    out = root / "report"
    assert build.main([str(f) for f in folders] + ["--out", str(out)]) == 0
    return folders, out, (out / "report.html").read_text()


# ---------------------------------------------------------------------------------------------
# a mixed folder: one section per task, never a ranking across tasks

@pytest.mark.slow  # a four-family folder built in full
@pytest.mark.slow  # the mixed-family report folder (~20 s to build)
def test_mixed_folder_has_one_section_per_task(mixed):
    folders, out, html = mixed
    parts = task_sections(html)
    assert list(parts) == ["fashion_mnist", "fashion_mnist_ae", "fashion_mnist_anomaly", "shapes"]
    assert "<title>Sweep report: classify + autoencoder + anomaly + segmentation (4 tasks)</title>" in html
    for task, family in (("fashion_mnist", "classification"), ("fashion_mnist_ae", "autoencoder"),
                         ("fashion_mnist_anomaly", "autoencoder"), ("shapes", "segmentation")):
        assert f"Task: {task} ({family})" in parts[task]
        assert f"At a glance: {task}" in parts[task]
    # every section after the first task heading belongs to a task
    body = html[html.index('<section class="task"'):]
    assert all('data-task="' in s for s in re.findall(r"<section[^>]*>", body))
    runs = pd.read_csv(out / "runs.csv")
    assert len(runs) == 4 + 8 + 8 + 8 and set(runs["schema"]) == {2}


@pytest.mark.slow  # the mixed-family report folder (~20 s to build)
def test_mixed_folder_never_ranks_across_tasks(mixed):
    folders, out, html = mixed
    parts = task_sections(html)
    a_parts = analyse_tasks(load_folders(folders))
    assert [a.task for a in a_parts] == list(parts)
    for a in a_parts:
        assert all("task" not in f.columns for f in a.factors)  # task is never a factor
        assert set(a.runs["task"]) == {a.task}
    # each part's rankings hold only its own configurations
    def first_cells(task: str, key: str) -> list:
        m = re.search(rf'id="{task}-{key}".*?<tbody>(.*?)</tbody>', parts[task], re.S)
        rows = re.findall(r"<tr>(.*?)</tr>", m.group(1))
        return [re.sub(r"<[^>]+>", "", re.findall(r"<td>(.*?)</td>", r)[1 if key == "ranking" else 0]) for r in rows]

    assert sorted(first_cells("fashion_mnist", "table-factor:optimizer")) == ["adam", "sgd"]
    assert first_cells("fashion_mnist_ae", "ranking") == [  # lowest test MSE first
        "model=conv_ae, code_size=32", "model=dense_ae, code_size=32", "model=conv_ae, code_size=8",
        "model=dense_ae, code_size=8"]
    assert sorted(first_cells("shapes", "table-factor:loss")) == ["boundary_ce", "ce_dice", "cross_entropy", "dice"]
    assert "dense_ae" not in text(parts["fashion_mnist"]) and "ce_dice" not in text(parts["fashion_mnist_ae"])
    # the title page has each task's own best, no overall winner
    facts = dict(render.document(a_parts).facts)
    assert "best" not in facts and all(a.task in facts["best, per task"] for a in a_parts)
    assert "test accuracy" in facts["best, per task"] and "test mean IoU" in facts["best, per task"]


@pytest.mark.slow  # the mixed-family report folder (~20 s to build)
def test_each_task_ranks_by_its_own_declared_metric(mixed):
    folders, _, html = mixed
    parts = {a.task: a for a in analyse_tasks(load_folders(folders))}
    assert (parts["fashion_mnist"].metric, parts["fashion_mnist"].goal) == ("test_acc", "maximize")
    assert (parts["fashion_mnist_ae"].metric, parts["fashion_mnist_ae"].goal) == ("test_mse", "minimize")
    assert (parts["fashion_mnist_anomaly"].metric, parts["fashion_mnist_anomaly"].goal) == ("test_auroc", "maximize")
    assert parts["fashion_mnist_anomaly"].decl.monitor == "mse"
    assert (parts["shapes"].metric, parts["shapes"].goal) == ("test_miou", "maximize")


# ---------------------------------------------------------------------------------------------
# direction: a metric to minimise ranks ascending and says "lower is better"

@pytest.mark.slow  # the mixed-family report folder (~20 s to build)
def test_minimised_metric_ranks_ascending(mixed):
    folders, _, html = mixed
    ae = next(a for a in analyse_tasks(load_folders(folders)) if a.task == "fashion_mnist_ae")
    code = next(f for f in ae.factors if f.name == "code_size")
    assert ae.ranked_levels(code.column) == ["32", "8"]  # gen_results: a larger code reconstructs better
    means = ae.ok.groupby(code.column)["test_mse"].mean()
    assert means["32"] < means["8"]
    ranked = [float(m) for m in re.findall(r"<td>\d+</td><td>[^<]+</td><td>([0-9.]+) ± ", task_sections(html)["fashion_mnist_ae"])]
    assert len(ranked) == 4 and ranked == sorted(ranked)  # the ranking table, lowest MSE first
    part = text(task_sections(html)["fashion_mnist_ae"])
    assert "lower is better" in part and "higher is better" not in part.split("All test metrics")[0].split("Configurations ranked")[1]
    cls = text(task_sections(html)["fashion_mnist"])
    assert "higher is better" in cls


@pytest.mark.slow  # the mixed-family report folder (~20 s to build)
def test_loss_carries_its_declared_label(mixed):
    _, _, html = mixed
    parts = task_sections(html)
    ae = text(parts["fashion_mnist_ae"])
    assert "cross-entropy, nats" not in ae and not re.search(r"(?<!binary )cross-entropy", ae)
    assert "test loss (MSE per pixel)" in ae and "loss: training loss: MSE per pixel (MSE, lower is better)" in ae
    assert "loss: cross-entropy (nats, lower is better)" in text(parts["fashion_mnist"])
    # the learning curves' loss panel is labelled with the declared unit
    a = next(x for x in analyse_tasks(load_folders(mixed[0])) if x.task == "fashion_mnist_ae")
    assert a.unit("val_loss").axis() == "validation loss (MSE per pixel)"
    assert a.unit("test_mse").axis() == "test reconstruction MSE per pixel" and a.unit("test_mse").scale == 1
    assert a.unit("test_mse").digits >= 4  # 0.0123, not 0.012
    assert a.unit("time_to_val_mse_0.02").label == "time to val_mse ≤ 0.02"


@pytest.mark.slow  # the mixed-family report folder (~20 s to build)
def test_segmentation_losses_declared_differently_are_not_compared(mixed):
    folders, _, html = mixed
    seg = next(a for a in analyse_tasks(load_folders(folders)) if a.task == "shapes")
    assert seg.decl.metrics["loss"].mixed
    assert seg.decl.curve_metrics() == ("val_miou",)  # no loss panel mixing cross-entropy with Dice loss
    assert "the runs measure loss differently" in html
    part = text(task_sections(html)["shapes"])
    assert "All test metrics by configuration" in part and "test mean IoU" in part and "test pixel accuracy (%)" in part


# ---------------------------------------------------------------------------------------------
# family figures: only where their runs are, only in their task's section

@pytest.mark.slow  # the mixed-family report folder (~20 s to build)
def test_family_figures_only_in_their_sections(mixed):
    _, _, html = mixed
    parts = task_sections(html)
    kinds = {"fashion_mnist": [], "fashion_mnist_ae": ["reconstructions-", "metric-vs-code-size"],
             "fashion_mnist_anomaly": ["reconstructions-", "auroc-per-class", "auroc-over-classes"],
             "shapes": ["overlays-"]}
    every = {k for ks in kinds.values() for k in ks}
    for task, want in kinds.items():
        ids = re.findall(r'<(?:figure|div class="table") id="([^"]+)"', parts[task])
        for k in every:
            found = any(i.startswith(f"{task}-{k}") for i in ids)
            assert found == (k in want), (task, k, ids)
    assert "Autoencoder: reconstructions and code size" not in parts["shapes"]
    assert "Segmentation: what the models predict" in parts["shapes"]
    assert "each class tinted in its colour" in text(parts["shapes"])


def test_segmentation_overlays_have_a_class_legend(tmp_path):
    root = tmp_path / "seg"
    G.write_family_grid(root, "shapes", {"loss": ["cross_entropy", "dice"]}, seeds=(0,))
    a = analyse(load_folders([root]))
    with render.style():
        doc = render.document(a)
    fig = next(b for s in doc.sections for b in s.blocks if b.key == "overlays-1").fig
    legend = [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]
    assert legend == G.SHAPE_CLASSES[1:] + ["background (no tint)"]
    assert [ax.get_ylabel() for ax in fig.axes] == ["input", "truth", "loss\ncross_entropy", "loss\ndice"]


def test_family_figures_absent_without_their_runs(tmp_path):
    root = tmp_path / "cls"
    for run in G.write_grid(root, {"optimizer": ["sgd", "adam"]}, seeds=(0, 1)):
        # even a file that looks like an autoencoder's examples does not bring its figures along
        G.write_examples(run, {"task": "fashion_mnist_ae"}, {"mse": 0.02}, 0)
    a = analyse(load_folders([root]))
    with render.style():
        doc = render.document(a)
    keys = [b.key for s in doc.sections for b in s.blocks]
    assert not [k for k in keys if k.startswith(("reconstructions", "overlays", "auroc", "metric-vs-code"))]
    assert "family" not in [s.key for s in doc.sections]


def test_autoencoder_figures_read_examples(tmp_path):
    root = tmp_path / "ae"
    G.write_family_grid(root, "fashion_mnist_ae", {"code_size": [8, 64]}, seeds=(0,))
    a = analyse(load_folders([root]))
    with render.style():
        doc = render.document(a)
    figs = {b.key: b for s in doc.sections for b in s.blocks if hasattr(b, "fig")}
    grid = figs["reconstructions-1"]
    labels = [ax.get_ylabel() for ax in grid.fig.axes]
    assert labels == ["original", "code_size 8", "code_size 64"]  # no noise: no separate input row
    assert "8 test images" in grid.caption and "n = 1" in grid.caption
    curve = figs["metric-vs-code-size"].fig.axes[0]
    assert "lower is better" in curve.get_ylabel() and [t.get_text() for t in curve.get_xticklabels()] == ["8", "64"]
    # without examples.npz (a W&B source, an older run) the grid is left out, the rest stays
    for p in root.glob("*/examples.npz"):
        p.unlink()
    a = analyse(load_folders([root]))
    with render.style():
        keys = [b.key for s in render.document(a).sections for b in s.blocks]
    assert "reconstructions-1" not in keys and "metric-vs-code-size" in keys


@pytest.mark.slow  # the mixed-family report folder (~20 s to build)
def test_anomaly_table_is_mean_and_std_over_classes(mixed):
    _, _, html = mixed
    part = task_sections(html)["fashion_mnist_anomaly"]
    m = re.search(r'id="fashion_mnist_anomaly-auroc-over-classes".*?<tbody>(.*?)</tbody>', part, re.S)
    cells = re.findall(r"<td>([^<]*)</td>", m.group(1))
    assert cells[1] == "4" and re.match(r"0\.\d+ ± 0\.\d+ \(n=4\)", cells[2]), cells
    per_class = [G.AUROC_BY_CLASS[c] for c in range(4)]
    assert abs(float(cells[2].split(" ")[0]) - sum(per_class) / 4) < 0.02


# ---------------------------------------------------------------------------------------------
# schema versions

@pytest.mark.slow  # a report build of its own
def test_v1_folder_still_builds_with_accuracy_percentages(tmp_path):
    root = tmp_path / "old"
    G.write_manifest(root, "old")
    for opt in ("sgd", "adam"):
        for seed in (0, 1):
            G.write_run(root, {"optimizer": opt, "seed": seed}, schema=1)
    s = json.loads(next(root.glob("*/summary.json")).read_text())
    assert "schema" not in s and "metrics" not in s and s["metric"] == "val_acc"  # really the old format
    sw = load_folders([root])
    assert sw.tasks["fashion_mnist"].source == "registry" and sw.tasks["fashion_mnist"].family == "classification"
    a = analyse(sw)
    assert (a.metric, a.goal) == ("test_acc", "maximize") and a.ranked_levels("optimizer") == ["adam", "sgd"]
    assert a.unit("test_acc").axis() == "test accuracy (%)" and a.unit("val_loss").axis() == "validation loss (cross-entropy, nats)"
    paths = build.build_report(sw, root)
    html = paths["report.html"].read_text()
    # the best line, in percent (decimals follow the spread: two significant digits of the std)
    assert re.search(r"<dd>adam: \d\d\.\d{2,4} ± \d\.\d+ % \(n=2\) — (ahead of|not resolved)", html)
    assert "test accuracy (%), mean ± std (n)" in html and "Time to target accuracy" in html
    assert "val_acc ≥ 80%" in html and "higher is better" in html and 'class="task"' not in html
    assert set(pd.read_csv(paths["runs.csv"])["schema"]) == {1}


def test_v1_and_v2_runs_of_one_task_are_one_section(tmp_path):
    root = tmp_path / "both"
    G.write_run(root, {"optimizer": "sgd"}, schema=1)
    G.write_run(root, {"optimizer": "adam"}, schema=2)
    parts = analyse_tasks(load_folders([root]))
    assert len(parts) == 1 and parts[0].ranked_levels("optimizer") == ["adam", "sgd"]


@pytest.mark.slow  # a report build of its own
def test_unknown_future_schema_is_a_note_not_a_crash(tmp_path, capsys):
    root = tmp_path / "future"
    G.write_family_grid(root, "fashion_mnist_ae", {"code_size": [8, 64]}, seeds=(0,))
    for i, p in enumerate(sorted(root.glob("*/summary.json"))):
        s = json.loads(p.read_text())
        s["schema"] = 3
        if i == 0:
            s["metrics"] = ["mse", "loss"]  # a shape this report does not know
        p.write_text(json.dumps(s))
    assert build.main([str(root)]) == 0
    html = (root / "report.html").read_text()
    assert "schema 3, which this report does not know" in html
    assert pd.read_csv(root / "runs.csv")["schema"].tolist() == [3, 3]


def test_summary_without_declarations_falls_back_to_the_registry(tmp_path):
    """A run with no summary yet takes its task's declarations from the registry."""
    root = tmp_path / "running"
    G.write_run(root, {"optimizer": "sgd"}, status="incomplete", stop_at=2)
    sw = load_folders([root])
    assert sw.tasks["fashion_mnist"].source == "registry" and sw.metric == "test_acc"


# ---------------------------------------------------------------------------------------------
# declarations -> units

def test_units_follow_declarations():
    d = parse_summary("t", {"schema": 2, "family": "f", "headline": "miou", "monitor": "miou", "metrics": {
        "miou": {"goal": "maximize", "unit": "", "label": "mean IoU, foreground classes", "percent": False,
                 "splits": ["val", "test"]},
        "pixel_acc": {"goal": "maximize", "unit": "", "label": "pixel accuracy", "percent": True},
        "loss": {"goal": "minimize", "unit": "bits/dim", "label": "negative log-likelihood"},
        "broken": "not a mapping"}}, 2)
    assert set(d.metrics) == {"miou", "pixel_acc", "loss"} and d.default_metric == ("test_miou", "maximize")
    assert d.unit("test_miou").axis() == "test mean IoU" and d.unit("test_miou").scale == 1
    assert d.unit("final_val_pixel_acc").axis() == "final validation pixel accuracy (%)"
    assert d.unit("val_loss").axis() == "validation loss (negative log-likelihood, bits/dim)"
    assert d.unit("samples_per_s") is None and d.unit("test_accuracy_of_nothing") is None
    assert d.target_label("time_to_val_miou_0.85") == "val_miou ≥ 0.85"
    assert d.target_label("epochs_to_val_pixel_acc_0.9") == "val_pixel_acc ≥ 90%"
    assert d.curve_metrics() == ("val_miou", "val_loss")
    mse = TaskDecl("ae", metrics={"mse": MetricDecl("mse", "minimize", "MSE", "MSE")}, headline="mse", monitor="mse")
    assert mse.target_label("time_to_val_mse_0.01") == "val_mse ≤ 0.01" and mse.unit("test_mse").axis() == "test MSE"
    assert parse_summary("t", {"metrics": {"x": {"goal": "sideways"}}}, 2) is None
