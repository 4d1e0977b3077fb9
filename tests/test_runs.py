"""dl2bench/runs.py owns the run folder: one atomic write, guarded reading of other runs' files,
finding runs; and no other module spells a run file's name or rolls its own atomic write."""
from __future__ import annotations

import ast
import json
import os
import threading
from pathlib import Path

import pytest

from dl2bench import runs

ROOT = Path(__file__).resolve().parents[1]


def test_an_interrupted_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    p = tmp_path / "summary.json"
    runs.write_json(p, {"status": "finished", "loss": float("nan")})
    assert json.loads(p.read_text()) == {"status": "finished", "loss": None}  # JSON has no NaN
    with pytest.raises(KeyboardInterrupt):
        with runs.atomic(p, "w") as f:
            f.write('{"status": "torn')
            raise KeyboardInterrupt
    assert json.loads(p.read_text())["status"] == "finished"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["summary.json"]


def test_npz_and_torch_files_are_written_whole_under_their_own_name(tmp_path):
    import numpy as np

    runs.save_npz(tmp_path / "examples.npz", a=np.arange(3))
    runs.save_torch(tmp_path / "cache.pt", {"x": 1})
    assert sorted(x.name for x in tmp_path.iterdir()) == ["cache.pt", "examples.npz"]  # numpy adds no suffix
    assert list(np.load(tmp_path / "examples.npz")["a"]) == [0, 1, 2]


@pytest.mark.parametrize("body, why", [("[1, 2]", "expected a JSON object, got list"),
                                       ('"finished"', "got str"), ("3", "got int"),
                                       ('{"a": ', "not valid JSON")])
def test_a_run_file_that_is_not_a_json_object_is_named(tmp_path, body, why):
    (tmp_path / "config.json").write_text(body)
    with pytest.raises(runs.RunFolderError, match=why) as e:
        runs.config(tmp_path)
    assert str(tmp_path / "config.json") in str(e.value)
    assert runs.maybe_json(tmp_path / "config.json") is None


def test_reading_a_fifo_neither_blocks_nor_passes(tmp_path):
    fifo = tmp_path / "config.json"
    os.mkfifo(fifo)
    out = {}

    def read():
        try:
            runs.config(tmp_path)
        except runs.RunFolderError as e:
            out["error"] = str(e)

    t = threading.Thread(target=read, daemon=True)
    t.start()
    t.join(10)
    assert not t.is_alive(), "reading a FIFO blocked"
    assert "not a regular file" in out["error"]
    assert not runs.is_run(tmp_path)  # and a folder with one is no run


def test_a_run_file_larger_than_the_bound_is_refused_unread(tmp_path):
    p = tmp_path / "summary.json"
    p.write_text(json.dumps({"pad": "x" * 2000}))
    with pytest.raises(runs.RunFolderError, match="2,011 bytes, more than the 1,000"):
        runs.read_json(p, limit=1000)
    assert runs.read_json(p, limit=10_000)["pad"] == "x" * 2000


def make_run(folder: Path, status=None, weights=True, task="fashion_mnist") -> Path:
    folder.mkdir(parents=True)
    runs.write_json(folder / runs.CONFIG, {"task": task, "run_id": folder.name})
    if status:
        runs.write_json(folder / runs.SUMMARY, {"status": status, "run_id": folder.name})
    if weights:
        (folder / runs.WEIGHTS).write_bytes(b"w")
    return folder


def test_finished_with_weights_needs_a_counted_status_and_the_file(tmp_path):
    assert runs.finished_with_weights(make_run(tmp_path / "a", "finished"))
    assert runs.finished_with_weights(make_run(tmp_path / "b", "early_stopped"))
    assert not runs.finished_with_weights(make_run(tmp_path / "c", "diverged"))
    assert not runs.finished_with_weights(make_run(tmp_path / "d", "finished", weights=False))
    assert not runs.finished_with_weights(make_run(tmp_path / "e", None))  # still going
    (tmp_path / "f").mkdir()  # not a run
    assert [p.name for p in runs.runs_in(tmp_path)] == ["a", "b", "c", "d", "e"]


def test_find_run_by_id_prefix_and_sweep_folder(tmp_path):
    a = make_run(tmp_path / "sweepA" / "0123456789ab", "finished")
    make_run(tmp_path / "sweepB" / "0123450000cd", "finished")
    assert runs.find_run("01234567", [tmp_path]) == a
    assert runs.find_run("0123456789ab", [a]) == a  # the root may be the run itself
    with pytest.raises(runs.RunNotFound, match="ambiguous"):
        runs.find_run("012345", [tmp_path])
    with pytest.raises(runs.RunNotFound, match="at least 6"):
        runs.find_run("0123", [tmp_path])
    with pytest.raises(runs.RunNotFound, match="letters and digits"):
        runs.find_run("******", [tmp_path])  # a glob would match every run
    with pytest.raises(runs.RunNotFound, match="not found"):
        runs.find_run("fedcba9876", [tmp_path])


# ---------------------------------------------------------------------------------------------
# one owner: nobody else spells a run file's name or writes one by hand

NAMES = (runs.CONFIG, runs.SUMMARY, runs.METRICS, runs.CHECKPOINT, runs.WEIGHTS)
# a write by hand is a call of one of these; each allowed site says why it is not a run-folder write
HAND_WRITES = {"replace", "rename", "savez", "savez_compressed", "save"}
ALLOWED = {
    ("dl2bench/checkpoint.py", "save"): "torch.save into an in-memory buffer, written by runs.atomic",
    ("dl2bench/train/loop.py", "replace"): "sets a corrupt checkpoint aside under another name: no new bytes",
}


def sources():
    for top in ("dl2bench", "reports", "jobs"):
        for p in sorted((ROOT / top).rglob("*.py")):
            rel = p.relative_to(ROOT).as_posix()
            if rel != "dl2bench/runs.py":
                yield rel, ast.parse(p.read_text(), rel)


def test_no_module_but_runs_spells_a_run_file_name():
    found = [f"{rel}:{n.lineno} {n.value!r}" for rel, tree in sources() for n in ast.walk(tree)
             if isinstance(n, ast.Constant) and n.value in NAMES]
    assert not found, "use the names in dl2bench/runs.py: " + "; ".join(found)


def test_no_module_but_runs_writes_a_file_atomically_by_hand():
    found = []
    for rel, tree in sources():
        for n in ast.walk(tree):
            if (isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr in HAND_WRITES
                    and isinstance(n.func.value, ast.Name) and n.func.value.id in ("os", "np", "numpy", "torch")
                    and (rel, n.func.attr) not in ALLOWED):
                found.append(f"{rel}:{n.lineno} {n.func.value.id}.{n.func.attr}")
    assert not found, "write through dl2bench.runs.atomic (temp, fsync, rename, clean-up): " + "; ".join(found)


def test_report_modules_take_a_family_file_name_from_its_wing():
    """A family file renamed in its task.py must not leave its report reading the old name."""
    found = [f"{p.name}:{n.lineno} {n.value!r}" for p in sorted((ROOT / "reports" / "families").glob("*.py"))
             for n in ast.walk(ast.parse(p.read_text())) if isinstance(n, ast.Constant)
             and isinstance(n.value, str) and n.value.endswith(".npz")]
    assert not found, "import the family's file-name constant from dl2bench/families/<family>/task.py: " + "; ".join(found)
