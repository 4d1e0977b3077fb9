"""N copies of an environment stepped together, resetting a copy as soon as its episode ends, and
keeping each episode's return and length: what the DQN loop and its evaluation step.

`step` returns two observations: the one the agent acts on next (after an automatic reset) and
the true successor of the step just taken (the final observation of an ending episode), which is
what a transition stores. Resets are explicit here rather than Gymnasium's vector autoreset,
whose timing changed in Gymnasium 1.0 (NEXT_STEP): one convention, whatever version is installed.
"""
from __future__ import annotations

import pickle
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from . import mouse

Episode = Tuple[float, int]  # return, length


def seeds(seed: int, purpose: int, n: int) -> List[int]:
    """n episode seeds for a run seed and a purpose (0 training, 1 validation, 2 test)."""
    return [int(s) for s in np.random.SeedSequence([seed, purpose]).generate_state(n, dtype=np.uint32)]


class Envs:
    """The common part: returns and lengths of running episodes."""

    n: int
    obs_shape: Tuple[int, ...]
    n_actions: int

    def __init__(self, n: int):
        self.n = n
        self.ret = np.zeros(n, dtype=np.float64)
        self.len = np.zeros(n, dtype=np.int64)

    def _account(self, reward: np.ndarray, done: np.ndarray) -> List[Tuple[int, Episode]]:
        self.ret += reward
        self.len += 1
        if not done.any():  # most steps: the boolean indexing below costs more than the step's bookkeeping
            return []
        ended = [(int(i), (float(self.ret[i]), int(self.len[i]))) for i in np.flatnonzero(done)]
        self.ret[done] = 0.0
        self.len[done] = 0
        return ended

    def base_state(self) -> Dict[str, Any]:
        return {"ret": self.ret.copy(), "len": self.len.copy()}

    def load_base_state(self, s: Dict[str, Any]) -> None:
        self.ret, self.len = s["ret"].copy(), s["len"].copy()


class GridEnvs(Envs):
    """The grid game, natively batched."""

    def __init__(self, n: int, rules: mouse.Rules):
        super().__init__(n)
        self.game = mouse.MouseGrid(n, rules)
        self.obs_shape, self.n_actions = rules.obs_shape, len(mouse.ACTIONS)

    def reset(self, episode_seeds: Sequence[int]) -> np.ndarray:
        self.ret[:] = 0
        self.len[:] = 0
        return self.game.reset(episode_seeds)

    def step(self, actions: np.ndarray):
        """-> (next observation to act on, true successor, reward, terminated, ended episodes [(copy, (return, length))])"""
        obs, reward, terminated, truncated = self.game.step(actions)
        done = terminated | truncated
        ended = self._account(reward, done)
        successor = obs
        if ended:
            obs = obs.copy()
            for i, _ in ended:
                self.game.reset_one(i)  # the copy's generator continues: still reproducible
            fresh = self.game.observe()
            for i, _ in ended:
                obs[i] = fresh[i]
        return obs, successor, reward, terminated, ended

    def state_dict(self) -> Dict[str, Any]:
        return {**self.base_state(), "game": self.game.state_dict()}

    def load_state_dict(self, s: Dict[str, Any]) -> None:
        self.load_base_state(s)
        self.game.load_state_dict(s["game"])


class GymEnvs(Envs):
    """Any Gymnasium environment with a vector (or the grid's) observation and discrete actions."""

    def __init__(self, n: int, env_id: str, kwargs: Optional[Dict[str, Any]] = None):
        super().__init__(n)
        self.env_id = env_id
        self.envs = [make(env_id, kwargs) for _ in range(n)]
        space = self.envs[0].observation_space
        self.obs_shape, self.n_actions = tuple(space.shape), int(self.envs[0].action_space.n)

    def reset(self, episode_seeds: Sequence[int]) -> np.ndarray:
        self.ret[:] = 0
        self.len[:] = 0
        return np.stack([e.reset(seed=int(s))[0] for e, s in zip(self.envs, episode_seeds)]).astype(np.float32)

    def step(self, actions: np.ndarray):
        out = [e.step(int(a)) for e, a in zip(self.envs, actions)]
        successor = np.stack([o[0] for o in out]).astype(np.float32)
        reward = np.array([o[1] for o in out], dtype=np.float32)
        terminated = np.array([o[2] for o in out], dtype=bool)
        done = terminated | np.array([o[3] for o in out], dtype=bool)
        ended = self._account(reward, done)
        obs = successor
        if ended:
            obs = successor.copy()
            for i, _ in ended:
                obs[i] = self.envs[i].reset()[0]  # no seed: the env's generator continues
        return obs, successor, reward, terminated, ended

    # a Gymnasium environment keeps its state, its generator and its wrappers' counters (TimeLimit)
    # in plain attributes: pickled whole
    def state_dict(self) -> Dict[str, Any]:
        return {**self.base_state(), "envs": pickle.dumps(self.envs)}

    def load_state_dict(self, s: Dict[str, Any]) -> None:
        self.load_base_state(s)
        self.envs = pickle.loads(s["envs"])


def _gymnasium():
    """Gymnasium, which only the Gymnasium tasks need (the grid game steps itself): the `rl` extra."""
    try:
        import gymnasium
    except ImportError:
        raise ValueError("Gymnasium is not installed here (pip install 'dl2bench[rl]')") from None
    return gymnasium


def registered(env_id: str) -> None:
    """ValueError unless `env_id` is an id in Gymnasium's registry. gym.make("some.module:Env")
    imports `some.module` first: a config value must never choose code to import, so only ids
    registered by what is already installed and imported (and the course's grid game) pass."""
    import difflib

    gym = _gymnasium()
    mouse.register()
    if not isinstance(env_id, str) or ":" in env_id or env_id not in gym.registry:
        hint = difflib.get_close_matches(str(env_id), list(gym.registry), n=1)
        maybe = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise ValueError(f"{env_id!r} is not a registered Gymnasium environment id{maybe}; 'module:Env' forms are "
                         "refused (they import code)")


def make(env_id: str, kwargs: Optional[Dict[str, Any]] = None):
    gym = _gymnasium()
    registered(env_id)
    return gym.make(env_id, **(kwargs or {}))


def describe(env_id: str) -> Tuple[Tuple[int, ...], int, Optional[int]]:
    """(observation shape, number of actions, time limit) of a Gymnasium id; ValueError saying
    what is wrong when DQN cannot run it (unknown id, continuous actions, image observations)."""
    gym = _gymnasium()
    spaces = gym.spaces
    registered(env_id)
    try:
        env = gym.make(env_id)
    except (gym.error.Error, ImportError) as e:  # a registered id whose extra package is missing
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ValueError(f"{env_id!r} cannot be made here: {first}") from None
    try:
        obs, act = env.observation_space, env.action_space
        if not isinstance(act, spaces.Discrete):
            raise ValueError(f"{env_id!r} has a {type(act).__name__} action space; DQN needs a Discrete one "
                             "(CartPole-v1, Acrobot-v1, MountainCar-v0, LunarLander-v3, ...)")
        if not isinstance(obs, spaces.Box) or (len(obs.shape) != 1 and env_id != mouse.ENV_ID):
            raise ValueError(f"{env_id!r} observes {obs}; this task takes a vector observation (a 1-D Box)")
        return tuple(obs.shape), int(act.n), env.spec.max_episode_steps if env.spec else None
    finally:
        env.close()
