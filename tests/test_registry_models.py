"""Registries and models: names are the public interface; parameter counts are the spec."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from dl2bench.families import MODELS
from dl2bench.inits import INITS
from dl2bench.nets import count_parameters, flops_per_sample
from dl2bench.registries import ALL
from dl2bench.registry import Registry, UnknownNameError

MNIST, CIFAR = (1, 28, 28), (3, 32, 32)

REQUIRED = {
    "tasks": {"mnist", "fashion_mnist", "cifar10"},
    "models": {"mlp", "fc", "lenet", "wide_cnn"},
    "optimizers": {"sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop", "adagrad", "nadam", "radam"},
    "schedules": {"constant", "step", "cosine", "onecycle", "plateau"},
    "inits": {"default", "xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal",
              "orthogonal", "normal", "zeros"},
    "regularizers": {"none", "l1", "l2", "dropout", "batchnorm", "augmentation", "early_stopping",
                     "grad_clip", "label_smoothing"},
}


@pytest.mark.parametrize("kind", sorted(REQUIRED))
def test_public_names_registered(kind):
    assert REQUIRED[kind] <= set(ALL[kind].names())


def test_unknown_name_lists_known_ones():
    with pytest.raises(UnknownNameError) as e:
        MODELS["lenett"]
    msg = str(e.value)
    assert "unknown model 'lenett'" in msg and "did you mean 'lenet'" in msg
    for name in MODELS.names():
        assert name in msg


def test_register_twice_is_an_error():
    reg = Registry("thing")
    reg.register(lambda: 1, name="a")
    with pytest.raises(ValueError, match="registered twice"):
        reg.register(lambda: 2, name="a")


def test_list_command_prints_every_registry():
    out = subprocess.run([sys.executable, "-m", "dl2bench", "list"], capture_output=True, text=True, check=True).stdout
    for kind, names in REQUIRED.items():
        assert f"{kind}:" in out
        for n in names:
            assert f"  {n} " in out


@pytest.mark.parametrize("name,shape,count", [
    ("mlp", MNIST, 52_650), ("fc", CIFAR, 3_426_250), ("lenet", CIFAR, 62_006), ("wide_cnn", CIFAR, 5_852_170)])
def test_course_parameter_counts(name, shape, count):
    assert count_parameters(MODELS[name](shape, 10)) == count


CLASSIFIERS = [n for n in MODELS.names() if MODELS.meta(n).get("family") == "classification"]


@pytest.mark.parametrize("name", CLASSIFIERS)  # each other family's models: in its own test file
@pytest.mark.parametrize("shape", [MNIST, CIFAR], ids=["1x28x28", "3x32x32"])
@pytest.mark.parametrize("switches", [{}, {"dropout": 0.3}, {"batchnorm": True}], ids=["plain", "dropout", "bn"])
def test_models_adapt_to_inputs_and_switches(name, shape, switches):
    model = MODELS[name](shape, 10, **switches)
    out = model(torch.randn(4, *shape))
    assert out.shape == (4, 10)
    kinds = {type(m).__name__ for m in model.modules()}
    if switches.get("batchnorm"):
        assert kinds & {"BatchNorm1d", "BatchNorm2d"}
    if switches.get("dropout"):
        assert any(type(m).__name__ == "Dropout" and m.p == 0.3 for m in model.modules())
    if not switches and name != "wide_cnn":
        assert not kinds & {"BatchNorm1d", "BatchNorm2d", "Dropout"}


def test_wide_cnn_has_course_bn_and_dropout():
    model = MODELS["wide_cnn"](CIFAR, 10)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    drops = [m for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    assert [b.num_features for b in bns] == [32, 128, 256]
    assert [d.p for d in drops] == [0.05, 0.05]


def test_flops_per_sample_mlp():
    # 2 FLOPs per multiply-add over the three weight matrices
    assert flops_per_sample(MODELS["mlp"](MNIST, 10), MNIST, torch.device("cpu")) == 2 * (784 * 64 + 64 * 32 + 32 * 10)


class _Cfg:
    init_std = 0.02


@pytest.mark.parametrize("name", INITS.names())
def test_inits_change_weights_as_stated(name):
    torch.manual_seed(0)
    model = MODELS["lenet"](CIFAR, 10)
    before = [p.detach().clone() for p in model.parameters()]
    INITS[name](model, _Cfg())
    weights = [m.weight for m in model.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]
    changed = any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    if name == "default":
        assert not changed
        return
    assert changed
    if name == "zeros":
        assert all(float(p.detach().abs().sum()) == 0 for p in model.parameters())
    elif name == "normal":
        big = weights[2]  # 400x120
        assert abs(big.std().item() - 0.02) < 0.002
    elif name == "orthogonal":
        w = weights[3]  # 84 x 120: rows orthogonal, scaled by the ReLU gain sqrt(2)
        assert torch.allclose(w @ w.T, 2 * torch.eye(84), atol=1e-4)
    elif name.startswith("kaiming"):
        w = weights[2]
        assert abs(w.std().item() - (2 / w.shape[1]) ** 0.5) < 0.01
    elif name.startswith("xavier"):
        w = weights[2]
        assert abs(w.std().item() - (2 ** 0.5) * (2 / sum(w.shape)) ** 0.5) < 0.01


def test_names_and_validation_do_not_import_torch():
    """jobs/submit.py validates every run of a sweep; torch's import alone would eat its time budget."""
    code = ("import sys; from dl2bench.config import RunConfig; import dl2bench.registries; "
            "RunConfig(task='cifar10', regularizer='l2', init='orthogonal').resolve(); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
