"""Adversarial figures (not part of the test run), on the real data, through dl2bench's own runs.

    python tests/benchmarks/bench_attacks.py --only throughput       # PGD step vs bare forward+backward
    python tests/benchmarks/bench_attacks.py --only tables           # robust accuracy vs eps, full data
    python tests/benchmarks/bench_attacks.py --only training         # standard vs PGD-trained lenet

throughput: for each victim model, images attacked per second per PGD step (one l-inf PGD attack
of `--steps` steps on one batch, timed after a warm-up attack, device synchronised) against a bare
forward + backward of the same model on the same batch with respect to the input (what one PGD
step cannot avoid), with and without the random start. Target: PGD step time <= 1.2 x the bare pass.

tables: trains each victim with its task's known-good recipe (Fashion-MNIST mlp, CIFAR-10 (JPEG)
lenet; seed 0), then attacks all 10,000 test images with FGSM and l-inf PGD
(random start, 1 restart) at the field's eps grids (28x28: 0 ... 0.3, 40 steps; CIFAR-10:
0 ... 16/255, 10 steps), each as one `<dataset>_attack` run.

training: Fashion-MNIST lenet trained standard and with 7-step PGD at eps 0.1 (Adam 1e-3,
batch 128, 10 epochs, as sweeps/adversarial_training.yaml), both attacked like the tables (the
standard one is the Fashion-MNIST lenet table).
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
from dl2bench.families.adversarial.attacks import ATTACKS, Threat  # noqa: E402
from dl2bench.train import run  # noqa: E402

EPS = {"fashion_mnist": ([0.0, 0.05, 0.1, 0.15, 0.2, 0.3], 40),
       "cifar10": ([0.0, 1 / 255, 2 / 255, 4 / 255, 8 / 255, 16 / 255], 10)}
VICTIMS = [("fashion_mnist", "mlp"), ("fashion_mnist", "lenet"), ("cifar10", "lenet")]  # throughput
TABLES = [("fashion_mnist", "mlp"), ("cifar10", "lenet")]  # Fashion-MNIST lenet: the `training` part
COMMON = {"wandb": "disabled", "progress": "none", "seed": 0}


def train(out: Path, **cfg) -> str:
    c = RunConfig.from_dict({**COMMON, **cfg}).resolve()
    t0 = time.perf_counter()
    s = run(c, out / c.run_id())
    print(f"# trained {cfg}: test_acc {s['test_acc']:.4f} ({time.perf_counter() - t0:.0f} s)", flush=True)
    return c.run_id()


def attack_table(out: Path, dataset: str, victim: str, label: str, threads: int) -> None:
    eps_grid, steps = EPS[dataset]
    rows = {}
    for attack in ("fgsm", "pgd"):
        for eps in eps_grid:
            s = run({**COMMON, "task": f"{dataset}_attack", "attack_run": victim, "attack_from": str(out),
                     "attack": attack, "attack_eps": eps, "attack_steps": steps, "threads": threads},
                    out / "attacks" / f"{victim}-{attack}-{eps:.5f}")
            rows[(attack, eps)] = s
    scale, unit = (255, "/255") if dataset == "cifar10" else (1, "")
    print(f"\n## {label}: robust accuracy on every test image (clean {rows[('fgsm', 0.0)]['test_clean_acc']:.4f}); "
          f"PGD: {steps} steps of 2.5 eps/{steps}, random start")
    print(f"{'eps':>10} {'FGSM':>8} {'PGD':>8} {'PGD success':>12} {'PGD mean ||d||inf':>18} {'PGD s':>7}")
    for eps in eps_grid:
        f, p = rows[("fgsm", eps)], rows[("pgd", eps)]
        print(f"{eps * scale:>8.3g}{unit:<2} {f['test_robust_acc']:>8.4f} {p['test_robust_acc']:>8.4f} "
              f"{p['test_success_rate']:>12.4f} {p['test_mean_norm']:>18.4f} {p['test_eval_time']:>7.1f}")


def throughput(threads: int, steps: int, batch: int, repeats: int, device: str = "cpu", victims=VICTIMS) -> None:
    """Per model, median over `repeats` interleaved rounds, each figure per PGD step:
    input: a bare forward + backward with respect to the input only (what a PGD step cannot avoid);
    train: a bare forward + backward as a training step computes it (loss.backward(), parameter
           gradients, the input not);
    PGD with and without its random start (one draw per attack, spread over its steps);
    foolbox 3.3.4's LinfPGD at the same steps, step size and random start, where it is installed:
           the same algorithm in another library, so what PGD costs beyond a pass is not ours alone."""
    import copy

    from dl2bench import data as D
    from dl2bench.families import MODELS

    try:
        import foolbox as fb
    except ImportError:  # a dev dependency: without it the column says so
        fb = None
    torch.set_num_threads(threads)
    dev = torch.device(device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)  # before every clock read
    print(f"\n## PGD step vs bare forward+backward, batch {batch}, {steps} steps per attack, eps 0.1, "
          f"median of {repeats} interleaved rounds; ms per step")
    head = ["model", "data", "input", "train", "PGD", "/input", "/train", "no-rs", "/input", "foolbox",
            "fb/PGD", "images/s/step"]
    print(" ".join(f"{h:>8}" for h in head))
    for dataset, model_name in victims:
        raw = D.load(dataset, "", False)
        x = (raw.test_x[:batch].float() / 255).to(dev)
        y = raw.test_y[:batch].long().to(dev)
        torch.manual_seed(0)
        model = MODELS[model_name](tuple(x.shape[1:]), 10).to(dev).eval()
        trained = copy.deepcopy(model)  # same weights, parameters taking gradients as in training
        for p in model.parameters():
            p.requires_grad_(False)

        def bare_input():
            # no copy of the batch: PGD's gradient step makes none either (a clone here cost ~0.3 ms,
            # a quarter of the MLP's pass, and flattered the ratio)
            xi = x.detach().requires_grad_(True)
            loss = F.cross_entropy(model(xi), y, reduction="sum")
            torch.autograd.grad(loss, xi)

        def bare_train():
            for q in trained.parameters():
                q.grad = None
            F.cross_entropy(trained(x), y, reduction="sum").backward()

        gen = torch.Generator().manual_seed(0)
        threat = {rs: Threat(eps=0.1, steps=steps, random_start=rs) for rs in (True, False)}
        runs = {"input": lambda: [bare_input() for _ in range(steps)],
                "train": lambda: [bare_train() for _ in range(steps)],
                "pgd": lambda: ATTACKS["pgd"](model, x, y, threat[True], generator=gen),
                "no-rs": lambda: ATTACKS["pgd"](model, x, y, threat[False], generator=gen)}
        if fb is not None:
            fmodel = fb.PyTorchModel(model, bounds=(0, 1), device=dev)
            fpgd = fb.attacks.LinfPGD(abs_stepsize=threat[True].alpha, steps=steps, random_start=True)
            runs["foolbox"] = lambda: fpgd(fmodel, x, y, epsilons=0.1)
        for _ in range(3):  # warm-up (a GPU's kernels and allocator too)
            for f in runs.values():
                f()
        times = {k: [] for k in runs}
        for _ in range(repeats):  # interleaved, so drift hits all alike
            for k, f in runs.items():
                sync()
                t0 = time.perf_counter()
                f()
                sync()
                times[k].append((time.perf_counter() - t0) / steps)
        m = {k: statistics.median(v) for k, v in times.items()}
        fbm = f"{m['foolbox'] * 1e3:>8.2f} {m['foolbox'] / m['pgd']:>8.2f}" if "foolbox" in m else \
            f"{'n/a':>8} {'':>8}"
        print(f"{model_name:>8} {dataset[:8]:>8} {m['input'] * 1e3:>8.2f} {m['train'] * 1e3:>8.2f} "
              f"{m['pgd'] * 1e3:>8.2f} {m['pgd'] / m['input']:>8.3f} {m['pgd'] / m['train']:>8.3f} "
              f"{m['no-rs'] * 1e3:>8.2f} {m['no-rs'] / m['input']:>8.3f} {fbm} {batch / m['pgd']:>13.0f}",
              flush=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", choices=("throughput", "tables", "training"), default=None)
    p.add_argument("--threads", type=int, default=0, help="0: every usable core")
    p.add_argument("--steps", type=int, default=10, help="throughput: PGD steps per timed attack")
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--victims", default=",".join(f"{d}:{m}" for d, m in VICTIMS),
                   help="throughput: dataset:model pairs, comma-separated")
    p.add_argument("--device", default="cpu", help="throughput only: cpu or cuda (tests/gpu/check.sh runs it there)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", default=None, help="keep the runs here (default: a temporary folder)")
    args = p.parse_args()
    threads = args.threads or E.default_threads()
    out = Path(args.out or tempfile.mkdtemp(prefix="bench_attacks_"))
    if args.device != "cpu" and args.only != "throughput":
        p.error("--device: only the throughput part runs on a GPU here; add --only throughput")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        p.error(f"--device {args.device}: no CUDA device here (torch.cuda.is_available() is False)")
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") and torch.cuda.is_available() else "cpu"
    print(f"# threads={threads} device={args.device} ({name}) torch={torch.__version__} out={out}")
    if args.only in (None, "throughput"):
        victims = [tuple(v.split(":", 1)) for v in args.victims.split(",") if v]
        if any(len(v) != 2 for v in victims):
            p.error(f"--victims {args.victims!r}: expected dataset:model pairs, e.g. fashion_mnist:mlp")
        throughput(threads, args.steps, args.batch, args.repeats, args.device, victims)
    if args.only in (None, "tables"):
        for dataset, model in TABLES:
            vid = train(out, task=dataset, model=model, threads=threads)
            label = f"{'CIFAR-10 (JPEG)' if dataset == 'cifar10' else 'Fashion-MNIST'} {model}"
            attack_table(out, dataset, vid, label, threads)
    if args.only in (None, "training"):
        recipe = dict(task="fashion_mnist", model="lenet", optimizer="adam", lr=1e-3, batch_size=128, epochs=10,
                      threads=threads)
        for name, extra in (("standard", {}), ("PGD-trained (7 steps, eps 0.1)", {"adv_train": "pgd", "adv_eps": 0.1,
                                                                                  "adv_steps": 7})):
            vid = train(out, **recipe, **extra)
            attack_table(out, "fashion_mnist", vid, f"Fashion-MNIST lenet, {name}", threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
