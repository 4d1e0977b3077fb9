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
