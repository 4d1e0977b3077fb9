"""Sequence-model figures (not part of the test run), through dl2bench's own runs.

    python tests/benchmarks/bench_sequence.py --only throughput   # tokens/s: dl2bench vs a bare loop
    python tests/benchmarks/bench_sequence.py --only adding       # test MSE / skill vs T per model
    python tests/benchmarks/bench_sequence.py --only rows         # row-by-row Fashion-MNIST, full data
    python tests/benchmarks/bench_sequence.py --only lm           # nats/char on Shakespeare per model

throughput: char_lm shapes (context 64, --batch windows, 2 layers at 800,000 parameters): the
tokens per second of dl2bench's training epochs (its samples_per_s, warm-up excluded, evaluation
not counted) against a bare loop of the same module, optimizer and batch (random windows,
forward, cross-entropy, backward, Adam step), timed after --warmup steps; alternated --repeats
times, medians. adding: the task's defaults (hidden 128, 10,000 sequences, 10 epochs, Adam 1e-3),
every model (--models) at T in --lengths, without clipping (--regs none grad_clip: also clipped at norm 1),
seeds --seeds. rows: the task's
defaults (hidden 128, 5 epochs, batch 128) per model. lm: the char_lm sweep's settings per model.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from dl2bench import env as E  # noqa: E402
from dl2bench.config import RunConfig  # noqa: E402
from dl2bench.families import MODELS  # noqa: E402
from dl2bench.train import run  # noqa: E402

MODEL_NAMES = ("rnn", "lstm", "gru", "transformer")
COMMON = {"wandb": "disabled", "progress": "none", "save_weights": False, "checkpoint": False}


def go(out: Path, **cfg):
    c = RunConfig.from_dict({**COMMON, **cfg}).resolve()
    t0 = time.perf_counter()
    s = run(c, out / c.run_id())
    return s, time.perf_counter() - t0


def throughput(out: Path, threads: int, batch: int, steps: int, warmup: int, repeats: int, data_root: str) -> None:
    from dl2bench.families.sequence import task as S

    torch.set_num_threads(threads)
    print(f"\n## tokens/s, char_lm, context 64, batch {batch}, 2 layers at 800k parameters, {steps} steps, "
          f"median of {repeats}")
    print(f"{'model':<12} {'params':>8} {'bare':>10} {'dl2bench':>10} {'ratio':>6}")
    for name in MODEL_NAMES:
        cfg = dict(task="char_lm", model=name, num_layers=2, param_budget=800_000, batch_size=batch, lm_steps=steps,
                   epochs=1, lm_eval_chars=2000, sample_len=0, threads=threads, data_root=data_root,
                   warmup_steps=warmup, device="cpu")
        resolved = RunConfig.from_dict({**COMMON, **cfg}).resolve()
        text = S.read_corpus(str(S.corpus_path(resolved)))
        chars = sorted(set(text))
        ids = torch.tensor([chars.index(c) for c in text[: int(len(text) * 0.9)][:500_000]])
        bare, ours, params = [], [], None
        for k in range(repeats):
            s, _ = go(out / f"tp{k}", **cfg)
            ours.append(s["samples_per_s"])
            params = s["params"]
            torch.manual_seed(0)
            hidden = S.fit_width(resolved, type("R", (), {"model_kwargs": {}})(), (64,), len(chars),
                                 {"vocab": len(chars), "per_step": True, "causal": True})
            m = MODELS[name]((64,), len(chars), hidden_size=hidden, num_layers=2, num_heads=4, vocab=len(chars),
                             per_step=True, causal=True)
            opt = torch.optim.Adam(m.parameters(), lr=1e-3)
            g = torch.Generator().manual_seed(1)
            span = torch.arange(65)
            for i in range(steps):
                if i == warmup:
                    t0 = time.perf_counter()
                start = torch.randint(0, len(ids) - 65, (batch,), generator=g)
                w = ids[start[:, None] + span]
                logits = m(w[:, :-1])
                loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), w[:, 1:].reshape(-1))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            bare.append((steps - warmup) * batch * 64 / (time.perf_counter() - t0))
        b, o = statistics.median(bare), statistics.median(ours)
        print(f"{name:<12} {params:>8,} {b:>10,.0f} {o:>10,.0f} {o / b:>6.3f}")


def adding(out: Path, threads: int, lengths, seeds, regs, models) -> None:
    print(f"\n## the adding problem: test MSE (skill = 1 - MSE / baseline) per model and T, seeds {list(seeds)}")
    print(f"{'model':<12} {'clip':>5} " + " ".join(f"{'T=' + str(t):>16}" for t in lengths) + "   time")
    for name in models:
        for reg in regs:
            cells, total = [], 0.0
            for t in lengths:
                mse, skill = [], []
                for seed in seeds:
                    s, took = go(out, task="adding", model=name, seq_len=t, regularizer=reg, seed=seed,
                                 threads=threads)
                    mse.append(s["test_mse"])
                    skill.append(s["test_skill"])
                    total += took
                cells.append(f"{statistics.mean(mse):.4f} ({statistics.mean(skill):+.2f})")
            print(f"{name:<12} {reg != 'none'!s:>5} " + " ".join(f"{c:>16}" for c in cells) + f"   {total:.0f} s",
                  flush=True)


def rows(out: Path, threads: int) -> None:
    print("\n## Fashion-MNIST row by row (28 steps of 28 pixels), full data, task defaults, seed 0")
    print(f"{'model':<12} {'params':>8} {'test acc':>9} {'train s':>8} {'samples/s':>10}")
    for name in MODEL_NAMES:
        s, _ = go(out, task="fashion_mnist_rows", model=name, threads=threads)
        print(f"{name:<12} {s['params']:>8,} {s['test_acc']:>9.4f} {s['train_time_total']:>8.0f} "
              f"{s['samples_per_s']:>10,.0f}", flush=True)


def lm(out: Path, threads: int, data_root: str) -> None:
    print("\n## char_lm on Shakespeare (2 layers, <= 800k parameters, context 64, batch 12, 4 x 500 steps), seed 0")
    print(f"{'model':<12} {'params':>8} {'val nats/char':>13} {'test nats/char':>14} {'test bits/char':>14} "
          f"{'train s':>8} {'tokens/s':>9}")
    for name in MODEL_NAMES:
        s, _ = go(out, task="char_lm", model=name, num_layers=2, param_budget=800_000, threads=threads,
                  data_root=data_root)
        print(f"{name:<12} {s['params']:>8,} {s['final_val_loss']:>13.4f} {s['test_loss']:>14.4f} {s['test_bpc']:>14.4f} "
              f"{s['train_time_total']:>8.0f} {s['samples_per_s']:>9,.0f}", flush=True)
        print(f"    sample (T 0.8): {s['sample'][:160]!r}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", choices=("throughput", "adding", "rows", "lm"), default=None)
    p.add_argument("--threads", type=int, default=0, help="0: every usable core")
    p.add_argument("--data-root", default="", help="where shakespeare-complete.txt.gz is ('' = the data folders)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--lengths", type=int, nargs="+", default=[10, 50, 100, 200])
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--models", nargs="+", default=list(MODEL_NAMES), choices=MODEL_NAMES)
    p.add_argument("--regs", nargs="+", default=["none"], choices=("none", "grad_clip"),
                   help="adding: without clipping, and/or with clipping at norm 1")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    threads = args.threads or E.default_threads()
    out = Path(args.out or tempfile.mkdtemp(prefix="bench_sequence_"))
    print(f"# threads={threads} device=cpu torch={torch.__version__} out={out}")
    if args.only in (None, "throughput"):
        throughput(out, threads, args.batch, args.steps, args.warmup, args.repeats, args.data_root)
    if args.only in (None, "adding"):
        adding(out, threads, args.lengths, args.seeds, args.regs, args.models)
    if args.only in (None, "rows"):
        rows(out, threads)
    if args.only in (None, "lm"):
        lm(out, threads, args.data_root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
