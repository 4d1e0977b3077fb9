"""REGULARIZERS: each is one categorical choice (`regularizer: l2`) whose strength is the
config's `reg_strength` (None = the default stated in its docstring). An entry returns a Reg
that says what it changes: the model (dropout, batchnorm), the loss (penalty, label smoothing),
the data (augmentation), the update (gradient clipping) or when to stop (early stopping)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Dict, Optional

from .registry import Registry

if TYPE_CHECKING:
    import torch
    from torch import nn

REGULARIZERS = Registry("regularizer")


@dataclass(frozen=True)
class Reg:
    """What a regulariser changes; the training loop reads these fields and nothing else."""

    model_kwargs: Dict = field(default_factory=dict)  # passed to the model builder
    penalty: Optional[Callable[[nn.Module], torch.Tensor]] = None  # added to the training loss
    augment: bool = False
    label_smoothing: float = 0.0
    clip_norm: Optional[float] = None
    patience: Optional[int] = None  # early stopping on the validation metric


def _strength(cfg, default: float) -> float:
    return default if cfg.reg_strength is None else cfg.reg_strength


def _weights(model: nn.Module):
    """Weight matrices and kernels only: penalising biases and BN scales is not what L1/L2 mean."""
    return [p for n, p in model.named_parameters() if p.ndim > 1]


@REGULARIZERS.register
def none(cfg) -> Reg:
    """No regularisation (the model's built-in layers stay as defined)."""
    return Reg()


@REGULARIZERS.register
def l1(cfg) -> Reg:
    """Explicit penalty strength * sum|w| on weights (default 1e-5)."""
    lam = _strength(cfg, 1e-5)
    return Reg(penalty=lambda m: lam * sum(w.abs().sum() for w in _weights(m)))


@REGULARIZERS.register
def l2(cfg) -> Reg:
    """Explicit penalty strength/2 * sum w^2 on weights (default 1e-4), not the optimizer's weight_decay."""
    lam = _strength(cfg, 1e-4)
    return Reg(penalty=lambda m: 0.5 * lam * sum(w.pow(2).sum() for w in _weights(m)))


@REGULARIZERS.register
def dropout(cfg) -> Reg:
    """Dropout with p = strength (default 0.5) after hidden layers."""
    p = _strength(cfg, 0.5)
    if not 0 <= p < 1:
        from .errors import ConfigError
        raise ConfigError(f"reg_strength: dropout p must be in [0, 1), got {p}")
    return Reg(model_kwargs={"dropout": p})


@REGULARIZERS.register
def batchnorm(cfg) -> Reg:
    """Batch normalisation after every hidden layer (strength unused)."""
    return Reg(model_kwargs={"batchnorm": True})


@REGULARIZERS.register
def augmentation(cfg) -> Reg:
    """Random crop (4 px zero padding) + horizontal flip, on the device, per batch (strength unused)."""
    return Reg(augment=True)


@REGULARIZERS.register
def early_stopping(cfg) -> Reg:
    """Stop when validation accuracy has not improved for `strength` epochs (default 3); test the best."""
    return Reg(patience=max(1, int(_strength(cfg, 3))))


@REGULARIZERS.register
def grad_clip(cfg) -> Reg:
    """Clip the global gradient norm to `strength` (default 1.0)."""
    return Reg(clip_norm=_strength(cfg, 1.0))


@REGULARIZERS.register
def label_smoothing(cfg) -> Reg:
    """Cross-entropy with label smoothing eps = strength (default 0.1)."""
    eps = _strength(cfg, 0.1)
    if not 0 <= eps < 1:
        from .errors import ConfigError
        raise ConfigError(f"reg_strength: label smoothing must be in [0, 1), got {eps}")
    return Reg(label_smoothing=eps)
