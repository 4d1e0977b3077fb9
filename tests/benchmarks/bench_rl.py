"""Deep Q-learning speed (not part of the test run): environment transitions per second.

    python tests/benchmarks/bench_rl.py                 # the game alone, then the DQN loop vs a bare one
    python tests/benchmarks/bench_rl.py --only game
    python tests/benchmarks/bench_rl.py --only loop --transitions 20000

game: the grid game stepped with uniform random actions, N copies at once (MouseGrid), through
the loop's batched wrapper (GridEnvs: automatic resets, episode returns) and through Gymnasium
(gym.make with its checker wrappers, one copy); CartPole-v1 through Gymnasium for scale. Medians
of --repeats runs of --steps vector steps each, after one warm-up run.

loop: dl2bench's mouse_grid run (its samples_per_s: transitions per second of the training epochs,
warm-up excluded, evaluation not counted) against a bare DQN loop written out here with the same
game, network, optimizer and settings (act, store, a gradient step every train_every transitions,
target copy every target_every), timed the same way; alternated --repeats times, medians.
One thread, CPU.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from dl2bench.config import RunConfig  # noqa: E402
from dl2bench.families import MODELS  # noqa: E402
from dl2bench.families.rl import envs as V  # noqa: E402
from dl2bench.families.rl import mouse  # noqa: E402
from dl2bench.train import run  # noqa: E402


def _median_rate(fn, transitions: int, repeats: int) -> float:
    fn()  # warm-up
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        rates.append(transitions / (time.perf_counter() - t0))
    return statistics.median(rates)


def game(steps: int, repeats: int) -> None:
    import gymnasium as gym

    print(f"\n## the game alone: transitions/s, random actions, median of {repeats} x {steps} vector steps")
    print(f"{'what':<44} {'copies':>6} {'transitions/s':>14}")
    rng = np.random.default_rng(0)
    for n in (1, 16, 256):
        g = mouse.MouseGrid(n)
        g.reset(list(range(n)))
        acts = rng.integers(4, size=(steps, n))

        def raw():
            for a in acts:  # no resets: episodes truncate at 100 moves, the board stays valid
                g.step(a)

        print(f"{'MouseGrid.step (numpy, batched)':<44} {n:>6} {_median_rate(raw, steps * n, repeats):>14,.0f}")
        e = V.GridEnvs(n, mouse.Rules())
        e.reset(list(range(n)))

        def wrapped():
            for a in acts:
                e.step(a)

        print(f"{'GridEnvs.step (resets, returns)':<44} {n:>6} {_median_rate(wrapped, steps * n, repeats):>14,.0f}")
    mouse.register()
    for env_id in (mouse.ENV_ID, "CartPole-v1"):
        env = gym.make(env_id)
        env.reset(seed=0)
        acts = rng.integers(2 if env_id == "CartPole-v1" else 4, size=steps)

        def gym_loop():
            for a in acts:
                if any(env.step(int(a))[2:4]):
                    env.reset()

        print(f"{'gymnasium.make(' + env_id + ')':<44} {1:>6} {_median_rate(gym_loop, steps, repeats):>14,.0f}")


def bare_dqn(cfg: RunConfig, warmup: int) -> float:
    """The same algorithm with nothing around it; transitions/s after `warmup` transitions."""
    torch.manual_seed(cfg.seed)
    g = mouse.MouseGrid(1, mouse.Rules())
    obs = g.reset([cfg.seed])
    q = MODELS[cfg.model]((2, 5, 5), 4)
    target = copy.deepcopy(q)
    opt = torch.optim.Adam(q.parameters(), lr=cfg.lr)
    cap = cfg.buffer_size
    b_obs, b_next = torch.zeros(cap, 2, 5, 5), torch.zeros(cap, 2, 5, 5)
    b_act, b_rew, b_term = torch.zeros(cap, dtype=torch.long), torch.zeros(cap), torch.zeros(cap)
    rng = np.random.default_rng(0)
    gen = torch.Generator().manual_seed(0)
    total = cfg.epochs * cfg.epoch_steps
    span = cfg.explore_fraction * total
    t0 = None
    for t in range(total):
        if t == warmup:
            t0 = time.perf_counter()
        eps = max(cfg.explore_end, 1.0 + (cfg.explore_end - 1.0) * t / span)
        with torch.no_grad():
            a = q(torch.from_numpy(obs)).argmax(1).numpy()
        if rng.random() < eps:
            a = rng.integers(4, size=1)
        nxt, r, term, trunc = g.step(a)
        i = t % cap
        b_obs[i], b_next[i] = torch.from_numpy(obs[0]), torch.from_numpy(nxt[0])
        b_act[i], b_rew[i], b_term[i] = int(a[0]), float(r[0]), float(term[0])
        if term[0] or trunc[0]:
            g.reset_one(0)
            nxt = g.observe()
        obs = nxt
        if (t + 1) % cfg.train_every == 0 and t + 1 >= cfg.learning_starts:
            idx = torch.randint(min(t + 1, cap), (cfg.batch_size,), generator=gen)
            with torch.no_grad():
                y = b_rew[idx] + cfg.gamma * (1 - b_term[idx]) * target(b_next[idx]).max(1).values
            loss = F.mse_loss(q(b_obs[idx]).gather(1, b_act[idx, None]).squeeze(1), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if (t + 1) % cfg.target_every == 0:
                target.load_state_dict(q.state_dict())
    return (total - warmup) / (time.perf_counter() - t0)


def loop(transitions: int, repeats: int) -> None:
    epochs = max(1, transitions // 5000)
    print(f"\n## the DQN loop: transitions/s, mouse_grid defaults, {epochs} x 5,000 transitions, median of {repeats}")
    print(f"{'model':<10} {'bare loop':>10} {'dl2bench':>10} {'ratio':>6}")
    out = Path(tempfile.mkdtemp(prefix="bench_rl_"))
    for model in ("qnet_fc", "qnet_conv"):
        cfg = RunConfig.from_dict({"task": "mouse_grid", "model": model, "epochs": epochs, "threads": 1,
                                   "wandb": "disabled", "progress": "none", "checkpoint": False,
                                   "save_weights": False, "test_episodes": 10}).resolve()
        warm = cfg.warmup_steps * cfg.train_every  # what dl2bench leaves out of samples_per_s
        bare, ours = [], []
        for k in range(repeats):  # alternated, so drift hits both alike
            bare.append(bare_dqn(cfg, warm))
            ours.append(run(cfg, out / f"{model}-{k}")["samples_per_s"])
        b, o = statistics.median(bare), statistics.median(ours)
        print(f"{model:<10} {b:>10,.0f} {o:>10,.0f} {o / b:>6.3f}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", choices=("game", "loop"), default=None)
    p.add_argument("--steps", type=int, default=2000, help="game: vector steps per timed run")
    p.add_argument("--transitions", type=int, default=20000, help="loop: transitions per run")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(1)
    print(f"# threads=1 device=cpu torch={torch.__version__}")
    if args.only in (None, "game"):
        game(args.steps, args.repeats)
    if args.only in (None, "loop"):
        loop(args.transitions, args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
