"""What W&B holds beyond numbers (issue 26, parts 2 and 3): a training run's model.pt as a model
artifact with its recipe, an evaluation's use of it (lineage), and each family's pictures and tables.

Read back with W&B's own protobuf records (dl2bench.wandb_log.read_run) from real offline runs.
wandb cannot use an artifact offline ("Cannot use artifact when in offline mode"), so an offline
evaluation records the artifact it loads in its config and `python -m dl2bench.wandb_lineage`
declares it after a sync; that last step needs the W&B server, which cannot run here: the one test
of it replaces the server (wandb.Api) with a stand-in and checks what would be asked of it."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from dl2bench import media as M
from dl2bench import wandb_lineage as L
from dl2bench import wandb_log as W
from dl2bench import wandb_view as V
from helpers import wandb_record
from dl2bench.config import RunConfig
from dl2bench.train import run

COMMON = {"wandb": "offline", "progress": "none", "threads": 1, "val_size": 100, "eval_batch_size": 256}



def _media(rec, name):
    """The W&B values logged under media/<name>, in order, each with the row's epoch (W&B's records
    hold a logged object as nested keys: media/<name>/_type, .../nrows, ...)."""
    head = M.PREFIX + name + "/"
    out = []
    for r in rec["history"]:
        value = {k[len(head):]: v for k, v in r.items() if k.startswith(head)}
        if value:
            out.append({**value, "epoch": r.get("epoch")})
    return out


@pytest.fixture(scope="module")
def victim_and_attack(tmp_path_factory, data_root):
    import os

    os.environ["DL2BENCH_DATA"] = str(data_root)
    root = tmp_path_factory.mktemp("runs")
    c = RunConfig.from_dict({**COMMON, "task": "fashion_mnist", "model": "mlp", "epochs": 2, "lr": 0.05,
                             "data_root": str(data_root)}).resolve()
    victim = run(c, root / c.run_id())
    a = RunConfig.from_dict({**COMMON, "task": "fashion_mnist_attack", "attack_run": victim["run_id"][:8],
                             "attack_from": str(root), "data_root": str(data_root), "attack": "fgsm"}).resolve()
    attack = run(a, root / a.run_id())
    assert victim["status"] == attack["status"] == "finished", (victim, attack)
    return root, victim, attack


def test_a_trained_model_is_an_artifact_and_an_attack_records_its_use(victim_and_attack):
    root, victim, attack = victim_and_attack
    vid, aid = victim["run_id"], attack["run_id"]
    rec = wandb_record(root / vid, vid)
    arts = [a for a in rec["artifacts"] if a["type"] == "model"]
    assert [a["name"] for a in arts] == [V.model_artifact(vid)]
    meta = arts[0]["metadata"]
    assert meta["run_id"] == vid and meta["recipe"] == json.loads(json.dumps(RunConfig.recipe_of(
        json.loads((root / vid / "config.json").read_text()))))
    assert meta["test/acc"] == pytest.approx(victim["test_acc"])
    assert arts[0]["files"] == ["model.pt"]
    # no copy in wandb's staging folder in $HOME (a cluster's runs would fill a quota): a hard link
    # in the run's own folder, which a --force rerun's new model.pt (written by a rename) leaves alone
    snap = root / vid / "wandb" / f"model-{vid}.pt"
    assert snap.stat().st_ino == (root / vid / "model.pt").stat().st_ino
    # the attack: an evaluation, no model of its own; the victim's model artifact, by name, as its use
    arec = wandb_record(root / aid, aid)
    assert arec["job_type"] == "evaluate" and not [a for a in arec["artifacts"] if a["type"] == "model"]
    assert arec["config"][V.USES] == {"attack_run": V.model_artifact(vid)}
    assert arec["used"] == []  # offline: wandb cannot use an artifact (see wandb_lineage)
    # and its pictures: one attacked image per class, predictions beside them, as a W&B table
    (table,) = _media(arec, "adversarial_examples")
    with np.load(root / aid / "examples.npz") as ex:
        shown = len(ex["labels"])
    assert table["_type"] == "table-file" and table["ncols"] == 7 and table["nrows"] == shown > 1
    # the table's files wait for the sync in the run's own folder, not in wandb's staging in $HOME
    assert list((root / aid / "wandb" / "data" / "artifacts" / "staging").iterdir())
    import os

    assert "WANDB_DATA_DIR" not in os.environ  # put back after the run: the next one stages in its own


def test_lineage_is_declared_after_a_sync_through_wandbs_public_api(victim_and_attack):
    """The W&B server is replaced by a stand-in that records the calls (the one thing here that
    cannot run locally); the uses come from the real offline records."""
    root, victim, attack = victim_and_attack
    found = list(L.recorded_uses(root))
    assert found == [("dl2bench", attack["run_id"], "attack_run", V.model_artifact(victim["run_id"]))]

    calls = []

    class Run:
        def __init__(self, path):
            self.path = path

        def use_artifact(self, artifact):
            calls.append((self.path, artifact))

    class Api:
        def run(self, path):
            return Run(path)

        def artifact(self, name, type=None):
            if "missing" in name:
                raise ValueError(f"artifact {name} not found")  # as the server says of an unsynced run
            return f"<{type} {name}>"

    assert L.declare(Api(), found, "me", None) == []
    assert calls == [(f"me/dl2bench/{attack['run_id']}", f"<model me/dl2bench/model-{victim['run_id']}:latest>")]
    problems = L.declare(Api(), [("p", "abc", "attack_run", "model-missing")], "me", "q")
    assert len(problems) == 1 and "me/q/abc (attack_run) -> model-missing" in problems[0]
    dry = subprocess.run([sys.executable, "-m", "dl2bench.wandb_lineage", str(root), "--dry-run"],
                         capture_output=True, text=True, timeout=120)
    assert dry.returncode == 0 and f"{attack['run_id']} (attack_run) uses model-{victim['run_id']}" in dry.stdout


def test_tiles_heatmaps_and_scatters_keep_what_they_draw():
    a = np.zeros((3, 1, 4, 5), np.uint8)
    a[1] = 255
    g = M.tile(a, cols=2, gap=1)
    assert g.shape == (9, 11) and g[0, 6] == 255 and g[0, 0] == 0 and g[0, 5] == 255  # gap white
    assert M.hwc(np.full((3, 2, 2), 0.5)).shape == (2, 2, 3) and M.hwc(np.full((3, 2, 2), 0.5))[0, 0, 0] == 128
    h = M.heatmap(np.array([[0.0, np.nan], [1.0, 2.0]]))
    assert h.tolist() == [[0, 0], [128, 255]]
    s = M.scatter([np.array([[0.0, 0.0]]), np.array([[1.0, 1.0], [5.0, 5.0]])], np.zeros(2), np.ones(2), size=10)
    assert tuple(s[9, 0]) == (31, 119, 180) and tuple(s[0, 9]) == (255, 127, 14)
    assert (s != 255).any(-1).sum() == 2  # the point outside the square is left out


def _family_run(name, tmp_path, data_root, victim_dir):
    """A run of a few seconds per family, W&B offline, on generated data."""
    import gzip

    base = {**COMMON, "data_root": str(data_root), "save_weights": False}
    if name == "gan":
        return {**base, "task": "fashion_mnist_gan", "model": "gan_mlp", "epochs": 2, "batch_size": 32,
                "pr_samples": 100, "feature_run": str(victim_dir)}
    if name == "segmentation":
        return {**base, "task": "shapes", "image_size": 32, "width": 8, "depth": 2, "train_size": 128, "val_size": 32,
                "test_size": 32, "batch_size": 32, "epochs": 1}
    if name == "autoencoder":
        return {**base, "task": "fashion_mnist_ae", "model": "dense_ae", "code_size": 16, "batch_size": 32, "epochs": 1}
    if name == "flow":
        return {**base, "task": "two_moons", "epochs": 1, "train_size": 400, "val_size": 100, "test_size": 400}
    if name == "rl":
        base.pop("val_size")  # a DQN evaluates on episodes
        return {**base, "task": "mouse_grid", "epochs": 1, "epoch_steps": 300, "learning_starts": 100,
                "eval_episodes": 2, "test_episodes": 4}
    corpus = tmp_path / "corpus.txt.gz"
    corpus.write_bytes(gzip.compress(("the king and the queen où naïve\n" * 300).encode()))
    return {**base, "task": "char_lm", "corpus": str(corpus), "model": "gru", "hidden_size": 16, "context": 16,
            "batch_size": 16, "lm_steps": 10, "epochs": 1, "sample_len": 40, "lm_eval_chars": 0}


# family -> (what media/<name> holds: _type, how many logged)
SHOWN = {"gan": {"samples_by_epoch": ("image-file", 2), "samples": ("image-file", 1), "real": ("image-file", 1),
                 "truncation_hard": ("table-file", 1), "truncation_soft": ("table-file", 1)},
         "segmentation": {"predictions": ("image-file", 8)},
         "autoencoder": {"reconstructions": ("table-file", 1)},
         "flow": {"samples": ("image-file", 1), "log_density": ("image-file", 1)},
         "rl": {"episodes": ("table-file", 1)},
         "sequence": {"generated_text": ("table-file", 1)}}


@pytest.mark.parametrize("family", sorted(SHOWN))
def test_each_family_shows_its_report_pictures_in_wandb(family, victim_and_attack, data_root, tmp_path):
    root, victim, _ = victim_and_attack
    s = run(_family_run(family, tmp_path, data_root, root / victim["run_id"]), tmp_path / "run")
    assert s["status"] == "finished", s.get("error")
    rec = wandb_record(tmp_path / "run", s["run_id"])
    logged = {k.split("/")[1] for row in rec["history"] for k in row if k.startswith(M.PREFIX)}
    assert logged == set(SHOWN[family])
    for name, (kind, n) in SHOWN[family].items():
        values = _media(rec, name)
        assert [v["_type"] for v in values] == [kind] * n, (name, values)
    if family == "gan":  # a grid per epoch, at its epoch; the classifier it is scored with, as lineage
        assert [v["epoch"] for v in _media(rec, "samples_by_epoch")] == [1, 2]
        assert W.logged_epochs(tmp_path / "run", s["run_id"]) == [1, 2]  # pictures are no epochs' metrics
        assert rec["config"][V.USES] == {"feature_run": V.model_artifact(victim["run_id"])}
    if family == "segmentation":  # truth and prediction as masks W&B can switch on and off
        first = _media(rec, "predictions")[0]
        assert {"masks/truth/_type", "masks/prediction/_type"} <= set(first), sorted(first)
    if family == "sequence":
        assert rec["summary"].get("sample") == s["sample"]
