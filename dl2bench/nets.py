"""MODELS, the one model registry (each family registers its builders with `family=...`), and
the measurements every model gets: trainable parameters and forward FLOPs per sample."""
from __future__ import annotations

from typing import TYPE_CHECKING, List, Optional, Tuple

from .registry import Registry

if TYPE_CHECKING:
    import torch
    from torch import nn

# torch is imported inside the functions: listing and validating names (jobs/submit.py
# expanding 1,000 runs) must not pay torch's ~1.5 s import

MODELS = Registry("model")


def hidden_block(layers: List[nn.Module], width: int, batchnorm: bool, dropout: float, conv: bool) -> None:
    """What follows every hidden layer, in every family: [BN] -> ReLU -> [dropout]."""
    from torch import nn

    if batchnorm:
        layers.append(nn.BatchNorm2d(width) if conv else nn.BatchNorm1d(width))
    layers.append(nn.ReLU(inplace=True))
    if dropout:
        layers.append(nn.Dropout(dropout))


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def flops_per_sample(model: nn.Module, in_shape: Tuple[int, ...], device: torch.device,
                     example: Optional[torch.Tensor] = None) -> int:
    """Forward-pass FLOPs for one sample (a multiply-add counts 2), from torch's flop counter;
    `example` (one sample, batched) replaces the float zeros where a model wants other input."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.zeros(1, *in_shape, device=device) if example is None else example)
    model.train(was_training)
    return int(counter.get_total_flops())
