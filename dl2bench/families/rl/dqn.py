"""Deep Q-learning (Mnih et al. 2015, as CleanRL's dqn.py lays it out) as a step the one training
loop calls: each call plays `train_every` vector steps of epsilon-greedy actions into the replay
buffer, then (once `learning_starts` transitions are stored) makes one gradient step on a sampled
batch of the TD loss  (r + gamma (1 - terminated) max_a' Q_target(s', a') - Q(s, a)),  with Double
DQN's  Q_target(s', argmax_a' Q(s', a'))  as an option. Only `terminated` stops bootstrapping: a
time limit's truncation keeps the successor's value. The target network is copied (tau 1) or
Polyak-averaged (tau < 1) every `target_every` transitions.

Everything that decides what happens next is in `state_dict`: the online net's optimizer and
schedule, the target net, the buffer, the environments (boards, positions, generators), the
running episodes, the transition counter (and so epsilon) and the action and sampling generators;
a resumed run continues exactly where the interrupted one stopped.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..base import Step
from .envs import Envs, Episode


@dataclass(frozen=True)
class Schedule:
    """Exploration: epsilon from `start` to `end` over the first `fraction` of all transitions,
    linearly or exponentially (geometric: the same factor every transition), then `end`."""

    start: float
    end: float
    fraction: float
    total: int  # transitions in the whole run
    kind: str = "linear"  # linear | exponential

    def __call__(self, t: int) -> float:
        span = max(self.fraction * self.total, 1.0)
        if t >= span:
            return self.end
        if self.kind == "linear":
            return self.start + (self.end - self.start) * t / span
        return self.start * (self.end / self.start) ** (t / span)


class Replay:
    """A ring buffer of transitions in host memory (numpy: a transition is stored every
    environment step, and five numpy slice writes cost a fraction of five tensor writes); a
    sampled batch goes to the training device once per gradient step."""

    def __init__(self, capacity: int, obs_shape: Tuple[int, ...], device: torch.device):
        self.capacity, self.device = capacity, device
        self.obs = np.zeros((capacity, *obs_shape), dtype=np.float32)
        self.next_obs = np.zeros((capacity, *obs_shape), dtype=np.float32)
        self.action = np.zeros(capacity, dtype=np.int64)
        self.reward = np.zeros(capacity, dtype=np.float32)
        self.terminated = np.zeros(capacity, dtype=np.float32)
        self.pos = 0
        self.size = 0

    def add(self, obs: np.ndarray, action: np.ndarray, reward: np.ndarray, next_obs: np.ndarray,
            terminated: np.ndarray) -> None:
        n = len(obs)
        if n > self.capacity:  # only the newest fit
            obs, action, reward, next_obs, terminated = (a[-self.capacity:] for a in (obs, action, reward, next_obs,
                                                                                     terminated))
            n = self.capacity
        first = min(n, self.capacity - self.pos)
        for lo, hi, at in ((0, first, self.pos), (first, n, 0)):
            if hi > lo:
                end = at + hi - lo
                self.obs[at:end] = obs[lo:hi]
                self.next_obs[at:end] = next_obs[lo:hi]
                self.action[at:end] = action[lo:hi]
                self.reward[at:end] = reward[lo:hi]
                self.terminated[at:end] = terminated[lo:hi]
        self.pos = (self.pos + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def sample(self, batch: int, generator: torch.Generator):
        idx = torch.randint(self.size, (batch,), generator=generator).numpy()
        dev = self.device
        return tuple(torch.from_numpy(a[idx]).to(dev) for a in (self.obs, self.action, self.reward, self.next_obs,
                                                                 self.terminated))

    def state_dict(self) -> Dict[str, Any]:
        n = self.size  # only what was written: a young buffer checkpoints small
        return {"pos": self.pos, "size": n, **{k: getattr(self, k)[:n].copy() for k in self.FIELDS}}

    def load_state_dict(self, s: Dict[str, Any]) -> None:
        n = s["size"]
        self.pos, self.size = s["pos"], n
        for k in self.FIELDS:
            v = s[k]
            getattr(self, k)[:n] = v.numpy() if isinstance(v, torch.Tensor) else v

    FIELDS = ("obs", "next_obs", "action", "reward", "terminated")


@dataclass(frozen=True)
class Settings:
    gamma: float
    batch_size: int
    train_every: int  # vector steps between gradient steps
    learning_starts: int  # transitions before the first gradient step
    target_every: int  # transitions between target updates
    tau: float  # 1: copy; < 1: Polyak
    double: bool
    loss: str  # mse | huber
    clip_norm: Optional[float]


class DQNStep(Step):
    """`__call__(batch, detail) -> (TD loss or None, transitions, {})`; `epoch_metrics()` is what is
    counted per episode."""

    def __init__(self, q: nn.Module, envs: Envs, replay: Replay, schedule: Schedule, s: Settings, opt, sched,
                 penalty: Optional[Callable[[nn.Module], torch.Tensor]], device: torch.device, seed: int,
                 first_seeds: List[int]):
        self.q, self.envs, self.replay, self.schedule, self.s = q, envs, replay, schedule, s
        self.target = copy.deepcopy(q)
        for p in self.target.parameters():
            p.requires_grad_(False)
        self.opt, self.sched, self.penalty, self.device = opt, sched, penalty, device
        self.actions = np.random.default_rng([seed, 10])  # exploration
        self.sampler = torch.Generator().manual_seed(seed + 11)  # replay batches
        self.obs = envs.reset(first_seeds)
        self.t = 0  # transitions so far
        self.updates = 0
        self.next_target = s.target_every
        self._epoch: Dict[str, Any] = self._fresh()
        self.td = F.mse_loss if s.loss == "mse" else F.smooth_l1_loss
        # acting is inference (dropout off, batch norm on running statistics); switching modes walks
        # the module tree, ~10% of a small net's loop, so only where a layer behaves differently
        self.mode_matters = any(isinstance(m, (nn.modules.dropout._DropoutNd, nn.modules.batchnorm._BatchNorm))
                                for m in q.modules())

    @staticmethod
    def _fresh() -> Dict[str, Any]:
        return {"episodes": [], "q": 0.0, "updates": 0}

    @property
    def lr(self) -> float:
        return self.sched.lr

    @property
    def epsilon(self) -> float:
        return self.schedule(self.t)

    def act(self, obs: np.ndarray, eps: float) -> np.ndarray:
        if self.mode_matters:
            self.q.eval()
        action = epsilon_greedy(self.q, obs, eps, self.actions, self.envs.n_actions, self.device)
        if self.mode_matters:
            self.q.train()
        return action

    def __call__(self, batch: Any, detail: bool):
        envs, s = self.envs, self.s
        for _ in range(s.train_every):
            action = self.act(self.obs, self.epsilon)
            obs, successor, reward, terminated, ended = envs.step(action)
            self.replay.add(self.obs, action, reward, successor, terminated)
            self.obs = obs
            self.t += envs.n
            self._epoch["episodes"].extend(ep for _, ep in ended)
        n = s.train_every * envs.n
        if self.t < max(s.learning_starts, s.batch_size):
            return None, n, {}
        loss = self.update()
        return loss, n, {}

    def update(self) -> torch.Tensor:
        s = self.s
        obs, action, reward, next_obs, terminated = self.replay.sample(s.batch_size, self.sampler)
        with torch.no_grad():
            if s.double:
                best = self.q(next_obs).argmax(1, keepdim=True)
                next_v = self.target(next_obs).gather(1, best).squeeze(1)
            else:
                next_v = self.target(next_obs).max(1).values
            y = reward + s.gamma * (1.0 - terminated) * next_v
        q_sa = self.q(obs).gather(1, action[:, None]).squeeze(1)
        loss = self.td(q_sa, y)
        objective = loss if self.penalty is None else loss + self.penalty(self.q)
        self.opt.zero_grad(set_to_none=True)
        objective.backward()
        if s.clip_norm:
            torch.nn.utils.clip_grad_norm_(self.q.parameters(), s.clip_norm)
        self.opt.step()
        self.sched.step()
        self.updates += 1
        self._epoch["updates"] += 1
        self._epoch["q"] = self._epoch["q"] + q_sa.detach().mean()  # summed on the device, read once per epoch
        if self.t >= self.next_target:
            self.sync_target()
            self.next_target = (self.t // s.target_every + 1) * s.target_every
        return loss.detach()

    def sync_target(self) -> None:
        tau = self.s.tau
        with torch.no_grad():
            for pt, p in zip(self.target.parameters(), self.q.parameters()):
                if tau >= 1.0:
                    pt.copy_(p)
                else:
                    pt.lerp_(p, tau)
            for bt, b in zip(self.target.buffers(), self.q.buffers()):
                bt.copy_(b)

    def epoch_metrics(self) -> Dict[str, Optional[float]]:
        """Per epoch: episodes that ended while training (their mean return and length), the mean
        Q(s, a) over the epoch's updates, epsilon at the epoch's end; then the counters restart."""
        e = self._epoch
        eps = e["episodes"]
        out = {"train_return": float(np.mean([r for r, _ in eps])) if eps else None,
               "train_length": float(np.mean([n for _, n in eps])) if eps else None,
               "train_q_mean": float(e["q"]) / e["updates"] if e["updates"] else None,
               "episodes": len(eps), "updates": e["updates"], "epsilon": self.epsilon,
               "transitions": self.t}
        self._epoch = self._fresh()
        return out

    def state_dict(self) -> Dict[str, Any]:
        return {"opt": self.opt.state_dict(), "sched": self.sched.state_dict(), "target": self.target.state_dict(),
                "replay": self.replay.state_dict(), "envs": self.envs.state_dict(), "obs": self.obs.copy(),
                "t": self.t, "updates": self.updates, "next_target": self.next_target,
                "actions": self.actions.bit_generator.state, "sampler": self.sampler.get_state()}

    def load_state_dict(self, st: Dict[str, Any]) -> None:
        self.opt.load_state_dict(st["opt"])
        self.sched.load_state_dict(st["sched"])
        self.target.load_state_dict(st["target"])
        self.replay.load_state_dict(st["replay"])
        self.envs.load_state_dict(st["envs"])
        self.obs = st["obs"].copy()
        self.t, self.updates, self.next_target = st["t"], st["updates"], st["next_target"]
        self.actions.bit_generator.state = st["actions"]
        self.sampler.set_state(st["sampler"])


def epsilon_greedy(q: nn.Module, obs: np.ndarray, eps: float, rng: np.random.Generator, n_actions: int,
                   device: torch.device) -> np.ndarray:
    """q's greedy action for every observation, replaced by a uniform one with probability eps."""
    with torch.no_grad():
        action = q(torch.from_numpy(obs).to(device)).argmax(1).cpu().numpy()
    explore = rng.random(len(obs)) < eps
    if explore.any():
        action[explore] = rng.integers(n_actions, size=int(explore.sum()))
    return action


def play(q: Optional[nn.Module], envs: Envs, episode_seeds: List[int], eps: float, rng: np.random.Generator,
         device: torch.device) -> List[Episode]:
    """One episode in each copy (started from the given seeds), epsilon-greedy on q (q None: the
    uniform random policy); the copies that finish early keep stepping but are not counted."""
    obs = envs.reset(episode_seeds)
    done: Dict[int, Tuple[float, int]] = {}
    while len(done) < envs.n:
        if q is None:
            action = rng.integers(envs.n_actions, size=envs.n)
        else:
            action = epsilon_greedy(q, obs, eps, rng, envs.n_actions, device)
        obs, _, _, _, ended = envs.step(action)
        for i, ep in ended:
            done.setdefault(i, ep)
    return [done[i] for i in range(envs.n)]


def summarise(episodes: List[Episode]) -> Dict[str, float]:
    r = np.array([e[0] for e in episodes], dtype=np.float64)
    n = np.array([e[1] for e in episodes], dtype=np.float64)
    return {"return": float(r.mean()), "return_std": float(r.std(ddof=1)) if len(r) > 1 else 0.0,
            "length": float(n.mean())}
