"""The `dl2bench` command (issue 26, part 6): train, submit, status, report, list and dashboard, run
as an installed command is (`python -m dl2bench`, the console script's own entry), from a folder
that is not the checkout. Bad input is one line, exit status 2."""
from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import assert_cli_refuses

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
import gen_results as G  # noqa: E402


def dl2bench(*args, cwd: Path, timeout=300) -> subprocess.CompletedProcess:
    """`dl2bench ARGS` as the console script runs it (dl2bench.cli:main), this tree first on the path."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "dl2bench", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def refused(r: subprocess.CompletedProcess, needle: str) -> str:
    said = r.stderr
    assert r.returncode == 2 and said.startswith("error: ") and said.count("\n") == 1, (r.returncode, said)
    assert needle in said and "Traceback" not in said, said
    return said


def in_process(argv):
    from dl2bench.cli import main

    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def test_help_names_every_command_and_a_bad_one_is_one_line(tmp_path):
    from dl2bench.cli import COMMANDS

    r = dl2bench("--help", cwd=tmp_path)
    assert r.returncode == 0 and all(f"dl2bench {c}" in r.stdout for c in COMMANDS), r.stdout
    assert set(COMMANDS) == {"train", "submit", "status", "report", "list", "dashboard"}
    refused(dl2bench(cwd=tmp_path), "give a command")
    refused(dl2bench("sumbit", "cifar_cnn", cwd=tmp_path), "'sumbit': not a dl2bench command (did you mean 'submit'?)")


def test_list(tmp_path):
    r = dl2bench("list", "optimizers", cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.startswith("optimizers:\n") and "  adam " in r.stdout, r.stderr
    assert "tasks:" in dl2bench("list", cwd=tmp_path).stdout
    refused(dl2bench("list", "optimizers", "a*", "extra", cwd=tmp_path), "unexpected argument 'extra'")


def test_submit_a_shipped_sweep_by_name_from_an_empty_folder(tmp_path):
    r = dl2bench("submit", "cifar_cnn", "--dry-run", "--cluster", "local", "--wandb", "offline", "--out", "runs",
                 cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "sweep cifar_cnn (grid" in r.stdout and "9 run(s)" in r.stdout and "nothing written" in r.stdout
    assert r.stdout.startswith("cifar_cnn: the shipped ") and list(tmp_path.iterdir()) == []
    suite = dl2bench("submit", "suites/course", "--dry-run", "--cluster", "local", "--wandb", "offline",
                     "--set", "device=cpu", cwd=tmp_path)
    assert suite.returncode == 0 and "suite course: 23 sweep(s)" in suite.stdout, suite.stderr
    refused(dl2bench("submit", "cifar_cnm", "--dry-run", "--cluster", "local", cwd=tmp_path),
            "cifar_cnm: cannot read sweep file")
    refused(dl2bench("submit", "cifar_cnn", "--parallel", "0", cwd=tmp_path), "(dl2bench submit --help)")


def test_status_of_a_submitted_sweep_and_of_one_never_submitted(tmp_path):
    root = tmp_path / "runs" / "s"
    runs = G.write_grid(root, {"optimizer": ["sgd", "adam"]}, seeds=(0,), manifest="s")
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["runs"] = {p.name: json.loads((p / "config.json").read_text()) for p in runs}
    (root / "manifest.json").write_text(json.dumps(manifest))
    (tmp_path / "s.yaml").write_text("name: s\nmethod: grid\nparameters:\n  optimizer: {values: [sgd, adam]}\n")
    r = dl2bench("status", "s.yaml", "--cluster", "local", cwd=tmp_path)
    assert r.returncode == 0 and "runs/s: 2 run(s)" in r.stdout and "finished       2" in r.stdout, r.stderr
    refused(dl2bench("status", "cifar_cnn", "--cluster", "local", cwd=tmp_path),
            "nothing was submitted for sweep 'cifar_cnn' here (no manifest.json)")
    refused(dl2bench("status", cwd=tmp_path), "required: sweep (dl2bench status --help)")


def test_report_of_a_small_folder_and_its_refusals(tmp_path):
    G.write_grid(tmp_path / "s", {"optimizer": ["sgd", "adam"]}, seeds=(0,), manifest="s")
    r = dl2bench("report", "s", cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.startswith("s: 2 runs -> "), r.stderr
    assert all((tmp_path / "s" / f).stat().st_size > 0 for f in ("report.html", "report.pdf", "runs.csv"))
    (tmp_path / "empty").mkdir()
    refused(dl2bench("report", "empty", cwd=tmp_path), "empty: empty folder, no runs to report")
    refused(dl2bench("report", cwd=tmp_path), "(dl2bench report --help)")


def test_report_without_its_extra_names_what_to_install(monkeypatch):
    import importlib.util

    from dl2bench.cli import extras

    real = importlib.util.find_spec
    monkeypatch.setattr(extras.importlib.util, "find_spec", lambda m, *a: None if m == "seaborn" else real(m, *a))
    code, out, err = in_process(["report", "runs/x"])
    assert code == 2 and err == "error: report: needs seaborn, not installed here: pip install 'dl2bench[report]'\n"


def test_a_gymnasium_task_without_its_extra_names_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "gymnasium", None)
    said = assert_cli_refuses({"task": "cartpole"}, "env_id", tmp_path)
    assert said == "error: env_id: Gymnasium is not installed here (pip install 'dl2bench[rl]')"


def test_train(tmp_path):
    r = dl2bench("train", "--help", cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.startswith("usage: python -m dl2bench.train") and "--task" in r.stdout
    refused(dl2bench("train", "--bogus", "1", cwd=tmp_path), "unknown key --bogus")


def test_dashboard_runs_as_the_installed_command_does(tmp_path):
    """Its builds are tested in test_dashboard.py; here: the command's help, and a folder that is no
    sweep's refused in one line."""
    pytest.importorskip("wandb_workspaces", reason="the dashboard extra: pip install 'dl2bench[dashboard]'")
    r = dl2bench("dashboard", "--help", cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.startswith("usage: dl2bench dashboard") and "--save" in r.stdout, r.stderr
    refused(dl2bench("dashboard", "runs/cifar_cnn", cwd=tmp_path), "runs/cifar_cnn: no such folder")
    refused(dl2bench("dashboard", cwd=tmp_path), "required: folder (dl2bench dashboard --help)")


def test_what_a_suites_expander_job_runs_is_the_command_that_was_typed(tmp_path):
    """On SLURM a dependent sweep is expanded by a job that runs `sys.executable ENTRY.again SUITE
    --expand NAME`: from a checkout jobs/submit.py (installed or not), installed `-m dl2bench submit`."""
    import importlib.util

    from dl2bench.cli import submit

    spec = importlib.util.spec_from_file_location("submit_cli", ROOT / "jobs" / "submit.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.SCRIPT.again == (str(ROOT / "jobs" / "submit.py"),) and submit.CONSOLE.again[:2] == ("-m", "dl2bench")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for entry in (script.SCRIPT, submit.CONSOLE):
        r = subprocess.run([sys.executable, *entry.again, "--help"], cwd=tmp_path, env=env, capture_output=True,
                           text=True, timeout=120)
        assert r.returncode == 0 and r.stdout.startswith(f"usage: {entry.prog} "), (entry, r.stderr)
