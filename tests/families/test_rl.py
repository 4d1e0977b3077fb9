"""Deep Q-learning: the grid game's rules by hand (moves, walls, wrap, eating, respawn, time limit,
the 5 x 5 view), its determinism (pinned, and the same episodes whatever the number of copies),
Gymnasium's own checker, the replay buffer and the exploration schedule, the TD target by hand
(termination vs truncation, Double DQN), training on the grid beats the random policy, exact
resume (buffer, target net, environments and every generator), CartPole through Gymnasium, and
bad input refused before anything is written."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from dl2bench.config import RunConfig
from dl2bench.families import MODELS
from dl2bench.families.rl import dqn, mouse
from dl2bench.families.rl import envs as V
from dl2bench.nets import count_parameters
from dl2bench.train import run
from helpers import assert_cli_refuses

FAST = {"wandb": "disabled", "progress": "none", "threads": 1}
# a grid run of a few seconds: 3 epochs of 1,000 transitions
GRID = {**FAST, "task": "mouse_grid", "epochs": 3, "epoch_steps": 1000, "learning_starts": 200,
        "eval_episodes": 4, "test_episodes": 20, "save_weights": False}


def board(game: mouse.MouseGrid, i: int, cheese=(), poison=(), at=(0, 0)) -> None:
    """Put copy i's mouse at `at` with items exactly where given (row, column)."""
    s = game.rules.size
    game.board[i] = 0
    for r, c in cheese:
        game.board[i, r * s + c] = 1
    for r, c in poison:
        game.board[i, r * s + c] = 2
    game.pos[i] = at[0] * s + at[1]
    game.t[i] = 0


# ---------------------------------------------------------------------------------------------
# the game


def test_moves_eat_respawn_and_walls():
    g = mouse.MouseGrid(1, mouse.Rules(size=5, cheese=1, poison=1, walls="wall"))
    g.reset([0])
    board(g, 0, cheese=[(0, 1)], poison=[(1, 0)], at=(0, 0))
    obs, r, term, trunc = g.step(np.array([0]))  # up, into the wall: stays
    assert g.snapshot(0)["pos"].tolist() == [0, 0] and r[0] == 0
    obs, r, _, _ = g.step(np.array([1]))  # right: onto the cheese
    assert r[0] == pytest.approx(0.5) and g.snapshot(0)["pos"].tolist() == [0, 1]
    assert g.cheese[0].sum() == 1 and not g.cheese[0][0, 1]  # eaten, and one new elsewhere
    obs, r, _, _ = g.step(np.array([3]))  # left
    obs, r, _, _ = g.step(np.array([2]))  # down: onto the poison
    assert r[0] == pytest.approx(-1.0) and g.poison[0].sum() == 1 and not g.poison[0][1, 0]
    assert not term.any() and not trunc.any()


def test_view_reads_zero_beyond_walls_and_wraps_on_a_torus():
    for walls in ("wall", "wrap"):
        g = mouse.MouseGrid(1, mouse.Rules(size=6, cheese=2, poison=1, walls=walls))
        g.reset([0])
        board(g, 0, cheese=[(0, 2), (5, 0)], poison=[(1, 1)], at=(0, 0))
        obs = g.observe()[0]  # window rows/cols -2..2 around (0, 0): centre is [2, 2]
        assert obs.shape == (2, 5, 5)
        assert obs[0, 2, 4] == 1 and obs[1, 3, 3] == 1  # cheese 2 right, poison down-right
        # (5, 0) is the row above (0, 0) on a torus, off the board with walls
        assert obs[0, 1, 2] == (1 if walls == "wrap" else 0)
        assert obs.sum() == (3 if walls == "wrap" else 2)
    g = mouse.MouseGrid(1, mouse.Rules(size=6, cheese=1, poison=0, walls="wrap"))
    g.reset([0])
    board(g, 0, cheese=[(3, 3)], at=(0, 0))
    g.step(np.array([3]))  # left off column 0 wraps to column 5
    assert g.snapshot(0)["pos"].tolist() == [0, 5]


def test_time_limit_truncates_and_the_last_cheese_terminates():
    g = mouse.MouseGrid(2, mouse.Rules(size=5, cheese=2, poison=0, max_steps=3))
    g.reset([1, 2])
    for _ in range(3):
        _, _, term, trunc = g.step(np.array([0, 0]))
    assert trunc.all() and not term.any()
    g = mouse.MouseGrid(1, mouse.Rules(size=5, cheese=1, poison=0, respawn=False, max_steps=50))
    g.reset([0])
    board(g, 0, cheese=[(2, 3)], at=(2, 2))
    _, r, term, trunc = g.step(np.array([1]))
    assert r[0] == pytest.approx(0.5) and term[0] and not trunc[0] and g.cheese[0].sum() == 0


def test_items_never_overlap_and_counts_stay_constant():
    rules = mouse.Rules(size=6, cheese=8, poison=6)
    g = mouse.MouseGrid(16, rules)
    g.reset(list(range(16)))
    rng = np.random.default_rng(0)
    for _ in range(300):
        g.step(rng.integers(4, size=16))
        assert (g.cheese.sum((1, 2)) == 8).all() and (g.poison.sum((1, 2)) == 6).all()
        assert not (g.cheese & g.poison).any()
        assert g.board[np.arange(16), g.pos].max() == 0  # nothing under the mouse


def _episode(game: mouse.MouseGrid, i: int, actions) -> bytes:
    h = hashlib.sha256()
    for a in actions:
        full = np.zeros(game.n, dtype=np.int64)
        full[:] = a
        obs, r, _, _ = game.step(full)
        h.update(obs[i].tobytes())
        h.update(r[i].tobytes())
    return h.digest()


def test_episodes_are_pinned_and_independent_of_the_number_of_copies():
    """Copy i draws only from its own generator: the same seed gives the same episode in a game
    of 1 copy or of 5, on every machine (the digest is pinned)."""
    actions = np.random.default_rng(7).integers(4, size=200)
    one = mouse.MouseGrid(1)
    one.reset([1234])
    five = mouse.MouseGrid(5)
    five.reset([1, 2, 1234, 4, 5])
    a, b = _episode(one, 0, actions), _episode(five, 2, actions)
    assert a == b
    assert a.hex()[:16] == PINNED_EPISODE, a.hex()[:16]


PINNED_EPISODE = "b5400c14f5cfa359"


def test_gymnasium_env_passes_check_env_and_reset_seed_is_exact():
    import gymnasium as gym
    from gymnasium.utils.env_checker import check_env

    mouse.register()
    env = gym.make(mouse.ENV_ID, size=8, cheese=5, poison=3)
    check_env(env.unwrapped)
    o1, _ = env.reset(seed=11)
    run1 = [env.step(a)[:2] for a in (0, 1, 2, 3, 1)]
    o2, _ = env.reset(seed=11)
    run2 = [env.step(a)[:2] for a in (0, 1, 2, 3, 1)]
    assert np.array_equal(o1, o2)
    assert all(np.array_equal(x[0], y[0]) and x[1] == y[1] for x, y in zip(run1, run2))
    assert env.render().shape == (8 * 6, 8 * 6, 3)


def test_rules_that_cannot_hold_are_refused():
    with pytest.raises(ValueError, match="do not fit"):
        mouse.Rules(size=3, cheese=6, poison=2)
    with pytest.raises(ValueError, match="walls"):
        mouse.Rules(walls="bounce")


# ---------------------------------------------------------------------------------------------
# DQN pieces


def test_exploration_schedules_reach_their_end_at_the_fraction():
    lin = dqn.Schedule(1.0, 0.05, 0.5, 1000, "linear")
    exp = dqn.Schedule(1.0, 0.05, 0.5, 1000, "exponential")
    assert lin(0) == 1.0 and lin(250) == pytest.approx(0.525) and lin(500) == 0.05 and lin(999) == 0.05
    assert exp(0) == 1.0 and exp(500) == 0.05 and exp(250) == pytest.approx(0.05 ** 0.5)
    assert all(exp(t) >= exp(t + 1) for t in range(600))


def test_replay_keeps_the_newest_and_samples_only_what_was_written():
    rb = dqn.Replay(5, (2,), torch.device("cpu"))
    for k in range(3):  # 2 + 2 + 2 transitions into 5 slots: the first one is overwritten
        obs = np.array([[2 * k, 0], [2 * k + 1, 0]], dtype=np.float32)
        rb.add(obs, np.array([k, k]), np.array([k, k], dtype=np.float32), obs + 100, np.array([False, True]))
    assert rb.size == 5 and rb.pos == 1
    assert sorted(rb.obs[:, 0].tolist()) == [1, 2, 3, 4, 5]
    assert np.array_equal(rb.next_obs[:, 0], rb.obs[:, 0] + 100)
    young = dqn.Replay(100, (2,), torch.device("cpu"))
    young.add(np.ones((3, 2), np.float32), np.zeros(3), np.zeros(3), np.ones((3, 2), np.float32), np.zeros(3))
    obs, *_ = young.sample(64, torch.Generator().manual_seed(0))
    assert (obs == 1).all()  # never an unwritten (zero) slot


class _Table(torch.nn.Module):
    """Q(s) = the row of a table picked by s[0] (a one-hot state index)."""

    def __init__(self, table):
        super().__init__()
        self.table = torch.nn.Parameter(torch.tensor(table, dtype=torch.float32))

    def forward(self, s):
        return s @ self.table


def _step_with(q, target_table, double, gamma=0.5):
    envs = V.GridEnvs(1, mouse.Rules(size=5, cheese=1, poison=0))
    rb = dqn.Replay(4, (2,), torch.device("cpu"))
    s = dqn.Settings(gamma=gamma, batch_size=4, train_every=1, learning_starts=0, target_every=10**9, tau=1.0,
                     double=double, loss="mse", clip_norm=None)
    opt = torch.optim.SGD(q.parameters(), lr=0.0)

    class Sched:
        lr = 0.0

        def step(self):
            pass

    st = dqn.DQNStep(q, envs, rb, dqn.Schedule(1, 1, 1, 1), s, opt, Sched(), None, torch.device("cpu"), 0, [0])
    with torch.no_grad():
        st.target.table.copy_(torch.tensor(target_table))
    return st, rb


def test_td_target_by_hand_termination_stops_bootstrapping_truncation_does_not():
    """Two states (one-hot), 2 actions. Transition A: s0 -a1-> s1, r 1, not terminated (a time
    limit's truncation stores terminated False); B: s0 -a0-> s1, r 1, terminated.
    Target net: Q(s1) = [3, 5]. y_A = 1 + 0.5 * 5 = 3.5; y_B = 1. Online Q(s0) = [2, 4]."""
    q = _Table([[2.0, 4.0], [7.0, 0.0]])
    st, rb = _step_with(q, [[0.0, 0.0], [3.0, 5.0]], double=False)
    s0, s1 = np.array([[1, 0]], np.float32), np.array([[0, 1]], np.float32)
    rb.add(s0, np.array([1]), np.array([1.0], np.float32), s1, np.array([False]))
    rb.add(s0, np.array([0]), np.array([1.0], np.float32), s1, np.array([True]))
    idx = torch.randint(rb.size, (4,), generator=torch.Generator().manual_seed(st.sampler.initial_seed()))
    q_sa = torch.tensor([4.0, 2.0])[idx]
    y = torch.tensor([3.5, 1.0])[idx]
    expected = ((q_sa - y) ** 2).mean().item()
    assert st.update().item() == pytest.approx(expected)


def test_double_dqn_takes_the_online_nets_action():
    """Online Q(s1) = [7, 0] picks action 0, where the target says 3 (not its own max 5):
    y = 1 + 0.5 * 3 = 2.5 for every sample."""
    q = _Table([[2.0, 4.0], [7.0, 0.0]])
    st, rb = _step_with(q, [[0.0, 0.0], [3.0, 5.0]], double=True)
    s0, s1 = np.array([[1, 0]], np.float32), np.array([[0, 1]], np.float32)
    rb.add(s0, np.array([1]), np.array([1.0], np.float32), s1, np.array([False]))
    assert st.update().item() == pytest.approx((4.0 - 2.5) ** 2)


def test_qnet_parameter_counts_match_their_docstrings():
    assert count_parameters(MODELS["qnet_fc"]((2, 5, 5), 4)) == 16624
    assert count_parameters(MODELS["qnet_fc"]((4,), 2)) == 10934
    assert count_parameters(MODELS["qnet_conv"]((2, 5, 5), 4)) == 1180
    conv = MODELS["qnet_conv"]((2, 5, 5), 4)
    shapes = []
    x = torch.zeros(1, 2, 5, 5)
    for layer in conv:
        x = layer(x)
        shapes.append(tuple(x.shape[1:]))
    assert (8, 4, 4) in shapes and (16, 3, 3) in shapes and (144,) in shapes and shapes[-1] == (4,)
    for name, counts in (("qnet_fc", "16,624"), ("qnet_conv", "1,180")):
        assert counts in MODELS.doc(name)


# ---------------------------------------------------------------------------------------------
# training


@pytest.mark.parametrize("model", ["qnet_fc", "qnet_conv"])
@pytest.mark.slow  # trains until it beats chance
def test_both_qnets_beat_the_random_policy_on_the_grid(tmp_path, model):
    s = run({**GRID, "model": model, "epochs": 4, "epoch_steps": 2000, "test_episodes": 50}, tmp_path / model)
    assert s["status"] == "finished", s.get("error")
    # the random policy's return is ~0 (as much poison as cheese met); a learnt one eats cheese
    assert s["random_return"] < 1.5
    assert s["test_return"] > s["random_return"] + 2, (s["test_return"], s["random_return"])
    rows = [json.loads(line) for line in (tmp_path / model / "metrics.jsonl").read_text().splitlines()]
    assert [r["transitions"] for r in rows] == [2000, 4000, 6000, 8000]
    assert rows[0]["epsilon"] > rows[-1]["epsilon"] == pytest.approx(0.05)
    assert all(r["train_loss"] is not None and r["train_q_mean"] is not None for r in rows)
    assert s["samples_per_s"] > 0 and s["params"] == count_parameters(MODELS[model]((2, 5, 5), 4))
    ep = np.load(tmp_path / model / "episodes.npz")
    assert ep["cheese"].shape[:2] == (3, 101) and ep["reward"].shape == (3, 100)


def test_no_gradient_step_before_learning_starts(tmp_path):
    s = run({**GRID, "epochs": 2, "learning_starts": 1500}, tmp_path / "late")
    rows = [json.loads(line) for line in (tmp_path / "late" / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["train_loss"] is None and rows[0]["updates"] == 0  # not a made-up loss of 0
    # the first gradient step comes once 1,500 transitions are stored, then one per 4
    assert rows[1]["updates"] == (2000 - 1500) // 4 + 1 and rows[1]["train_loss"] > 0
    assert s["status"] == "finished"


@pytest.mark.parametrize("task", [pytest.param("mouse_grid", marks=pytest.mark.slow), "cartpole"])  # grid: 7 s
def test_killed_run_resumes_exactly(tmp_path, killed_then_resumed, task):
    """Buffer, target net, optimizer, environments (boards or CartPole's physics), running episodes,
    epsilon and every generator are in the checkpoint: the resumed run is the uninterrupted one."""
    cfg = {**GRID, "task": task}
    if task == "cartpole":
        cfg.update(epoch_steps=600, learning_starts=300, buffer_size=1000, target_every=100, batch_size=32)
    full = run(cfg, tmp_path / "full")
    resumed = killed_then_resumed(cfg, tmp_path / "cut", at=2)
    assert resumed["resumes"] == 1
    a = (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()
    b = (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()
    strip = ("train_time", "data_time", "samples_per_s", "eval_time", "peak_mem_mb")
    rows = [[{k: v for k, v in json.loads(line).items() if k not in strip} for line in x] for x in (a, b)]
    assert rows[0] == rows[1]
    assert resumed["test_return"] == full["test_return"] and resumed["test_returns"] == full["test_returns"]


def test_copies_step_together(tmp_path):
    """num_envs copies: each loop step is train_every x num_envs transitions, episodes from every copy."""
    s = run({**GRID, "epochs": 1, "num_envs": 4, "train_every": 2}, tmp_path / "four")
    row = json.loads((tmp_path / "four" / "metrics.jsonl").read_text().splitlines()[0])
    assert s["status"] == "finished" and s["updates_per_epoch"] == 125 and row["transitions"] == 1000
    assert row["episodes"] == 4 * (1000 // 4 // 100)  # 250 moves per copy: two 100-move episodes each
    assert row["updates"] == 125 - 200 // 8 + 1


def test_cartpole_through_gymnasium(tmp_path):
    s = run({**FAST, "task": "gym", "env_id": "CartPole-v1", "epochs": 2, "epoch_steps": 1000, "num_envs": 2,
             "learning_starts": 500, "test_episodes": 10, "eval_episodes": 3, "save_weights": False}, tmp_path / "cp")
    assert s["status"] == "finished", s.get("error")
    assert s["env"] == "CartPole-v1" and s["obs_shape"] == [4] and s["num_actions"] == 2
    # a random CartPole policy balances ~22 steps (reward 1 per step): a sanity bound, not a pin
    assert 10 < s["random_return"] < 40 and s["random_return"] == s["random_length"]
    assert len(s["test_returns"]) == 10 and not (tmp_path / "cp" / "episodes.npz").exists()


def test_run_ids_separate_the_dqn_axes():
    base = RunConfig.from_dict({"task": "mouse_grid"}).resolve()
    for change in ({"double_dqn": True}, {"target_every": 100}, {"explore_fraction": 0.2}, {"grid_walls": "wall"},
                   {"loss": "huber"}, {"model": "qnet_conv"}):
        assert RunConfig.from_dict({"task": "mouse_grid", **change}).resolve().run_id() != base.run_id()


# ---------------------------------------------------------------------------------------------
# bad input


@pytest.mark.parametrize("config,key", [
    ({"task": "gym", "env_id": "NoSuchEnv-v9"}, "env_id"),
    ({"task": "gym"}, "env_id"),
    ({"task": "gym", "env_id": "Pendulum-v1"}, "env_id"),  # continuous actions
    ({"task": "cartpole", "model": "qnet_conv"}, "model"),  # an image net on a 4-vector
    ({"task": "mouse_grid", "buffer_size": 32, "batch_size": 64}, "buffer_size"),
    ({"task": "mouse_grid", "epoch_steps": 1001, "train_every": 4}, "epoch_steps"),
    ({"task": "cartpole", "grid_size": 12}, "grid_size"),
    ({"task": "mouse_grid", "grid_size": 3, "grid_cheese": 7}, "grid_cheese"),
    ({"task": "mouse_grid", "eval_eps": 1.5}, "eval_eps"),
    ({"task": "mouse_grid", "precision": "bf16"}, "precision"),
    ({"task": "fashion_mnist", "double_dqn": True}, "double_dqn"),
])
def test_bad_input_is_refused_before_anything_is_written(config, key, tmp_path):
    assert_cli_refuses(config, key, tmp_path)


# ---------------------------------------------------------------------------------------------
# report


@pytest.mark.slow  # a sweep and its report
def test_report_draws_returns_against_the_random_policy_and_the_episodes(tmp_path):
    """Real runs (2 Q-nets x 2 seeds, tiny) in one sweep folder: the family section has the return
    curves with the random policy's line at the runs' mean, the table puts each setting's test
    return beside it, and the episode strips come from episodes.npz."""
    import matplotlib

    matplotlib.use("Agg")
    from reports import render
    from reports.analysis import analyse
    from reports.load import load_folders

    root = tmp_path / "dqn"
    summaries = []
    for model in ("qnet_fc", "qnet_conv"):
        for seed in (0, 1):
            cfg = RunConfig.from_dict({**GRID, "model": model, "seed": seed, "epochs": 2, "test_episodes": 8,
                                       "save_weights": True}).resolve()
            summaries.append(run(cfg, root / cfg.run_id()))
    a = analyse(load_folders([root]))
    with render.style():
        doc = render.document(a)
    blocks = {b.key: b for s in doc.sections for b in s.blocks}
    curves = blocks["rl-returns"].fig.axes
    random_mean = np.mean([s["random_return"] for s in summaries])
    dashed = [ln for ln in curves[0].lines if ln.get_linestyle() == "--"]
    assert len(dashed) == 1 and dashed[0].get_ydata()[0] == pytest.approx(random_mean)
    assert curves[0].get_xlabel() == "environment transitions"
    table = blocks["rl-against-random"].df
    assert list(table["setting"]) == ["model=qnet_conv", "model=qnet_fc"]
    fc = [s["test_return"] for s in summaries if s["params"] == 16624]
    assert table.iloc[1, 1].startswith(f"{np.mean(fc):.3f}") and table["transitions"].tolist() == ["2,000"] * 2
    strips = blocks["rl-episodes"].fig.axes
    assert [ax.get_ylabel() for ax in strips] == ["model=qnet_conv", "model=qnet_fc"]
