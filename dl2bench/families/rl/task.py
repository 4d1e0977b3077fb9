"""Deep Q-learning (course practical 4): a Q-net learns to act from the rewards of an environment.

Tasks:
- `mouse_grid`: the course's grid game (mouse.py has the rules; the `grid_*` keys
  set them): a mouse sees a 5 x 5 window of cheese (+0.5) and poison (-1), 4 actions, episodes
  of `grid_steps` moves;
- `cartpole`: Gymnasium's CartPole-v1 with CleanRL's DQN settings (published: 488.69 +- 16.11);
- `gym`: any Gymnasium id with a vector observation and discrete actions (`env_id`), with
  CleanRL's settings as the starting point.

An epoch is `epoch_steps` environment transitions (`num_envs` copies step together); every
`train_every` vector steps the Q-net makes one gradient step (dqn.py has the
algorithm). `samples_per_s` is transitions per second of the whole loop (acting, storing,
learning). `batch_size` is the replay batch; `loss` is the TD loss (mse or huber).

Metrics: `return` (the headline), the mean undiscounted return of `eval_episodes` (validation,
every epoch) or `test_episodes` (test, at the end) episodes played epsilon-greedily with
`eval_eps`, each from its own fixed seed (the same starts at every evaluation, different for
validation and test); `length`, their mean length; while training, the episodes that ended in the
epoch (`train_return`, `train_length`), the TD loss and the mean Q(s, a) of the updates. The
uniform random policy plays the same test episodes once: `random_return` in the summary.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Dict, List, Optional

import numpy as np

from ... import runs
from ...errors import ConfigError
from ...media import MEDIA, Image, Media, Table, arrays, tile
from ...inits import INITS
from ...nets import MODELS
from ..base import TASKS, Key, Metric, Need, Problem, Task

if TYPE_CHECKING:
    import torch

FAMILY = "rl"
EPISODES = "episodes.npz"  # a few greedy test episodes of the grid game, board by board, for the report
N_RECORDED = 3
VAL, TEST = 1, 2  # seed purposes (0: training)

KEYS = {
    "env_id": Key(Optional[str], None, "rl, task gym: a Gymnasium environment id with a vector observation and "
                  "discrete actions (CartPole-v1, Acrobot-v1, ...)"),
    "epoch_steps": Key(Optional[int], None, "rl: environment transitions per epoch; None = the task's default", min=1),
    "num_envs": Key(int, 1, "rl: environment copies stepped together", min=1, max=4096),
    "buffer_size": Key(Optional[int], None, "rl: replay buffer capacity (transitions); None = the task's default",
                       min=1),
    "learning_starts": Key(Optional[int], None, "rl: transitions stored before the first gradient step; None = "
                           "the task's default", min=0),
    "train_every": Key(Optional[int], None, "rl: vector steps between gradient steps; None = the task's default",
                       min=1),
    "target_every": Key(Optional[int], None, "rl: transitions between target-network updates; None = the "
                        "task's default", min=1),
    "tau": Key(float, 1.0, "rl: target update target <- tau q + (1 - tau) target (1 = a hard copy)",
               min=1e-6, max=1.0),
    "gamma": Key(Optional[float], None, "rl: discount; None = the task's default", min=0.0, max=1.0),
    "double_dqn": Key(bool, False, "rl: Double DQN targets (the online net picks the next action)"),
    "explore_start": Key(float, 1.0, "rl: epsilon of epsilon-greedy at the start", min=0.0, max=1.0),
    "explore_end": Key(float, 0.05, "rl: epsilon after the decay", min=0.0, max=1.0),
    "explore_fraction": Key(float, 0.5, "rl: share of all transitions over which epsilon decays", min=0.0, max=1.0),
    "explore_schedule": Key(str, "linear", "rl: epsilon decay: linear | exponential (the same factor every "
                            "transition)", choices=("linear", "exponential")),
    "eval_episodes": Key(int, 10, "rl: validation episodes (every epoch)", min=1, max=10000),
    "test_episodes": Key(int, 100, "rl: test episodes (at the end; the random policy plays the same ones)",
                         min=1, max=10000),
    "eval_eps": Key(float, 0.05, "rl: epsilon of the evaluation episodes (CleanRL: 0.05)", min=0.0, max=1.0),
    # the game's rules: None on the other tasks (they play something else), so a change of a rule's
    # default never shows up as a difference between two CartPole runs
    "grid_size": Key(Optional[int], None, "rl, task mouse_grid: the board is grid_size x grid_size (10)", min=3,
                     max=256),
    "grid_cheese": Key(Optional[int], None, "rl, task mouse_grid: cheese cells on the board (10)", min=1),
    "grid_poison": Key(Optional[int], None, "rl, task mouse_grid: poison cells on the board (5)", min=0),
    "grid_steps": Key(Optional[int], None, "rl, task mouse_grid: moves per episode, then truncated (100)", min=1),
    "grid_walls": Key(Optional[str], None, "rl, task mouse_grid: wrap (a torus; the default) | wall (a move off the "
                      "board stays put; the view cannot show the wall)", choices=("wrap", "wall")),
    "grid_respawn": Key(Optional[bool], None, "rl, task mouse_grid: an eaten item reappears on a random empty cell "
                        "(true, the default; false: the episode ends with the last cheese)"),
}
GRID_KEYS = [k for k in KEYS if k.startswith("grid_")]

RETURN = Metric("return", "maximize", "", "mean episode return")
LENGTH = Metric("length", "maximize", "steps", "mean episode length")
Q_MEAN = Metric("q_mean", "maximize", "", "mean Q(s, a) of the replay batches", splits=("train",))
LOSSES = {"mse": Metric("loss", "minimize", "TD error^2", "TD loss (squared error)", splits=("train",)),
          "huber": Metric("loss", "minimize", "Huber(TD error)", "TD loss (Huber, delta 1)", splits=("train",))}


def rules(cfg):
    from .mouse import Rules

    return Rules(size=cfg.grid_size, cheese=cfg.grid_cheese, poison=cfg.grid_poison, max_steps=cfg.grid_steps,
                 walls=cfg.grid_walls, respawn=cfg.grid_respawn)


def envs_for(cfg, n: int):
    from . import envs as V

    if cfg.task == "mouse_grid":
        return V.GridEnvs(n, rules(cfg))
    return V.GymEnvs(n, cfg.env_id)


def prepare(task: Task, cfg, device: torch.device, reg) -> Problem:
    import numpy as np

    from ...optim import OPTIMIZERS, LRController
    from . import dqn
    from . import envs as V

    envs = envs_for(cfg, cfg.num_envs)
    obs_shape, n_actions = envs.obs_shape, envs.n_actions
    kwargs = dict(reg.model_kwargs)
    build = {"model": cfg.model, "args": [list(obs_shape), n_actions], "kwargs": kwargs}
    try:
        q = MODELS[cfg.model](tuple(obs_shape), n_actions, **kwargs)
    except ValueError as e:  # a Q-net that cannot take this observation
        raise ConfigError(f"model: {e}") from None
    INITS[cfg.init](q, cfg)
    q.to(device)
    per_batch = cfg.train_every * cfg.num_envs
    batches = cfg.epoch_steps // per_batch
    total = cfg.epochs * batches * per_batch
    opt = OPTIMIZERS[cfg.optimizer](q.parameters(), cfg)
    sched = LRController(opt, cfg, batches)
    settings = dqn.Settings(gamma=cfg.gamma, batch_size=cfg.batch_size, train_every=cfg.train_every,
                            learning_starts=cfg.learning_starts, target_every=cfg.target_every, tau=cfg.tau,
                            double=cfg.double_dqn, loss=cfg.loss, clip_norm=reg.clip_norm)
    schedule = dqn.Schedule(cfg.explore_start, cfg.explore_end, cfg.explore_fraction, total, cfg.explore_schedule)
    replay = dqn.Replay(cfg.buffer_size, tuple(obs_shape), device)
    step = dqn.DQNStep(q, envs, replay, schedule, settings, opt, sched, reg.penalty, device, cfg.seed,
                       V.seeds(cfg.seed, 0, cfg.num_envs))

    splits = {"val": (VAL, cfg.eval_episodes), "test": (TEST, cfg.test_episodes)}
    players = {name: (envs_for(cfg, n), V.seeds(cfg.seed, purpose, n), purpose) for name, (purpose, n) in splits.items()}
    last: Dict[str, List] = {}

    def evaluate(m, split: str, autocast) -> Dict[str, float]:
        env, episode_seeds, purpose = players[split]
        rng = np.random.default_rng([cfg.seed, purpose, 1])  # the same exploration draws every evaluation
        episodes = dqn.play(m, env, episode_seeds, cfg.eval_eps, rng, device)
        last[split] = episodes
        out = dqn.summarise(episodes)
        return {"return": out["return"], "length": out["length"]}

    test_env, test_seeds, _ = players["test"]
    random_policy = dqn.summarise(dqn.play(None, test_env, test_seeds, 1.0, np.random.default_rng([cfg.seed, 99]),
                                           device))

    def final(m, autocast, out_dir) -> Dict[str, Any]:
        test = dqn.summarise(last["test"]) if "test" in last else {}
        out: Dict[str, Any] = {"test_return_std": test.get("return_std"),
                               "test_returns": [round(r, 4) for r, _ in last.get("test", [])]}
        if cfg.task == "mouse_grid":
            out["episodes"] = record_episodes(m, cfg, device, out_dir)
        return out

    label = (f"mean return, epsilon {cfg.eval_eps:g} ({cfg.eval_episodes} validation / {cfg.test_episodes} "
             f"test episodes)")
    metrics = (Metric("return", "maximize", "", label), LENGTH, LOSSES[cfg.loss], Q_MEAN)
    source = (f"mouse grid game ({cfg.grid_size}x{cfg.grid_size}, {cfg.grid_cheese} cheese, {cfg.grid_poison} "
              f"poison, {cfg.grid_steps} steps, {cfg.grid_walls})" if cfg.task == "mouse_grid"
              else f"gymnasium {cfg.env_id}")
    facts = {"env": cfg.env_id if cfg.task != "mouse_grid" else "mouse_grid", "obs_shape": list(obs_shape),
             "num_actions": n_actions, "transitions_total": total, "updates_per_epoch": batches,
             "random_return": random_policy["return"], "random_return_std": random_policy["return_std"],
             "random_length": random_policy["length"], "eval_eps": cfg.eval_eps,
             "samples_are": "environment transitions"}
    return Problem(model=q, build=build, train_batches=Steps(batches), splits=("val", "test"),
                   evaluate=evaluate, n_train=total, source=source, in_shape=tuple(obs_shape), step=step,
                   metrics=metrics, facts=facts, final=final)


class Steps:
    """An epoch of `n` loop steps; each one plays `train_every` vector steps and learns once."""

    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def iterate(self, generator=None):
        return iter(range(self.n))


def record_episodes(m, cfg, device, out_dir) -> str:
    """N_RECORDED test episodes of the grid game played with eval_eps, every board kept
    (episodes.npz: cheese, poison (E, T+1, S, S), pos (E, T+1, 2), reward (E, T), lengths (E,)),
    for the report. The game is stepped without automatic resets, so the last board is the real one."""
    import numpy as np

    from . import dqn
    from . import envs as V
    from .mouse import MouseGrid

    game = MouseGrid(N_RECORDED, rules(cfg))
    obs = game.reset(V.seeds(cfg.seed, TEST, N_RECORDED))
    rng = np.random.default_rng([cfg.seed, TEST, 2])
    frames = [[game.snapshot(i)] for i in range(N_RECORDED)]
    rewards: List[List[float]] = [[] for _ in range(N_RECORDED)]
    live = np.ones(N_RECORDED, dtype=bool)
    was_training = m.training
    m.eval()
    while live.any():
        action = dqn.epsilon_greedy(m, obs, cfg.eval_eps, rng, 4, device)
        obs, reward, terminated, truncated = game.step(action)
        for i in np.flatnonzero(live):  # a finished copy goes on moving, unrecorded
            rewards[i].append(float(reward[i]))
            frames[i].append(game.snapshot(i))
        live &= ~(terminated | truncated)
    m.train(was_training)
    t, s = max(len(f) for f in frames), cfg.grid_size
    cheese = np.zeros((N_RECORDED, t, s, s), dtype=bool)
    poison = np.zeros_like(cheese)
    pos = np.zeros((N_RECORDED, t, 2), dtype=np.int16)
    rew = np.zeros((N_RECORDED, t - 1), dtype=np.float32)
    for i, f in enumerate(frames):
        for j, board in enumerate(f):
            cheese[i, j], poison[i, j], pos[i, j] = board["cheese"], board["poison"], board["pos"]
        rew[i, : len(rewards[i])] = rewards[i]
    path = os.path.join(str(out_dir), EPISODES)
    runs.save_npz(path, cheese=cheese, poison=poison, pos=pos, reward=rew,
                   lengths=np.array([len(f) for f in frames]))
    return EPISODES


def check(cfg) -> None:
    """What the keys' own ranges cannot say; the environment and the Q-net must fit each other."""
    from . import envs as V

    gym_task = cfg.task != "mouse_grid"
    if gym_task:
        if not cfg.env_id:
            raise ConfigError(f"env_id: task {cfg.task!r} needs a Gymnasium environment id (e.g. CartPole-v1)")
        if cfg.task == "cartpole" and cfg.env_id != "CartPole-v1":
            raise ConfigError(f"env_id: task cartpole plays CartPole-v1; use task gym for {cfg.env_id!r}")
        for k in GRID_KEYS:
            if getattr(cfg, k) is not None:
                raise ConfigError(f"{k}: a rule of the mouse_grid game; task {cfg.task!r} plays {cfg.env_id}")
        try:
            obs_shape, n_actions, _ = V.describe(cfg.env_id)
        except ValueError as e:
            raise ConfigError(f"env_id: {e}") from None
    else:
        if cfg.env_id not in (None, ""):
            raise ConfigError(f"env_id: task mouse_grid plays the course's grid game; use task gym for {cfg.env_id!r}")
        try:
            r = rules(cfg)
        except ValueError as e:  # the keys' ranges hold, so it is the items that do not fit
            raise ConfigError(f"grid_cheese: {e}; lower grid_cheese or grid_poison, or raise grid_size") from None
        obs_shape, n_actions = r.obs_shape, 4
    if cfg.model is not None:
        try:
            MODELS[cfg.model](tuple(obs_shape), n_actions)
        except ValueError as e:
            raise ConfigError(f"model: {e} ({'the grid game' if not gym_task else cfg.env_id} observes "
                              f"{tuple(obs_shape)})") from None
    if cfg.buffer_size is not None and cfg.batch_size is not None and cfg.buffer_size < cfg.batch_size:
        raise ConfigError(f"buffer_size: {cfg.buffer_size} transitions cannot fill a replay batch of "
                          f"batch_size {cfg.batch_size}; expected buffer_size >= batch_size")
    if cfg.epoch_steps is not None and cfg.train_every is not None:
        per = cfg.train_every * cfg.num_envs
        if cfg.epoch_steps % per:
            raise ConfigError(f"epoch_steps: {cfg.epoch_steps} is not a multiple of train_every x num_envs = {per} "
                              f"(transitions between gradient steps); use e.g. {max(per, cfg.epoch_steps // per * per)}")
    if cfg.explore_schedule == "exponential" and (cfg.explore_start == 0 or cfg.explore_end == 0):
        raise ConfigError("explore_end: an exponential decay never reaches 0; expected explore_start and "
                          "explore_end > 0 (or explore_schedule linear)")
    for key, default in (("train_size", 0), ("test_size", 0), ("val_size", None), ("compile", False),
                         ("channels_last", False)):
        if getattr(cfg, key) != default:
            raise ConfigError(f"{key}: not used by deep Q-learning (an epoch is epoch_steps transitions; "
                              "evaluation is eval_episodes / test_episodes episodes); leave it unset")


_WHY = ("does not apply to deep Q-learning (no labels, images to augment, validation loss or data loader; the "
        "nets are small enough for fp32)")
REFUSES = {"regularizer": dict.fromkeys(("label_smoothing", "augmentation"), _WHY),
           "schedule": {"plateau": _WHY}, "loader": {"dataloader": _WHY},
           "precision": dict.fromkeys(("bf16", "fp16"), _WHY)}


def _task(name: str, description: str, defaults: Dict[str, Any], targets=()) -> Task:
    return Task(name, description, FAMILY, prepare, (RETURN, LENGTH, LOSSES["mse"], Q_MEAN), headline="return",
                losses=("mse", "huber"), model_family=FAMILY, defaults=defaults, targets=targets, check=check, memory=memory, refuses=REFUSES)


# CleanRL's dqn.py settings (its docs: CartPole-v1 488.69 +- 16.11 over seeds at 500k steps)
CLEANRL = {"model": "qnet_fc", "optimizer": "adam", "lr": 2.5e-4, "buffer_size": 10000, "gamma": 0.99,
           "target_every": 500, "batch_size": 128, "learning_starts": 10000, "train_every": 10,
           "epoch_steps": 10000, "epochs": 50}


@TASKS.register
def mouse_grid() -> Task:
    """The course's mouse, cheese and poison grid game (10x10, 10 cheese, 5 poison, 100 moves, 5x5 view).

    Known good: qnet_fc or qnet_conv, Adam 1e-3, batch 64, gamma 0.9, buffer 20k, 20 epochs of 5,000
    transitions, epsilon 1 -> 0.05 over half of them."""
    return _task("mouse_grid", "mouse grid game",
                 {"model": "qnet_fc", "optimizer": "adam", "lr": 1e-3, "buffer_size": 20000, "gamma": 0.9,
                  "target_every": 500, "batch_size": 64, "learning_starts": 1000, "train_every": 4,
                  "epoch_steps": 5000, "epochs": 20, "grid_size": 10, "grid_cheese": 10, "grid_poison": 5,
                  "grid_steps": 100, "grid_walls": "wrap", "grid_respawn": True})


@TASKS.register
def cartpole() -> Task:
    """Gymnasium CartPole-v1 with CleanRL's DQN settings (500k transitions; published 488.69 +- 16.11)."""
    t = _task("cartpole", "CartPole-v1", {**CLEANRL, "env_id": "CartPole-v1"}, targets=(195.0, 475.0))
    return t


@TASKS.register
def gym() -> Task:
    """Any Gymnasium environment id with a vector observation and discrete actions (env_id), CleanRL's settings."""
    return _task("gym", "a Gymnasium environment", dict(CLEANRL))


def memory(cfg) -> List[Need]:
    """The replay buffer once full (two float32 observations per transition). A Gymnasium id's
    observation is only known once the environment is made, so `gym` runs are not estimated here."""
    from .mouse import VIEW

    obs = {"mouse_grid": 2 * (2 * VIEW + 1) ** 2, "cartpole": 4}.get(cfg.task)
    if obs is None or not cfg.buffer_size:
        return []
    stored = min(cfg.buffer_size, (cfg.epochs or 1) * (cfg.epoch_steps or 1))
    return [("buffer_size", stored * (8.0 * obs + 16), f"a replay buffer of {stored:,} transitions")]


@MEDIA.register(name=FAMILY)
def media(run_dir, summary) -> List[Media]:
    """Each recorded greedy test episode of the grid game as a strip of boards, every few moves,
    with its return (CartPole and other Gymnasium tasks record none)."""
    if not summary.get("episodes"):
        return []
    ex = arrays(run_dir, {"examples": summary["episodes"]}, EPISODES)
    if ex is None or not {"cheese", "poison", "pos", "reward"} <= set(ex):
        return []
    from .mouse import render

    rows = []
    for e in range(ex["cheese"].shape[0]):
        n = int(ex["lengths"][e]) if "lengths" in ex else ex["cheese"].shape[1]
        at = np.unique(np.linspace(0, n - 1, 8).round().astype(int))
        boards = [render({"cheese": ex["cheese"][e, t], "poison": ex["poison"][e, t], "pos": ex["pos"][e, t]}, cell=8)
                  for t in at]
        ret = float(ex["reward"][e][: n - 1].sum())
        rows.append((e, n - 1, ret, Image(tile(boards, cols=len(boards)), f"moves {', '.join(map(str, at))}")))
    return [Media("episodes", Table(("episode", "moves", "return", "boards"), tuple(rows)))]
