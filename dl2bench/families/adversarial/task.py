"""Adversarial robustness (course practical 5): attack the trained classifier of another run.

`<dataset>_attack` loads the weights a classification run left behind (`attack_run`, found under
`attack_from`), puts that run's input normalisation in front of it so the attack works on [0, 1]
pixels, and attacks every test point (`test_size` 0) with FGSM or PGD (attacks.py). It does
not train: epochs are 0 and the one evaluation is the attack. The model key is the attacked run's
model, so a sweep's report groups attacks by the model they broke.

Metrics, all on the test split: robust accuracy over every test point (the headline), the clean
accuracy of the same points, the attack's success rate over the points the model got right
(untargeted: now wrong; targeted: now the target class), the mean perturbation norm of the
successful adversarial examples, and the adversarial cross-entropy.
"""
from __future__ import annotations

import functools
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional

import numpy as np

from ... import runs
from ...errors import ConfigError
from ...media import MEDIA, Image, Media, Table, arrays, hwc
from ..base import TASKS, Key, Metric, NoTraining, Problem, Task

if TYPE_CHECKING:
    import torch
    from torch import nn

FAMILY = "adversarial"
ATTACK_NAMES = ("fgsm", "pgd")
NORM_NAMES = ("linf", "l2")
EXAMPLES = "examples.npz"  # clean / adversarial images and predictions for the report
TARGET_SEED = 7  # random starts and targets: the same for every run attacking the same points

KEYS = {
    "attack_run": Key(str, "", "adversarial: the classification run to attack (its run id, a unique prefix "
                      "of >= 6 characters, or its folder)", factor=False),
    "attack_from": Key(str, "runs", "adversarial: folders to look for attack_run in, separated by "
                       f"{os.pathsep!r}", bookkeeping=True),
    "attack": Key(str, "pgd", "adversarial: fgsm | pgd", choices=ATTACK_NAMES),
    "norm": Key(str, "linf", "adversarial: the threat model's norm: linf | l2", choices=NORM_NAMES),
    "attack_eps": Key(Optional[float], None, "adversarial: radius of the ball in [0, 1] pixel units "
                      "(l-inf: at most 1); None = the task's default", min=0.0),
    "attack_steps": Key(Optional[int], None, "adversarial: PGD steps; None = the task's default", min=1),
    "attack_step": Key(Optional[float], None, "adversarial: PGD step size; None = 2.5 * eps / steps", min=0.0),
    "restarts": Key(int, 1, "adversarial: PGD random restarts (the worst case over them counts)", min=1),
    "random_start": Key(bool, True, "adversarial: PGD starts from a uniform point of the ball"),
    "targeted": Key(bool, False, "adversarial: aim each point at a random other class (else: any wrong class)"),
}

_ACC = dict(goal="maximize", percent=True, splits=("test",))
METRICS = (
    Metric("robust_acc", label="robust accuracy (every test point)", **_ACC),
    Metric("clean_acc", label="clean accuracy (the same points)", **_ACC),
    Metric("success_rate", "minimize", "", "attack success rate (over correctly classified points)",
           percent=True, splits=("test",)),
    Metric("mean_norm", "maximize", "", "mean perturbation norm (successful attacks)", splits=("test",)),
    Metric("loss", "minimize", "nats", "cross-entropy on the adversarial examples", splits=("test",)),
)


def _roots(attack_from: str):
    return [r for r in attack_from.split(os.pathsep) if r]


@functools.lru_cache(maxsize=256)
def victim_folder(attack_run: str, attack_from: str) -> Path:
    """The attacked run's folder (runs.trained_run: finished, readable, weights that load); ConfigError
    naming attack_run when there is none. Which classifier it must be, the check says."""
    return runs.trained_run("attack_run", attack_run, _roots(attack_from), "classifier",
                            lambda folder, cfg: None)


@functools.lru_cache(maxsize=256)
def victim_config(attack_run: str, attack_from: str) -> Dict[str, Any]:
    folder = victim_folder(attack_run, attack_from)
    try:
        return runs.config(folder)
    except runs.RunFolderError as e:
        raise ConfigError(f"attack_run: {e}") from None


def derive(d: Dict[str, Any]) -> Dict[str, Any]:
    """The model is the attacked run's."""
    if not d.get("attack_run"):
        return {}  # the task's baseline; a run without attack_run fails its check
    victim = victim_config(d["attack_run"], d["attack_from"])
    vt = victim.get("task")
    if vt not in TASKS or TASKS[vt]().family != "classification":
        return {}  # no model to take: the check says why
    return {"model": victim.get("model")}


def check(cfg) -> None:
    if cfg.norm == "linf" and cfg.attack_eps is not None and cfg.attack_eps > 1:
        raise ConfigError(f"attack_eps: an l-inf radius in [0, 1] pixel units is at most 1, got {cfg.attack_eps!r}")
    victim = victim_config(cfg.attack_run, cfg.attack_from)
    task = TASKS[cfg.task]()
    vt = victim.get("task")
    if vt not in TASKS:
        raise ConfigError(f"attack_run: the run trained task {vt!r}, unknown here")
    vtask = TASKS[vt]()
    if vtask.family != "classification":
        raise ConfigError(f"attack_run: the run trained {vt!r} ({vtask.family}); only classifiers can be attacked")
    if vtask.data != task.data:
        raise ConfigError(f"attack_run: the run trained on {vtask.data} ({vt}); task {cfg.task!r} attacks "
                          f"{task.data} models (use {vtask.data}_attack)")
    if cfg.model != victim.get("model"):
        raise ConfigError(f"model: the attacked run's model is {victim.get('model')!r}, not {cfg.model!r} "
                          "(leave model unset)")


def prepare(task: Task, cfg, device: torch.device, reg) -> Problem:
    import numpy as np
    import torch
    import torch.nn.functional as F

    from ... import data as D
    from .attacks import ATTACKS, Threat, norms, pick_targets, succeeded

    folder = victim_folder(cfg.attack_run, cfg.attack_from)
    victim = runs.load_weights(folder, map_location=device)
    model = victim.pixel_model().to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)  # gradients wrt the input only
    vcfg = victim.config
    raw = D.load(task.data, cfg.data_root, cfg.download)
    test = D.ResidentBatches(*D.test_split(raw, cfg.test_size), None, None, cfg.eval_batch_size, device, False)
    evals = {"test": test}  # [0, 1] pixels; the attacked run's normalisation is inside the model
    threat = Threat(norm=cfg.norm, eps=cfg.attack_eps, steps=cfg.attack_steps if cfg.attack == "pgd" else 1,
                    step_size=cfg.attack_step, restarts=cfg.restarts if cfg.attack == "pgd" else 1,
                    random_start=cfg.random_start, targeted=cfg.targeted)
    attack = ATTACKS[cfg.attack]
    k = len(raw.classes)
    timing: Dict[str, float] = {}

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def evaluate(m: nn.Module, split: str, autocast) -> Dict[str, float]:
        eval_batches = evals[split]
        gen = torch.Generator().manual_seed(TARGET_SEED)
        n = clean_ok = robust_ok = hits = 0
        norm_sum, loss_sum, attack_s = 0.0, 0.0, 0.0
        for x, y in eval_batches.iterate():
            with torch.no_grad():
                clean_pred = m(x).argmax(1)
            target = pick_targets(y, k, gen) if threat.targeted else None
            sync()
            t0 = time.perf_counter()
            adv = attack(m, x, y, threat, target=target, generator=gen)
            sync()
            attack_s += time.perf_counter() - t0
            with torch.no_grad():
                logits = m(adv)
            ok = clean_pred == y
            hit = succeeded(logits, y, target) & ok
            n += len(y)
            clean_ok += int(ok.sum())
            robust_ok += int((logits.argmax(1) == y).sum())
            hits += int(hit.sum())
            norm_sum += float(norms(adv - x, threat.norm)[hit].sum())
            loss_sum += float(F.cross_entropy(logits.float(), y, reduction="sum"))
        timing.update(seconds=attack_s, images=n)
        return {"robust_acc": robust_ok / n, "clean_acc": clean_ok / n,
                "success_rate": hits / clean_ok if clean_ok else float("nan"),
                "mean_norm": norm_sum / hits if hits else float("nan"), "loss": loss_sum / n}

    def final(m: nn.Module, autocast, out_dir) -> Dict[str, Any]:
        out: Dict[str, Any] = {}
        if timing.get("seconds"):
            steps = threat.steps * threat.restarts if cfg.attack == "pgd" else 1
            out["attack_images_per_s"] = timing["images"] / timing["seconds"]
            out["attack_gradient_steps"] = steps  # upper bound: restarts stop once every point is fooled
        # one test image per class, attacked again the same way (its own seeded draws) for the report
        m.eval()  # the loop puts a model back in training mode after an evaluation
        tx, ty = test.x, test.y
        idx = D.one_per_class(ty.cpu())
        x, y = tx[idx].float().div(255), ty[idx].long()
        gen = torch.Generator().manual_seed(TARGET_SEED)
        target = pick_targets(y, k, gen) if threat.targeted else None
        adv = attack(m, x, y, threat, target=target, generator=gen)
        with torch.no_grad():
            clean, pred = m(x).argmax(1).cpu(), m(adv).argmax(1).cpu()
        to8 = lambda t: (t.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()  # noqa: E731
        path = os.path.join(str(out_dir), EXAMPLES)
        runs.save_npz(path, original=to8(x), adversarial=to8(adv),
                       perturbation=(adv - x).cpu().numpy().astype(np.float32), labels=y.cpu().numpy(),
                       clean_pred=clean.numpy(), adversarial_pred=pred.numpy())
        out["examples"] = EXAMPLES
        return out

    nothing = NoTraining()
    facts = {"attacked_run": victim.run_id, "attacked_task": vcfg.get("task"), "attacked_folder": str(folder),
             # the attacked model's recipe (core keys and its family's): a report tells standard from
             # adversarially trained models by it; model and seed are the attack run's own already
             "evaluated_config": {k: v for k, v in (victim.recipe or cfg.recipe_of(vcfg)).items()
                                  if k not in ("model", "seed")},
             "attack_step_size": threat.alpha, "pixels": "[0, 1]; the attacked run's normalisation is inside the model",
             "classes": list(raw.classes)}
    return Problem(model=model, build=victim.build, train_batches=nothing, splits=tuple(evals), evaluate=evaluate,
                   n_train=0, source=raw.source, in_shape=tuple(raw.test_x.shape[1:]), step=nothing, metrics=METRICS,
                   facts=facts, final=final, uses={"attack_run": victim.run_id})


def _task(dataset: str, label: str, eps: float, steps: int) -> Task:
    return Task(f"{dataset}_attack", f"adversarial attack on a {label} classifier", FAMILY, prepare, METRICS,
                headline="robust_acc", model_family="classification", data=dataset, check=check, derive=derive,
                trains=False, evaluates="classification", run_keys=("attack_run", "attack_from"), defaults={"attack_eps": eps, "attack_steps": steps, "epochs": 0, "optimizer": "sgd",
                                        "lr": 0.01, "batch_size": 128, "eval_batch_size": 500})


@TASKS.register
def fashion_mnist_attack() -> Task:
    """Attack a Fashion-MNIST classifier run (l-inf PGD, eps 0.1, 40 steps); headline robust accuracy."""
    return _task("fashion_mnist", "Fashion-MNIST", 0.1, 40)


@TASKS.register
def mnist_attack() -> Task:
    """Attack an MNIST classifier run (l-inf PGD, eps 0.3, 40 steps: Madry's MNIST challenge); headline robust accuracy."""
    return _task("mnist", "MNIST", 0.3, 40)


@TASKS.register
def cifar10_attack() -> Task:
    """Attack a CIFAR-10 classifier run (l-inf PGD, eps 8/255, 10 steps); headline robust accuracy."""
    return _task("cifar10", "CIFAR-10", 8 / 255, 10)


@MEDIA.register(name=FAMILY)
def media(run_dir, summary) -> List[Media]:
    """One attacked test image per class: clean and adversarial, with the model's prediction on
    each, and the perturbation scaled to be seen."""
    ex = arrays(run_dir, summary, EXAMPLES)
    if ex is None or not {"original", "adversarial", "labels", "clean_pred", "adversarial_pred"} <= set(ex):
        return []
    rows = []
    for i, (x, a, y, c, p) in enumerate(zip(ex["original"], ex["adversarial"], ex["labels"], ex["clean_pred"],
                                            ex["adversarial_pred"])):
        d = ex["perturbation"][i] if "perturbation" in ex else (a.astype(float) - x.astype(float)) / 255
        peak = float(np.abs(d).max()) or 1.0
        rows.append((int(y), Image(hwc(x)), int(c), Image(hwc(a)), int(p), bool(p != y),
                     Image(hwc(0.5 + 0.5 * d / peak), f"perturbation, scaled; max |delta| {peak:.3g}")))
    return [Media("adversarial_examples", Table(
        ("label", "clean", "clean prediction", "adversarial", "adversarial prediction", "fooled", "perturbation"),
        tuple(rows)))]
