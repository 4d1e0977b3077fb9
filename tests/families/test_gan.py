"""GANs: precision/recall against prdc and FID against the sqrtm formula on the same features, the
truncated latents, the two-network step (each update moves only its own network), training and
resuming on generated and on real Fashion-MNIST, sampling at truncations (recall falls as psi
shrinks), the sweeps that chain classifier -> GANs -> truncations, and bad input refused."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from dl2bench import sweep as S
from dl2bench.config import ConfigError, RunConfig
from dl2bench.families import MODELS
from dl2bench.families.gan import metrics as M
from dl2bench.families.gan.latent import sample_latent
from dl2bench.nets import count_parameters
from dl2bench.train import run
from helpers import FASHION, assert_cli_refuses, need

ROOT = Path(__file__).resolve().parents[2]
FAST = {"wandb": "disabled", "progress": "none", "threads": 1}


# ---------------------------------------------------------------------------------------------
# the measures

@pytest.mark.parametrize("k", [1, 3, 5])
def test_precision_recall_match_prdc(k):
    import prdc  # a dev dependency: the cross-check must run, not skip
    g = torch.Generator().manual_seed(k)
    real = torch.randn(700, 12, generator=g)
    fake = torch.randn(600, 12, generator=g) * 0.6 + 0.4  # narrower and shifted: P high, R low
    ours = M.precision_recall(real, fake, k)
    theirs = prdc.compute_prdc(real.numpy(), fake.numpy(), k)
    assert ours["precision"] == pytest.approx(theirs["precision"], abs=1e-9)
    assert ours["recall"] == pytest.approx(theirs["recall"], abs=1e-9)
    assert ours["precision"] > 0.8 and ours["recall"] < 0.5


def test_knn_radii_chunking_and_bad_k():
    x = torch.randn(2500, 3, generator=torch.Generator().manual_seed(0)).double()
    d = torch.cdist(x, x)
    expect = d.sort(dim=1).values[:, 3]
    assert torch.allclose(M.knn_radii(x, 3), expect)  # 2,500 rows: three chunks of the distance matrix
    with pytest.raises(ValueError, match="k: expected 1 <= k < N"):
        M.knn_radii(x[:3], 3)


def test_fid_matches_the_sqrtm_formula_and_the_gaussian_closed_form():
    from scipy import linalg
    g = torch.Generator().manual_seed(0)
    a = torch.randn(3000, 8, generator=g) @ torch.randn(8, 8, generator=g)
    b = torch.randn(3000, 8, generator=g) * 1.5 + 0.7
    mu1, s1 = M.moments(a)
    mu2, s2 = M.moments(b)
    covmean = linalg.sqrtm(s1 @ s2).real  # torch-fidelity's and pytorch-fid's formula
    ref = ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean)
    assert M.fid(a, b) == pytest.approx(ref, rel=1e-6)
    assert M.fid(a, a) == pytest.approx(0, abs=1e-6)
    # N(0, I) vs N(m, I): ||m||^2 exactly, in the population; 8 x 0.7^2 = 3.92
    c = torch.randn(200000, 8, generator=g)
    d = torch.randn(200000, 8, generator=g) + 0.7
    assert M.fid(c, d) == pytest.approx(8 * 0.49, abs=0.02)


def test_features_are_the_classifiers_penultimate_layer():
    m = MODELS["lenet"]((1, 28, 28), 10).eval()
    x = torch.rand(5, 1, 28, 28)
    f = M.feature_extractor(m)(x)
    last = [mod for mod in m.modules() if isinstance(mod, torch.nn.Linear)][-1]
    assert f.shape == (5, last.in_features)
    assert torch.allclose(last(f), m(x), atol=1e-6)  # the last layer applied to them gives the logits


@pytest.mark.slow  # a VGG-16 forward pass
def test_vgg16_features_are_fc2_of_the_resized_rgb_image():
    """The wrapper around torchvision's VGG-16 (random weights here: ImageNet's cannot be downloaded on
    these machines): grey replicated to RGB, 224 x 224, ImageNet-normalised, fc2 before its ReLU."""
    from torchvision.models import vgg16

    torch.manual_seed(0)
    vgg = vgg16(weights=None).eval()
    grey = torch.rand(2, 1, 28, 28)
    f = M.vgg16_extractor(vgg)(grey)
    assert f.shape == (2, 4096) and (f < 0).any()  # before the ReLU
    rgb = torch.nn.functional.interpolate(grey.expand(-1, 3, -1, -1), size=(224, 224), mode="bilinear")
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        h = torch.flatten(vgg.avgpool(vgg.features((rgb - mean) / std)), 1)
        expect = vgg.classifier[3](torch.relu(vgg.classifier[0](h)))
    assert torch.allclose(f, expect, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# latents

def test_truncated_latents():
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    plain = sample_latent(50000, 4, generator=g())
    assert abs(plain.std().item() - 1) < 0.01
    soft = sample_latent(50000, 4, "soft", 0.5, g())
    assert torch.allclose(soft, plain * 0.5)
    for psi in (0.04, 0.5, 2.0):
        hard = sample_latent(50000, 4, "hard", psi, g())
        assert hard.abs().max() <= psi
        # the variance of N(0, 1) truncated to [-psi, psi]: 1 - 2 psi phi(psi) / (2 Phi(psi) - 1)
        phi = math.exp(-psi * psi / 2) / math.sqrt(2 * math.pi)
        var = 1 - 2 * psi * phi / math.erf(psi / math.sqrt(2))
        assert hard.var().item() == pytest.approx(var, rel=0.03)
    with pytest.raises(ValueError, match="psi: expected > 0"):
        sample_latent(3, 4, "hard", 0.0)


# ---------------------------------------------------------------------------------------------
# models and the step

@pytest.mark.parametrize("name,g_params,d_params", [("gan_mlp", 550416, 533505), ("dcgan", 552513, 138817)])
def test_gan_models(name, g_params, d_params):
    gan = MODELS[name]((1, 28, 28), 64)
    assert count_parameters(gan.g) == g_params and count_parameters(gan.d) == d_params
    assert f"{g_params + d_params:,}" in MODELS.doc(name) or f"{g_params + d_params:,}" in MODELS[name].__doc__
    x = gan(torch.randn(7, 64))
    assert x.shape == (7, 1, 28, 28) and x.min() >= -1 and x.max() <= 1
    assert gan.d(x).shape == (7, 1)


@pytest.mark.parametrize("loss", ["non_saturating", "minimax"])
def test_each_update_moves_only_its_own_network(loss):
    from dl2bench.families.gan.step import GANStep
    from dl2bench.optim import LRController

    torch.manual_seed(0)
    gan = MODELS["gan_mlp"]((1, 28, 28), 16)
    cfg = RunConfig(task="fashion_mnist_gan", epochs=1, schedule="constant")
    opt_g = torch.optim.Adam(gan.g.parameters(), 1e-3)
    opt_d = torch.optim.Adam(gan.d.parameters(), 1e-3)
    step = GANStep(gan, opt_g, opt_d, LRController(opt_g, cfg, 10), LRController(opt_d, cfg, 10), 1, None,
                   torch.device("cpu"), loss)
    before = {k: v.clone() for k, v in gan.state_dict().items()}
    d_step = opt_d.step
    seen = {}

    def watch(name, fn, other):
        def wrapped(*a, **kw):
            seen[name] = [torch.equal(gan.state_dict()[k], before[k]) for k in before if k.startswith(other)]
            return fn(*a, **kw)
        return wrapped

    opt_d.step = watch("d", d_step, "g.")  # when D steps, G is still untouched
    x = torch.rand(32, 1, 28, 28)
    d_loss, n, stats = step((x, None), True)
    assert n == 32 and all(seen["d"])
    after = gan.state_dict()
    assert all(not torch.equal(after[k], before[k]) for k in before if k.startswith("d.") and k.endswith("weight"))
    assert all(not torch.equal(after[k], before[k]) for k in before if k.startswith("g.") and k.endswith("weight"))
    assert all(p.requires_grad for p in gan.d.parameters())  # frozen only during G's update
    assert set(stats) == {"g_loss", "d_real", "d_fake"} and 0 < stats["d_real"].item() / 32 < 1
    # the two generator losses: -log D(G(z)) > 0; log(1 - D(G(z))) < 0
    assert (stats["g_loss"].item() > 0) == (loss == "non_saturating")


# ---------------------------------------------------------------------------------------------
# training and sampling on the generated data (tiny) and on the real Fashion-MNIST

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A results root holding gan_features/ (one classifier) and gan/ (one tiny GAN), on the data the
    tests generate in the real IDX format."""
    from helpers import make_idx_dataset

    root = tmp_path_factory.mktemp("gan_root")
    data = root / "data"
    make_idx_dataset(data / "fashion-mnist")
    mp = pytest.MonkeyPatch()
    mp.setenv("DL2BENCH_DATA", str(data))
    runs = root / "runs"
    clf = RunConfig(task="fashion_mnist", model="lenet", epochs=2, batch_size=32, val_size=100, optimizer="adam",
                    lr=1e-3, **FAST).resolve()
    s = run(clf, runs / "gan_features" / clf.run_id())
    assert s["status"] == "finished" and s["test_acc"] > 0.5
    gcfg = dict(task="fashion_mnist_gan", model="gan_mlp", epochs=3, batch_size=32, val_size=100, pr_samples=100,
                feature_run="gan_features", feature_from=str(runs), **FAST)
    cfg = RunConfig(**gcfg).resolve()
    g = run(cfg, runs / "gan" / cfg.run_id())
    yield {"root": runs, "clf": clf.run_id(), "gan": g, "gan_cfg": gcfg, "data": data}
    mp.undo()


def test_gan_run_records_scores_beside_the_real_baseline(trained):
    s = trained["gan"]
    assert s["status"] == "finished", s.get("error")
    assert s["headline"] == "fid" and s["feature_run_id"] == trained["clf"]
    assert s["pr_n_val"] == 100 and s["pr_n_test"] == 100 and s["pr_k"] == 3
    for key in ("test_precision", "test_recall", "final_val_precision", "final_val_recall"):
        assert 0 <= s[key] <= 1
    # real vs real (100 training vs 100 test images) beats three epochs of a GAN on 500 images
    assert s["baseline_fid"] < s["test_fid"] and s["baseline_recall"] > s["test_recall"]
    assert s["baseline_precision"] > 0.6 and s["baseline_recall"] > 0.6
    assert s["g_params"] + s["d_params"] == s["params"]
    folder = trained["root"] / "gan" / s["run_id"]
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert all({"train_g_loss", "train_d_real", "val_fid", "val_recall"} <= set(r) for r in rows)
    with np.load(folder / "samples.npz") as z:
        assert z["epochs"].shape == (3, 64, 1, 28, 28) and z["epochs"].dtype == np.uint8
        assert z["hard"].shape == z["soft"].shape == (4, 64, 1, 28, 28)
        assert not np.array_equal(z["epochs"][0], z["epochs"][2])  # the generator moved


def test_gan_resumes_bit_identically(trained, tmp_path, killed_then_resumed, monkeypatch):
    monkeypatch.setenv("DL2BENCH_DATA", str(trained["data"]))
    cfg = {**trained["gan_cfg"], "deterministic": True}
    full = run(cfg, tmp_path / "full")
    killed_then_resumed(cfg, tmp_path / "cut", at=2)
    read = lambda p: [{k: v for k, v in json.loads(line).items() if "time" not in k and k not in ("samples_per_s", "peak_mem_mb")}  # noqa: E731
                      for line in (p / "metrics.jsonl").read_text().splitlines()]
    assert read(tmp_path / "full") == read(tmp_path / "cut")
    resumed = json.loads((tmp_path / "cut" / "summary.json").read_text())
    assert resumed["test_fid"] == full["test_fid"] and resumed["resumes"] == 1
    with np.load(tmp_path / "full" / "samples.npz") as a, np.load(tmp_path / "cut" / "samples.npz") as b:
        assert np.array_equal(a["epochs"], b["epochs"])  # the per-epoch grids survive the kill


def test_sampling_a_trained_generator(trained, monkeypatch):
    monkeypatch.setenv("DL2BENCH_DATA", str(trained["data"]))
    root, gid = trained["root"], trained["gan"]["run_id"]
    out = {}
    for trunc, psi in (("none", 1.0), ("hard", 0.5), ("soft", 0.5)):
        cfg = RunConfig(task="fashion_mnist_gan_sample", generator_run=gid, feature_from=str(root / "gan"),
                        truncation=trunc, psi=psi, pr_samples=100, **FAST).resolve()
        assert cfg.model == "gan_mlp" and cfg.feature_run == trained["clf"]  # both from the generator's run
        out[trunc] = s = run(cfg, root / "samples" / cfg.run_id())
        assert s["status"] == "finished" and s["generator_run_id"] == gid and s["epochs_completed"] == 0
        assert s["baseline_fid"] == trained["gan"]["baseline_fid"]  # the same instrument, the same N and k
        assert not (root / "samples" / cfg.run_id() / "model.pt").exists()  # it evaluated; nothing to save
    # untruncated, it scores exactly what the GAN run scored on the same test latents
    assert out["none"]["test_fid"] == pytest.approx(trained["gan"]["test_fid"], rel=1e-6)
    assert out["hard"]["test_fid"] != out["none"]["test_fid"] != out["soft"]["test_fid"]
    with np.load(root / "samples" / out["hard"]["run_id"] / "samples.npz") as z:
        assert z["samples"].shape == (64, 1, 28, 28)


@pytest.mark.slow  # real Fashion-MNIST training
def test_real_fashion_mnist_gan_and_its_truncation(tmp_path, monkeypatch):
    """On the real data: a LeNet feature space, an MLP GAN for 24,000 images (about 25 s); its scores sit
    below the real-vs-real baseline, and truncating its latent hard at psi 0.1 trades recall (diversity)
    for precision (measured at these settings: P 0.80 R 0.44 -> P 1.00 R 0.00)."""
    need(FASHION, "apt-get install dataset-fashion-mnist")
    monkeypatch.setenv("DL2BENCH_DATA", str(FASHION.parent))
    runs = tmp_path / "runs"
    clf = RunConfig(task="fashion_mnist", model="lenet", epochs=1, train_size=3000, val_size=500, test_size=1000,
                    optimizer="adam", lr=2e-3, **FAST).resolve()
    s = run(clf, runs / "gan_features" / clf.run_id())
    assert s["test_acc"] > 0.6
    cfg = RunConfig(task="fashion_mnist_gan", model="gan_mlp", lr=1e-3, epochs=4, train_size=6000, val_size=500,
                    test_size=1000, pr_samples=500, feature_run="gan_features", feature_from=str(runs), **FAST).resolve()
    g = run(cfg, runs / "gan" / cfg.run_id())
    assert g["status"] == "finished" and g["data_source"].startswith("Fashion-MNIST")
    assert g["baseline_precision"] > 0.85 and g["baseline_recall"] > 0.85
    assert g["baseline_fid"] * 5 < g["test_fid"] < 400
    assert g["test_recall"] > 0.1 and g["test_precision"] > 0.5
    hard = RunConfig(task="fashion_mnist_gan_sample", generator_run=g["run_id"], feature_from=str(runs / "gan"),
                     truncation="hard", psi=0.1, test_size=1000, pr_samples=500, **FAST).resolve()
    t = run(hard, runs / "gan_truncation" / hard.run_id())
    assert t["test_recall"] < g["test_recall"] / 4 and t["test_precision"] > g["test_precision"]


# ---------------------------------------------------------------------------------------------
# sweeps

def test_shipped_gan_sweeps_chain(trained, tmp_path):
    root = trained["root"]
    sw = S.load(ROOT / "sweeps" / "gan.yaml", root=root)
    assert len(sw.runs) == 6 and {r.model for r in sw.runs} == {"gan_mlp", "dcgan"}
    assert all(r.feature_from == str(root.resolve()) and r.feature_run == "gan_features" for r in sw.runs)
    smoke = S.load(ROOT / "sweeps" / "gan.yaml", root=root, smoke=True)
    assert all(r.epochs <= 3 and r.pr_samples == 1000 for r in smoke.runs)
    tr = S.load(ROOT / "sweeps" / "gan_truncation.yaml", root=root)
    assert len(tr.runs) == 2 * 6  # truncation x psi, over the one trained GAN
    assert {r.task for r in tr.runs} == {"fashion_mnist_gan_sample"}
    assert {r.generator_run for r in tr.runs} == {trained["gan"]["run_id"]}
    assert {r.feature_run for r in tr.runs} == {trained["clf"]}
    # no classifier yet: the sweep says what to run first, and nothing is expanded
    with pytest.raises(S.SweepError, match="feature_run: .*gan_features.*run sweeps/gan_features.yaml first"):
        S.load(ROOT / "sweeps" / "gan.yaml", root=tmp_path)


def test_two_classifiers_in_the_feature_folder_are_ambiguous(trained, tmp_path):
    root = tmp_path / "runs"
    shutil.copytree(trained["root"] / "gan_features", root / "gan_features")
    only = next((root / "gan_features").iterdir())
    shutil.copytree(only, root / "gan_features" / "0123456789ab")
    with pytest.raises(S.SweepError, match="feature_run: .* holds 2 finished classifier runs"):
        S.load(ROOT / "sweeps" / "gan.yaml", root=root)


# ---------------------------------------------------------------------------------------------
# bad input: one clear error naming the key, exit 2, nothing written

def test_bad_gan_input_is_refused(trained, tmp_path, monkeypatch):
    monkeypatch.setenv("DL2BENCH_DATA", str(trained["data"]))
    root = trained["root"]
    feat = next((root / "gan_features").iterdir())
    gid = trained["gan"]["run_id"]
    base = {"task": "fashion_mnist_gan", "feature_run": str(feat), "epochs": 1}
    sample = {"task": "fashion_mnist_gan_sample", "generator_run": gid, "feature_from": str(root / "gan")}
    # a classifier of another dataset as the feature space
    other = tmp_path / "cifar_clf"
    shutil.copytree(feat, other)
    cfg = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**cfg, "task": "cifar10"}))
    cases = [
        ({**sample, "truncation": "hard", "psi": 0}, "psi"),
        ({**sample, "truncation": "soft", "psi": -0.5}, "psi"),
        ({**sample, "psi": 0.5}, "psi"),  # psi without truncation
        ({**base, "pr_k": 10, "pr_samples": 10}, "pr_k"),
        ({**base, "feature_run": str(other)}, "feature_run"),
        ({"task": "fashion_mnist_gan", "epochs": 1}, "feature_run"),
        ({**base, "truncation": "hard", "psi": 0.5}, "truncation"),
        ({**sample, "generator_run": str(feat)}, "generator_run"),  # a classifier is no generator
        ({**base, "d_optimizer": "adamm"}, "d_optimizer"),
        ({**base, "beta1": 0.5}, "beta1"),
        ({**base, "regularizer": "label_smoothing"}, "regularizer"),
        ({**base, "feature_net": "vgg16"}, "feature_run"),  # one feature space, not two
    ]
    if not Path(M.vgg16_weights_file()).is_file():  # the weights are never downloaded without download=true
        cases.append(({"task": "fashion_mnist_gan", "feature_net": "vgg16", "epochs": 1}, "feature_net"))
    for config, key in cases:
        assert_cli_refuses(config, key, tmp_path)
    # k >= N where a split is smaller than pr_samples
    assert_cli_refuses({**base, "test_size": 3, "val_size": 100, "pr_samples": 50}, "pr_k", tmp_path)
    with pytest.raises(ConfigError, match="^pr_k: the val split gives N = 2"):
        RunConfig(**{**base, "val_size": 2}).resolve()
