"""The task-family interface: run ids that survive new keys, a task that owns its step and state
(two networks, two optimizers, its own epoch length) and resumes bit-identically, trained weights
loaded back by run id (weights_only), the summary schema, sweeps that follow the task's headline,
and an import graph without circles."""
from __future__ import annotations

import ast
import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from dl2bench import runs
from dl2bench import record as R
from dl2bench import sweep as S
from dl2bench.config import V1_KEYS, ConfigError, RunConfig
from dl2bench.families import MODELS, TASKS, Metric, Problem, Step, Task
from dl2bench.train import run

ROOT = Path(__file__).resolve().parents[1]


def metrics(out: Path) -> pd.DataFrame:
    return pd.read_json(out / "metrics.jsonl", lines=True)


# ---------------------------------------------------------------------------------------------
# old results stay valid

@pytest.mark.parametrize("pins", ["run_ids_v1.json", "run_ids_v2.json"])
def test_shipped_sweeps_keep_their_run_ids(pins):
    """run_ids_v1.json was written from the code before task families existed, run_ids_v2.json
    when the families' sweeps were added; a resubmit after an upgrade must find every one of those
    runs done. (Attack sweeps are pinned through the runs they attack: tests/families/test_adversarial.py.)"""
    pinned = json.loads((ROOT / "tests/data" / pins).read_text())
    for key, ids in pinned.items():
        name, _, smoke = key.partition(" ")
        sw = S.load(ROOT / "sweeps" / f"{name}.yaml", smoke=bool(smoke))
        assert [c.run_id() for c in sw.runs] == ids, key


def test_new_keys_hash_only_when_they_differ_from_the_task_default():
    base = RunConfig(task="fashion_mnist_ae").resolve()
    explicit = RunConfig(task="fashion_mnist_ae", code_size=32, loss="mse", noise="gaussian", noise_level=0.0).resolve()
    assert "code_size" not in V1_KEYS and base.run_id() == explicit.run_id()
    assert RunConfig(task="fashion_mnist_ae", code_size=8).run_id() != base.run_id()
    assert RunConfig(task="fashion_mnist_ae", loss="bce").run_id() != base.run_id()
    # bookkeeping never changes an id
    assert RunConfig(task="fashion_mnist_ae", save_weights=False).run_id() == base.run_id()


# ---------------------------------------------------------------------------------------------
# a task that owns its step and state: a two-network, two-optimizer toy (a GAN's shape)

class PairStep(Step):
    """Discriminator update, then generator update (non-saturating), each with its own Adam."""

    def __init__(self, g, d, lr):
        self.g, self.d = g, d
        self.opt_g = torch.optim.Adam(g.parameters(), lr=lr, betas=(0.5, 0.999))
        self.opt_d = torch.optim.Adam(d.parameters(), lr=lr, betas=(0.5, 0.999))
        self.lr = lr

    def __call__(self, batch, detail):
        bce = torch.nn.functional.binary_cross_entropy_with_logits
        x = batch[0].flatten(1)
        z = torch.randn(len(x), 8)  # the global RNG: checkpointed and restored by the loop
        fake = self.g(z)
        d_loss = bce(self.d(x), torch.ones(len(x), 1)) + bce(self.d(fake.detach()), torch.zeros(len(x), 1))
        self.opt_d.zero_grad()
        d_loss.backward()
        self.opt_d.step()
        g_loss = bce(self.d(fake), torch.ones(len(x), 1))
        self.opt_g.zero_grad()
        g_loss.backward()
        self.opt_g.step()
        return d_loss.detach(), len(x), ({"g_loss": g_loss.detach() * len(x)} if detail else {})

    def state_dict(self):
        return {"g": self.opt_g.state_dict(), "d": self.opt_d.state_dict()}

    def load_state_dict(self, s):
        self.opt_g.load_state_dict(s["g"])
        self.opt_d.load_state_dict(s["d"])


class StepsEpoch:
    """An epoch of exactly `steps` batches drawn with replacement (as an RL task's N env steps)."""

    def __init__(self, x, steps, batch):
        self.x, self.steps, self.batch = x, steps, batch

    def __len__(self):
        return self.steps

    def iterate(self, generator=None):
        for _ in range(self.steps):
            yield (self.x[torch.randint(0, len(self.x), (self.batch,), generator=generator)],)


def pair_model(in_dim: int):
    """A generator 8 -> in_dim and a discriminator in_dim -> 1, as one ModuleDict."""
    from torch import nn

    return nn.ModuleDict({"g": nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, in_dim), nn.Sigmoid()),
                          "d": nn.Sequential(nn.Linear(in_dim, 32), nn.LeakyReLU(0.2), nn.Linear(32, 1))})


def prepare_pair(task, cfg, device, reg):
    from dl2bench import data as D

    splits = D.make_splits(D.load("fashion_mnist", cfg.data_root), cfg.val_size, cfg.train_size)
    x = splits.train[0].float().div(255)
    model = pair_model(x[0].numel())
    step = PairStep(model["g"], model["d"], cfg.lr)
    val = splits.val[0].float().div(255)

    def evaluate(m, split, autocast):
        with torch.no_grad():
            xv = val
            real = torch.sigmoid(m["d"](xv.flatten(1))).mean().item()
            fake = torch.sigmoid(m["d"](m["g"](torch.randn(len(xv), 8, generator=torch.Generator().manual_seed(0))))).mean().item()
        return {"loss": -real, "d_gap": real - fake}

    return Problem(model=model, build={"model": "toy_pair", "args": [x[0].numel()]}, train_batches=StepsEpoch(x, 7, 16),
                   splits=("val", "test"), evaluate=evaluate, n_train=len(x),
                   source=splits.source, example_input=lambda dev: torch.zeros(1, 8), step=step)


@pytest.fixture
def pair_task(monkeypatch):
    """Registered for this test only (the registries are module state other tests enumerate)."""
    metrics_ = (Metric("loss", "minimize", "", "minus D(real)"), Metric("d_gap", "maximize", "", "D(real) - D(fake)"))
    task = Task("toy_pair", "two networks, two optimizers", "classification", prepare_pair, metrics_,
                headline="d_gap", defaults={"model": "mlp", "optimizer": "adam", "lr": 2e-3, "batch_size": 16,
                                            "epochs": 4, "val_size": 100})
    monkeypatch.setitem(TASKS._entries, "toy_pair", lambda: task)
    monkeypatch.setitem(TASKS._meta, "toy_pair", {})

    monkeypatch.setitem(MODELS._entries, "toy_pair", pair_model)
    monkeypatch.setitem(MODELS._meta, "toy_pair", {"family": "classification"})
    return task


def test_task_owning_its_step_resumes_bit_identically(tiny, tmp_path, monkeypatch, pair_task, killed_then_resumed):
    import dl2bench.train.prepare as P

    cfg = {**tiny, "task": "toy_pair", "model": "mlp", "epochs": 4, "deterministic": True}
    # the ModuleDict has no forward: FLOPs are counted on the generator's example input
    monkeypatch.setattr(P, "flops_per_sample", lambda model, shape, dev, example=None: 0)
    full = run(cfg, tmp_path / "full")
    assert full["status"] == "finished", full.get("error")
    assert full["steps_per_epoch"] == 7 and full["headline"] == "d_gap"

    resumed = killed_then_resumed(cfg, tmp_path / "cut", at=3)
    cols = ["train_loss", "train_g_loss", "val_loss", "val_d_gap"]
    a, b = metrics(tmp_path / "full"), metrics(tmp_path / "cut")
    assert list(b["epoch"]) == [1, 2, 3, 4]
    assert a[cols].equals(b[cols])
    assert resumed["test_d_gap"] == full["test_d_gap"] and resumed["resumes"] == 1
    # both networks' weights are left behind and rebuild through the registry
    back = runs.load_weights(tmp_path / "cut")
    assert set(back.model) == {"g", "d"}


# ---------------------------------------------------------------------------------------------
# trained weights, by run id

def test_weights_rebuild_the_trained_model_by_run_id(tiny, tmp_path):
    root = tmp_path / "runs" / "sweepA"
    cfg = RunConfig.from_dict({**tiny, "task": "cifar10", "model": "lenet", "regularizer": "batchnorm"}).resolve()
    s = run(cfg, root / cfg.run_id())
    back = runs.load_weights(s["run_id"][:8], roots=[tmp_path / "runs"])
    assert back.run_id == s["run_id"] and back.config["model"] == "lenet"
    # the recipe: how the model was trained (core and classification keys), no bookkeeping, no other family's
    assert back.recipe["regularizer"] == "batchnorm" and back.recipe["lr"] == cfg.lr
    assert "data_root" not in back.recipe and "wandb" not in back.recipe and "attack_eps" not in back.recipe
    assert back.recipe == cfg.recipe_of(back.config)
    # the rebuilt model gives the summary's test accuracy on the same test batches
    from dl2bench import data as D

    splits = D.make_splits(D.load("cifar10"), cfg.val_size, cfg.train_size, cfg.test_size)
    _, evals = D.split_batches(splits, cfg, torch.device("cpu"), None)
    correct = n = 0
    with torch.no_grad():
        for x, y in evals["test"].iterate():
            correct += (back.model(x).argmax(1) == y).sum().item()
            n += len(y)
    assert correct / n == s["test_acc"]


def test_weights_files_are_loaded_without_unpickling_code(tmp_path):
    """A model.pt holding a pickled object is refused (weights_only=True), not executed."""
    (tmp_path / "config.json").write_text("{}")
    torch.save({"format": runs.WEIGHTS_FORMAT, "version": 1, "build": {"model": "mlp"}, "trap": Path("x")},
               tmp_path / runs.WEIGHTS)
    with pytest.raises(runs.WeightsError, match="not a readable dl2bench weights file") as e:
        runs.load_weights(tmp_path)
    assert "weights_only" not in str(e.value)  # PyTorch's advice to turn the guard off would run the payload
    with pytest.raises(runs.RunNotFound, match="not found"):
        runs.load_weights("abcdef123456", roots=[tmp_path])


# ---------------------------------------------------------------------------------------------
# the summary and the sweep follow what the task declares

def test_summary_declares_its_metrics(tiny, tmp_path):
    s = run({**tiny, "task": "fashion_mnist_ae", "model": "dense_ae", "code_size": 4}, tmp_path)
    assert s["schema"] == R.SCHEMA_VERSION and s["family"] == "autoencoder"
    assert s["metric"] == "test_mse" and s["goal"] == "minimize" and s["headline"] == "mse"
    assert s["metrics"]["loss"]["unit"] == "MSE" and s["metrics"]["mse"]["goal"] == "minimize"
    assert {"test_mse", "test_bce", "best_val_mse", "final_val_bce"} <= set(s)
    assert "test_acc" not in s and "best_val_acc" not in s
    time_key, _ = R.target_keys("mse", 0.03)
    assert time_key == "time_to_val_mse_0.03" and time_key in s


def test_early_stopping_follows_a_minimised_metric(tiny, tmp_path, monkeypatch):
    """The best epoch is the lowest validation MSE, and the test uses that epoch's weights."""
    s = run({**tiny, "task": "fashion_mnist_ae", "model": "dense_ae", "epochs": 12, "lr": 3e-3,
             "regularizer": "early_stopping", "reg_strength": 1}, tmp_path)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    best = min(rows, key=lambda r: r["val_mse"])
    assert s["status"] == "early_stopped" and s["best_epoch"] == best["epoch"] < rows[-1]["epoch"]
    assert s["best_val_mse"] == best["val_mse"]


def test_sweep_metric_defaults_to_the_tasks_headline(tmp_path):
    text = (ROOT / "sweeps" / "smoke.yaml").read_text().replace("metric: {name: test_acc, goal: maximize}\n", "")
    text = text.replace("task: {value: fashion_mnist}", "task: {value: fashion_mnist_ae}").replace(
        "model: {value: mlp}", "model: {value: dense_ae}")
    p = tmp_path / "ae.yaml"
    p.write_text(text)
    assert S.load(p).metric == {"name": "test_mse", "goal": "minimize"}


def test_every_model_has_a_task_and_every_task_a_fitting_default():
    families = {TASKS[t]().model_family for t in TASKS.names()}
    for name in MODELS.names():
        assert MODELS.meta(name).get("family") in families, f"model {name!r} fits no task"
    for t in TASKS.names():
        if not TASKS[t]().trains:  # an evaluation of another run's weights: it must be told which
            with pytest.raises(ConfigError, match=f"^{TASKS[t]().run_keys[0]}: expected the run id"):
                RunConfig(task=t).resolve()
            continue
        if TASKS[t]().family == "gan":  # measured in a classifier run's features: it must be told which
            with pytest.raises(ConfigError, match="^feature_run: expected the run id"):
                RunConfig(task=t).resolve()
            continue
        if t == "gym":  # any Gymnasium id: it must be told which
            with pytest.raises(ConfigError, match="^env_id: task 'gym' needs a Gymnasium environment id"):
                RunConfig(task=t).resolve()
            continue
        cfg = RunConfig(task=t).resolve()  # raises if the default model or loss does not fit
        assert cfg.loss == TASKS[t]().losses[0]


def test_family_keys_belong_to_their_family():
    with pytest.raises(ConfigError, match="code_size: a setting of the autoencoder family"):
        RunConfig(task="fashion_mnist", code_size=8).resolve()
    with pytest.raises(ConfigError, match="model: 'dense_ae' belongs to the autoencoder family"):
        RunConfig(task="fashion_mnist", model="dense_ae").resolve()
    with pytest.raises(ConfigError, match="loss: 'bce' is not a loss of task 'fashion_mnist'"):
        RunConfig(task="fashion_mnist", loss="bce").resolve()


# ---------------------------------------------------------------------------------------------
# layout

def _imports(path: Path, package: str):
    """dl2bench modules a file imports (function-level imports included, TYPE_CHECKING ones not)."""
    tree = ast.parse(path.read_text())
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(n) for b in node.body for n in ast.walk(b)}
    mod_parts = package.split(".")
    for node in ast.walk(tree):
        if id(node) in skip or not isinstance(node, ast.ImportFrom):
            continue
        if node.level:
            base = mod_parts[: len(mod_parts) - node.level + 1]
            target = ".".join(base + ([node.module] if node.module else []))
        else:
            target = node.module or ""
        if not target.startswith("dl2bench"):
            continue
        for alias in node.names:
            sub = f"{target}.{alias.name}"
            yield sub if _module_file(sub) else target


def _module_file(name: str):
    p = ROOT / Path(*name.split("."))
    return p.with_suffix(".py") if p.with_suffix(".py").is_file() else (p / "__init__.py" if (p / "__init__.py").is_file() else None)


def _family_names():
    return sorted(p.name for p in (ROOT / "dl2bench" / "families").iterdir()
                  if (p / "__init__.py").is_file())


def _module_of(f: Path):
    rel = f.relative_to(ROOT).with_suffix("")
    name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
    return name, (name if rel.name == "__init__" else ".".join(rel.parts[:-1])) + ".x"


def test_core_code_imports_no_family_by_name():
    """Only a family's own wing (and its report module) names it: the core finds families by
    discovery, so a new family touches nothing outside dl2bench/families/<family>/."""
    fams = _family_names()
    assert {"classification", "gan", "rl", "sequence"} <= set(fams)
    offenders = []
    for top in ("dl2bench", "reports", "jobs"):
        for f in (ROOT / top).rglob("*.py"):
            name, package = _module_of(f)
            own = name.split(".")[2] if name.startswith("dl2bench.families.") else None
            if own == "base":
                own = None
            report_of = f.stem if f.parent == ROOT / "reports" / "families" else None
            for target in _imports(f, package):
                parts = target.split(".")
                if len(parts) > 2 and parts[:2] == ["dl2bench", "families"] and parts[2] in fams:
                    if own is not None or parts[2] == report_of:
                        continue  # a family may use another's public pieces (sequence rows reuse classification)
                    offenders.append(f"{f.relative_to(ROOT)} imports {target}")
    assert not offenders, offenders


def test_one_name_per_family_across_code_reports_and_tests():
    fams = set(_family_names())
    reports = {p.stem for p in (ROOT / "reports" / "families").glob("*.py") if not p.stem.startswith("_")}
    assert reports <= fams, reports - fams
    for wing in fams:
        assert (ROOT / "dl2bench" / "families" / wing / "task.py").is_file(), wing


def test_no_private_name_is_imported_across_modules():
    found = []
    for top in ("dl2bench", "reports", "jobs"):
        for f in (ROOT / top).rglob("*.py"):
            for node in ast.walk(ast.parse(f.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module != "__future__":
                    found += [f"{f.relative_to(ROOT)}: {a.name}" for a in node.names
                              if a.name.startswith("_") and not a.name.startswith("__")]
    assert not found, found


# ---------------------------------------------------------------------------------------------
# settings a task refuses are data on the Task

def test_every_refused_setting_is_a_real_choice_and_is_refused_with_its_reason():
    from dl2bench.config import ConfigError
    from dl2bench.families import TASKS
    from dl2bench.registries import ALL
    from dl2bench.schema import CHOICES, KEY_SPECS

    def choices_of(key):
        registry = {"model": "models", "optimizer": "optimizers", "schedule": "schedules", "init": "inits",
                    "regularizer": "regularizers"}.get(key)
        return ALL[registry].names() if registry else CHOICES.get(key) or KEY_SPECS[key].choices

    seen = 0
    for name in TASKS:
        task = TASKS[name]()
        for key, values in task.refuses.items():
            assert key in RunConfig.keys(), (name, key)
            for value, why in values.items():
                assert value in choices_of(key), f"{name}: refuses {key}={value!r}, which is no choice of {key}"
                if not task.trains:
                    continue  # an evaluation needs a trained run to validate against
                with pytest.raises(ConfigError) as e:
                    RunConfig.from_dict({"task": name, key: value}).resolve()
                assert str(e.value) == f"{key}: {value!r} {why}", name
                seen += 1
    assert seen > 20  # rl, gan, flows, sequence and segmentation declare theirs
