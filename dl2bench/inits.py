"""INITS: weight initialisations applied to every Linear, Conv and ConvTranspose layer, every
recurrent layer's input and recurrent matrices (per gate: an LSTM's hidden-to-hidden weight is four
H x H blocks, each initialised on its own, so `orthogonal` makes each gate's recurrence orthogonal)
and attention's input projection (per query/key/value block). BatchNorm, LayerNorm and embeddings
keep their own. Biases are zeroed by every scheme except `default`, which is PyTorch's own."""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Optional

from .registry import Registry

if TYPE_CHECKING:
    import torch
    from torch import nn

# torch is imported inside the functions: listing and validating names (jobs/submit.py
# expanding 1,000 runs) must not pay torch's ~1.5 s import

INITS = Registry("init")


def _each(model: nn.Module, weight_fn: Callable[[torch.Tensor], None],
          sequence_fn: Optional[Callable[[torch.Tensor], None]] = None) -> nn.Module:
    """weight_fn on every layer's weight; sequence_fn (default weight_fn) on the recurrent and
    attention blocks, where a ReLU gain has no business (tanh and sigmoid gates, softmax)."""
    import torch
    from torch import nn

    layers = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d,
              nn.ConvTranspose3d)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, layers):
                weight_fn(m.weight)
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, nn.RNNBase):
                gates = {"LSTM": 4, "GRU": 3}.get(m.mode, 1)
                for name, p in m.named_parameters(recurse=False):
                    if name.startswith("weight_"):
                        for block in p.chunk(gates, 0):
                            (sequence_fn or weight_fn)(block)
                    elif name.startswith("bias_"):
                        p.zero_()
            elif isinstance(m, nn.MultiheadAttention) and m.in_proj_weight is not None:
                for block in m.in_proj_weight.chunk(3, 0):
                    (sequence_fn or weight_fn)(block)
                if m.in_proj_bias is not None:
                    m.in_proj_bias.zero_()
    return model


@INITS.register
def default(model: nn.Module, cfg) -> nn.Module:
    """PyTorch's defaults (kaiming_uniform with a=sqrt(5), fan-in uniform biases)."""
    return model


@INITS.register
def xavier_uniform(model: nn.Module, cfg) -> nn.Module:
    """Glorot uniform, gain for ReLU."""
    from torch import nn

    return _each(model, lambda w: nn.init.xavier_uniform_(w, gain=nn.init.calculate_gain("relu")))


@INITS.register
def xavier_normal(model: nn.Module, cfg) -> nn.Module:
    """Glorot normal, gain for ReLU."""
    from torch import nn

    return _each(model, lambda w: nn.init.xavier_normal_(w, gain=nn.init.calculate_gain("relu")))


@INITS.register
def kaiming_uniform(model: nn.Module, cfg) -> nn.Module:
    """He uniform (fan-in, ReLU)."""
    from torch import nn

    return _each(model, lambda w: nn.init.kaiming_uniform_(w, nonlinearity="relu"))


@INITS.register
def kaiming_normal(model: nn.Module, cfg) -> nn.Module:
    """He normal (fan-in, ReLU)."""
    from torch import nn

    return _each(model, lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu"))


@INITS.register
def orthogonal(model: nn.Module, cfg) -> nn.Module:
    """Orthogonal matrices (convs flattened to out x in*k*k), gain for ReLU; recurrent and attention blocks gain 1."""
    from torch import nn

    return _each(model, lambda w: nn.init.orthogonal_(w, gain=nn.init.calculate_gain("relu")),
                 lambda w: nn.init.orthogonal_(w))


@INITS.register
def normal(model: nn.Module, cfg) -> nn.Module:
    """N(0, init_std^2) for every weight (default std 0.01)."""
    from torch import nn

    return _each(model, lambda w: nn.init.normal_(w, 0.0, cfg.init_std))


@INITS.register
def zeros(model: nn.Module, cfg) -> nn.Module:
    """All weights and biases zero: a negative control (hidden units stay identical)."""
    from torch import nn

    return _each(model, nn.init.zeros_)
