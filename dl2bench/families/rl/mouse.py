"""The course's grid game: a mouse eats cheese and avoids poison, seeing only the cells near it.

Rules (every number is config, `Rules`; the defaults are the ones dl2bench trains with):
- a `size` x `size` grid holds `cheese` cheese cells and `poison` poison cells, all distinct and
  never under the mouse at the start; the mouse starts on a uniformly random cell;
- actions 0 up, 1 right, 2 down, 3 left; `walls="wrap"` (default): the grid is a torus;
  `walls="wall"`: a move off the grid leaves the mouse where it is. The torus is the default
  because the two channels cannot show a wall: beyond it the window reads empty, so a greedy
  policy facing an empty window walks into the wall and stays there (measured: test return 4.5
  with walls against 19.6 on the torus, qnet_fc, the task's defaults, seed 0);
- entering a cell with cheese gives `reward_cheese` (+0.5), with poison `reward_poison` (-1); the
  item is consumed, and with `respawn` (default) a new one of its kind appears on a uniformly
  random cell that is empty and not the mouse's, so the density stays constant; without respawn
  the episode terminates when the last cheese is eaten;
- an episode is truncated after `max_steps` moves (a time limit, not a terminal state);
- the observation is the 5 x 5 window centred on the mouse (the cells within distance 2 along
  each axis), as two channels (cheese, poison) of 0/1 floats, shape (2, 5, 5); cells beyond a
  wall read 0 in both channels.

`MouseGrid` steps N independent copies at once in numpy (what the DQN loop and the benchmarks
use); copy i draws only from its own generator, so its episodes are the same whatever N is and on
every machine. `MouseGridEnv` is the single-copy Gymnasium environment (registered as
`dl2bench/MouseGrid-v0`), for `gymnasium.make` and `check_env`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

VIEW = 2  # cells seen in each direction: a (2 VIEW + 1)^2 window
MOVES = np.array([[-1, 0], [0, 1], [1, 0], [0, -1]])  # up, right, down, left (row, column)
ACTIONS = ("up", "right", "down", "left")
ENV_ID = "dl2bench/MouseGrid-v0"


@dataclass(frozen=True)
class Rules:
    size: int = 10
    cheese: int = 10
    poison: int = 5
    max_steps: int = 100
    walls: str = "wrap"  # wrap | wall
    respawn: bool = True
    reward_cheese: float = 0.5
    reward_poison: float = -1.0

    def __post_init__(self) -> None:
        if self.walls not in ("wall", "wrap"):
            raise ValueError(f"walls: expected 'wall' or 'wrap', got {self.walls!r}")
        if self.size < 3:
            raise ValueError(f"size: expected >= 3, got {self.size}")
        if self.cheese < 1 or self.poison < 0:
            raise ValueError(f"cheese >= 1 and poison >= 0 expected, got {self.cheese} and {self.poison}")
        free = self.size * self.size - 1  # the mouse's cell stays clear
        if self.cheese + self.poison > free - 1:  # respawning needs one more empty cell
            raise ValueError(f"cheese + poison = {self.cheese + self.poison} items do not fit on a "
                             f"{self.size}x{self.size} grid with room to respawn (at most {free - 1})")
        if self.max_steps < 1:
            raise ValueError(f"max_steps: expected >= 1, got {self.max_steps}")

    @property
    def obs_shape(self) -> Tuple[int, int, int]:
        return (2, 2 * VIEW + 1, 2 * VIEW + 1)


class MouseGrid:
    """N copies of the game; `reset(seeds)` then `step(actions)`, all arrays batched over copies.

    A board is one int8 row per copy (0 empty, 1 cheese, 2 poison) over the cells in row-major
    order plus one cell that is always empty (where the window's cells beyond a wall point); the
    moves and the 5 x 5 windows are lookup tables, so a step is a handful of numpy gathers."""

    def __init__(self, n: int, rules: Rules = Rules()):
        self.n, self.rules = n, rules
        s = rules.size
        cells = s * s
        self.board = np.zeros((n, cells + 1), dtype=np.int8)
        self.pos = np.zeros(n, dtype=np.int64)  # flat cell index
        self.t = np.zeros(n, dtype=np.int64)
        self.rngs: List[np.random.Generator] = [np.random.default_rng(i) for i in range(n)]
        rc = np.stack(np.divmod(np.arange(cells), s), 1)  # (cells, 2)
        d = np.arange(-VIEW, VIEW + 1)
        if rules.walls == "wrap":
            nxt = (rc[:, None] + MOVES) % s
            rows, cols = (rc[:, 0, None] + d) % s, (rc[:, 1, None] + d) % s
            inside = np.ones((cells, len(d), len(d)), dtype=bool)
        else:
            nxt = np.clip(rc[:, None] + MOVES, 0, s - 1)
            rows, cols = rc[:, 0, None] + d, rc[:, 1, None] + d
            inside = ((rows >= 0) & (rows < s))[:, :, None] & ((cols >= 0) & (cols < s))[:, None, :]
        self._move = nxt[..., 0] * s + nxt[..., 1]  # (cells, 4)
        window = rows.clip(0, s - 1)[:, :, None] * s + cols.clip(0, s - 1)[:, None, :]
        self._window = np.where(inside, window, cells).reshape(cells, -1)  # (cells, 25)
        self._copies = np.arange(n)

    @property
    def cheese(self) -> np.ndarray:
        s = self.rules.size
        return (self.board[:, : s * s] == 1).reshape(self.n, s, s)

    @property
    def poison(self) -> np.ndarray:
        s = self.rules.size
        return (self.board[:, : s * s] == 2).reshape(self.n, s, s)

    # ---------------------------------------------------------------------------------------
    def reset(self, seeds: Optional[Sequence[Optional[int]]] = None) -> np.ndarray:
        """Start a new episode in every copy; a copy given a seed restarts its generator from it."""
        for i in range(self.n):
            self.reset_one(i, None if seeds is None else seeds[i])
        return self.observe()

    def reset_one(self, i: int, seed: Optional[int] = None) -> None:
        r = self.rules
        if seed is not None:
            self.rngs[i] = np.random.default_rng(seed)
        cells = self.rngs[i].choice(r.size * r.size, size=1 + r.cheese + r.poison, replace=False)
        self.board[i] = 0
        self.pos[i] = cells[0]
        self.board[i, cells[1 : 1 + r.cheese]] = 1
        self.board[i, cells[1 + r.cheese :]] = 2
        self.t[i] = 0

    def step(self, actions: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Move every copy; returns (observation, reward, terminated, truncated). A finished copy
        stays finished until `reset_one`: stepping it again is the caller's error, not checked."""
        r = self.rules
        self.pos = pos = self._move[self.pos, np.asarray(actions, dtype=np.int64)]
        item = self.board[self._copies, pos]
        reward = np.where(item == 1, np.float32(r.reward_cheese), np.where(item == 2, np.float32(r.reward_poison),
                                                                          np.float32(0.0)))
        eaten = np.flatnonzero(item)
        if len(eaten):
            self.board[eaten, pos[eaten]] = 0
            if r.respawn:
                for i in eaten:
                    self._respawn(int(i), item[i])
        self.t += 1
        if r.respawn:
            terminated = np.zeros(self.n, dtype=bool)
        else:
            terminated = ~(self.board == 1).any(1)
        truncated = (self.t >= r.max_steps) & ~terminated
        return self.observe(), reward, terminated, truncated

    def _respawn(self, i: int, kind: int) -> None:
        row = self.board[i, :-1]
        free = np.flatnonzero(row == 0)
        free = free[free != self.pos[i]]
        row[free[self.rngs[i].integers(len(free))]] = kind

    # ---------------------------------------------------------------------------------------
    def observe(self) -> np.ndarray:
        """(N, 2, 5, 5) float32: cheese and poison in the window around each mouse."""
        w = self.board[self._copies[:, None], self._window[self.pos]]  # (N, 25)
        side = 2 * VIEW + 1
        return np.stack([w == 1, w == 2], 1).astype(np.float32).reshape(self.n, 2, side, side)

    def snapshot(self, i: int) -> Dict[str, np.ndarray]:
        """Copy i's whole board, for rendering."""
        s = self.rules.size
        b = self.board[i, : s * s].reshape(s, s)
        return {"cheese": b == 1, "poison": b == 2, "pos": np.array(divmod(int(self.pos[i]), s))}

    # checkpoints: the boards, positions, clocks and every copy's generator
    def state_dict(self) -> Dict[str, Any]:
        return {"rules": asdict(self.rules), "board": self.board.copy(), "pos": self.pos.copy(), "t": self.t.copy(),
                "rngs": [g.bit_generator.state for g in self.rngs]}

    def load_state_dict(self, s: Dict[str, Any]) -> None:
        if s["rules"] != asdict(self.rules) or len(s["rngs"]) != self.n:
            raise ValueError(f"checkpointed game {s['rules']} x{len(s['rngs'])} does not match "
                             f"{asdict(self.rules)} x{self.n}")
        self.board, self.pos, self.t = s["board"].copy(), s["pos"].copy(), s["t"].copy()
        for g, st in zip(self.rngs, s["rngs"]):
            g.bit_generator.state = st


def render(board: Dict[str, np.ndarray], cell: int = 6) -> np.ndarray:
    """One board as an RGB uint8 image: cheese yellow, poison purple, the mouse grey with its
    5 x 5 view outlined."""
    s = board["cheese"].shape[0]
    img = np.full((s, s, 3), 245, dtype=np.uint8)
    img[board["cheese"]] = (240, 190, 30)
    img[board["poison"]] = (130, 40, 160)
    img = img.repeat(cell, 0).repeat(cell, 1)
    r, c = (int(v) for v in board["pos"])
    img[r * cell + 1:(r + 1) * cell - 1, c * cell + 1:(c + 1) * cell - 1] = (70, 70, 70)
    lo_r, hi_r = max(r - VIEW, 0) * cell, min(r + VIEW + 1, s) * cell - 1
    lo_c, hi_c = max(c - VIEW, 0) * cell, min(c + VIEW + 1, s) * cell - 1
    for rr in (lo_r, hi_r):
        img[rr, lo_c:hi_c + 1] = (200, 40, 40)
    for cc in (lo_c, hi_c):
        img[lo_r:hi_r + 1, cc] = (200, 40, 40)
    return img


def _gym_env():
    import gymnasium as gym
    from gymnasium import spaces

    class MouseGridEnv(gym.Env):
        """One copy of the game as a Gymnasium environment (the time limit is the game's own
        truncation, so no TimeLimit wrapper is needed)."""

        metadata = {"render_modes": ["rgb_array"], "render_fps": 4}

        def __init__(self, render_mode: Optional[str] = None, **rules: Any):
            self.rules = Rules(**rules)
            self.game = MouseGrid(1, self.rules)
            self.observation_space = spaces.Box(0.0, 1.0, self.rules.obs_shape, dtype=np.float32)
            self.action_space = spaces.Discrete(4)
            self.render_mode = render_mode

        def reset(self, *, seed: Optional[int] = None, options: Optional[dict] = None):
            super().reset(seed=seed)
            # the game draws from its own generator; seeding it from gym's keeps reset(seed) exact
            self.game.reset_one(0, int(self.np_random.integers(2**63)))
            return self.game.observe()[0], {}

        def step(self, action):
            obs, reward, terminated, truncated = self.game.step(np.array([int(action)]))
            return obs[0], float(reward[0]), bool(terminated[0]), bool(truncated[0]), {}

        def render(self):
            return render(self.game.snapshot(0))

    return MouseGridEnv


def register() -> None:
    """Make `gymnasium.make("dl2bench/MouseGrid-v0", **rules)` work (idempotent)."""
    import gymnasium as gym

    if ENV_ID not in gym.registry:
        gym.register(ENV_ID, entry_point=_gym_env())
