"""Pins the one patch of submitit's internals, `dl2bench.launch.executors._detach_local_jobs`.

It replaces `submitit.local.local.start_controller` with a wrapper that, for the duration of the call,
swaps the global `subprocess.Popen` for one that starts the controller in a session of its own, with
stdin/stdout on /dev/null and stderr in `<folder>/local-controller.err`. A submitit release that
renames start_controller, stops calling it through the module global, or starts the controller some
other way would leave the patch silently doing nothing: Ctrl-C in `submit.py --wait` would kill the
local runs again, and `submit.py | tee` would hang until the last run ended. These tests fail then:
first on the source they rely on, then on the property itself, with a real local job.
"""
from __future__ import annotations

import ast
import inspect
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import submitit.local.local as L

ROOT = Path(__file__).resolve().parents[1]
# what the patch adds to the Popen call: submitit passing any of these itself would override it
PATCH_KEYWORDS = {"start_new_session", "stdin", "stdout", "stderr"}


def _calls(func, match):
    tree = ast.parse(textwrap.dedent(inspect.getsource(func)))
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and match(n.func)]


def test_start_controller_is_a_module_function_that_takes_the_folder_first():
    assert inspect.isfunction(L.start_controller), "submitit.local.local.start_controller is gone"
    first = next(iter(inspect.signature(L.start_controller).parameters))
    assert first == "folder", f"the patch reads the folder as kwargs['folder'] or args[0]; first parameter: {first}"


def test_start_controller_starts_the_controller_with_subprocess_popen_and_no_stdio_of_its_own():
    src = inspect.getsource(L.start_controller)
    assert "subprocess.Popen(" in src, "start_controller no longer calls subprocess.Popen(: the patch swaps that"
    popens = _calls(L.start_controller, lambda f: isinstance(f, ast.Attribute) and f.attr == "Popen"
                    and isinstance(f.value, ast.Name) and f.value.id == "subprocess")
    assert len(popens) == 1, f"expected one subprocess.Popen call in start_controller, found {len(popens)}"
    given = {k.arg for k in popens[0].keywords}
    assert None not in given, "start_controller passes **kwargs to Popen: it may set what the patch sets"
    assert not given & PATCH_KEYWORDS, f"start_controller now sets {given & PATCH_KEYWORDS} itself"
    # the module looks Popen up on the subprocess module at call time (not `from subprocess import Popen`)
    assert L.subprocess is subprocess and "Popen" not in vars(L)


def test_the_local_executor_calls_start_controller_through_the_module_global_with_folder_by_name():
    calls = _calls(L.LocalExecutor._submit_command, lambda f: isinstance(f, ast.Name) and f.id == "start_controller")
    assert len(calls) == 1, "LocalExecutor._submit_command no longer calls the module's start_controller"
    assert "folder" in {k.arg for k in calls[0].keywords} or calls[0].args, "start_controller gets no folder"


def test_a_local_jobs_controller_outlives_ctrl_c_and_holds_no_pipe(tmp_path):
    """For real: a process (standing in for `submit.py --wait`, in a session of its own so that the test
    can send SIGINT to its whole process group as a terminal's Ctrl-C does) submits a local job through
    make_executor, which applies the patch. The job waits for a file. The controller must be a session
    leader with /dev/null and local-controller.err as its stdio; after SIGINT to the submitter's group
    the submitter's pipe must close while the job is still waiting; released, the job must finish."""
    release, done, logs = tmp_path / "release", tmp_path / "done", tmp_path / "logs"
    code = textwrap.dedent(f"""
        import os, time
        from dl2bench.launch import executors

        def hold(release, done):  # pickled by value (defined in __main__)
            import os, time
            while not os.path.exists(release):
                time.sleep(0.05)
            open(done, "w").write("ok")
            return "ok"

        ex = executors.make_executor("local", {str(logs)!r}, {{"max_requeues": 0, "time_min": 2}},
                                     executors.Resources(gpus=0, cpus=1), "pin")
        job = ex.submit(hold, {str(release)!r}, {str(done)!r})
        print(job.job_id, flush=True)
        time.sleep(120)  # as --wait does, until Ctrl-C
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    # every stdio a pipe, as under `submit.py | tee log`: the controller must hold none of them
    submitter = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, start_new_session=True, env=env, cwd=tmp_path)
    controller = None
    try:
        line = submitter.stdout.readline().decode().strip()
        assert line.isdigit(), (line, submitter.stderr.read().decode() if submitter.poll() is not None else "")
        controller = int(line)  # a local job's id is its controller's pid
        assert os.getsid(controller) == controller, "the controller is not in a session of its own"
        assert os.getpgid(controller) != submitter.pid
        fds = {n: os.readlink(f"/proc/{controller}/fd/{n}") for n in (0, 1, 2)}
        assert fds[0] == fds[1] == os.devnull, fds
        assert fds[2] == str(logs / "local-controller.err"), fds

        os.killpg(submitter.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the foreground process group
        submitter.communicate(timeout=60)  # returns at EOF: no process left holding the submitter's pipes
        assert submitter.returncode != 0  # the submitter itself was interrupted
        assert _alive(controller), "the controller ended with the submitter"
        assert not done.exists()

        release.write_text("")
        deadline = time.monotonic() + 60
        while not done.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert done.read_text() == "ok", "the job did not finish after Ctrl-C"
    finally:
        release.write_text("")
        if submitter.poll() is None:
            submitter.kill()
            submitter.communicate()
        deadline = time.monotonic() + 30
        while controller is not None and _alive(controller) and time.monotonic() < deadline:
            time.sleep(0.1)


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(") ", 1)[1][0] != "Z"
