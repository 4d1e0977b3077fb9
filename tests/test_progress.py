"""The time left that `submit.py --wait` prints, from recorded epoch times (no jobs needed)."""
from __future__ import annotations

from dl2bench.launch import progress


def test_an_unmeasured_slow_model_raises_the_estimate_as_its_epoch_drags_on():
    """Seen in the main command: fc and lenet measured at 2 s an epoch, then the wide CNN's first epoch
    took minutes while the line kept saying "about 40 s left". The epoch in progress is a lower bound
    on that model's epoch time."""
    configs = {"a": {"model": "fc"}, "b": {"model": "fc"}, "c": {"model": "wide"}, "d": {"model": "wide"}}
    epochs = {r: 2 for r in configs}
    logged = {"a": [2.0, 2.0], "b": [2.0, 2.0], "c": [], "d": []}
    st = {"a": ("finished", ""), "b": ("finished", ""), "c": ("running", ""), "d": ("running", "")}
    assert progress._seconds_left(configs, epochs, logged, st) == 4 * 2.0  # the guess from fc alone
    left = progress._seconds_left(configs, epochs, logged, st, current=("c", 150.0))
    assert left == 4 * 150.0 - 150.0  # 4 wide epochs of >= 150 s, 150 s of the first done
    # a model that is measured and on time keeps its measurement
    logged["c"] = [100.0]
    assert progress._seconds_left(configs, epochs, logged, st, current=("c", 30.0)) == 3 * 100.0 - 30.0


def test_the_epoch_in_progress_is_not_counted_from_before_its_job_was_submitted(tmp_path):
    """Seen resuming the smoke benchmark: a run whose job had been killed kept that attempt's
    metrics.jsonl, two hours old; the first line after the resubmit said "about 1031 min left"."""
    import json
    import os
    import time
    from datetime import datetime, timezone

    run = tmp_path / "r1"
    run.mkdir()
    (run / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "train_time": 5.0}) + "\n")
    two_hours_ago = time.time() - 7200
    os.utime(run / "metrics.jsonl", (two_hours_ago, two_hours_ago))
    rid, seconds = progress._in_progress(tmp_path, ["r1"])
    assert rid == "r1" and seconds > 7000  # without a manifest: the file's age (the old behaviour)
    resubmitted = datetime.fromtimestamp(time.time() - 30, timezone.utc).isoformat(timespec="seconds")
    manifest = {"submissions": [{"time": "2026-01-01T00:00:00+00:00", "jobs": {"r1": "1"}},
                                {"time": resubmitted, "jobs": {"r1": "2"}}]}
    rid, seconds = progress._in_progress(tmp_path, ["r1"], progress._submitted_at(manifest))
    assert rid == "r1" and 25 < seconds < 120
