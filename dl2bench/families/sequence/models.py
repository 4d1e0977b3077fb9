"""Sequence models (the course's recurrent nets and self-attention): `rnn` (tanh), `lstm`, `gru` and
`transformer` (a pre-norm transformer encoder: multi-head self-attention, sinusoidal positions, a
causal mask where the task predicts the next token).

Every builder takes the input shape and the number of outputs, and the sequence settings:
- input: token ids (N, T) when `vocab` is given (an embedding of `hidden_size`), else vectors
  (N, T, d); an image (N, C, H, W) is read row by row, H steps of C*W features;
- output: one vector per step (N, T, out) with `per_step`, else one per sequence (N, out): a
  recurrent net's last hidden state, the transformer's mean over positions;
- `hidden_size`, `num_layers`, `num_heads` (transformer), `dropout` between layers.
Parameter counts (python -m dl2bench list models) are for the shapes named in each docstring."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Optional, Tuple

from ...nets import MODELS

if TYPE_CHECKING:
    import torch
    from torch import nn

DEFAULT_HIDDEN = 128


def _net(kind: str, in_shape: Tuple[int, ...], num_outputs: int, hidden_size: Optional[int], num_layers: Optional[int],
         num_heads: Optional[int], vocab: Optional[int], per_step: bool, causal: bool, dropout: Optional[float],
         batchnorm: bool) -> nn.Module:
    import torch
    from torch import nn

    if batchnorm:
        raise ValueError(f"{kind}: batch normalisation does not apply to sequence models (use dropout)")
    h = hidden_size or DEFAULT_HIDDEN
    layers = num_layers or 1
    p = dropout or 0.0
    if vocab is None and len(in_shape) not in (2, 3):
        raise ValueError(f"{kind} reads (steps, features) vectors, (channels, rows, columns) images row by row, "
                         f"or token ids (with a vocabulary); got input shape {tuple(in_shape)}")
    features = None if vocab else (in_shape[-1] * (in_shape[0] if len(in_shape) == 3 else 1))
    heads = num_heads or 4
    if kind == "transformer" and h % heads:
        raise ValueError(f"transformer: hidden_size {h} does not divide into num_heads {heads} heads")

    class SeqNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.kind, self.per_step, self.causal = kind, per_step, causal
            if vocab:
                self.embed = nn.Embedding(vocab, h)
            elif kind == "transformer":
                self.embed = nn.Linear(features, h)
            else:
                self.embed = None  # a recurrent layer reads the features directly
            if kind == "transformer":
                layer = nn.TransformerEncoderLayer(h, heads, 4 * h, p, activation="gelu", batch_first=True,
                                                   norm_first=True)
                self.core = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
                self.norm = nn.LayerNorm(h)
            else:
                cls = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[kind]
                self.core = cls(h if vocab else features, h, layers, batch_first=True,
                                dropout=p if layers > 1 else 0.0)
                self.norm = None
            self.drop = nn.Dropout(p) if p else None
            self.head = nn.Linear(h, num_outputs)

        def positions(self, t: int, device, dtype) -> torch.Tensor:
            pos = torch.arange(t, device=device, dtype=torch.float32)[:, None]
            freq = torch.exp(torch.arange(0, h, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / h))
            pe = torch.zeros(t, h, device=device)
            pe[:, 0::2] = torch.sin(pos * freq)
            pe[:, 1::2] = torch.cos(pos * freq[: h // 2])
            return pe.to(dtype)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if x.dim() == 4:  # images: rows are the steps
                n, c, r, w = x.shape
                x = x.permute(0, 2, 1, 3).reshape(n, r, c * w)
            if self.embed is not None:
                x = self.embed(x)
            if self.kind == "transformer":
                t = x.shape[1]
                # no sqrt(width) scaling of the embedding: nn.Embedding starts at unit variance
                # already, and scaled it would drown the positions (char_lm, 2 layers at 800k parameters,
                # 2,000 steps: test 2.34 nats/char scaled, 1.77 unscaled)
                x = x + self.positions(t, x.device, x.dtype)
                mask = nn.Transformer.generate_square_subsequent_mask(t, device=x.device) if self.causal else None
                y = self.norm(self.core(x, mask=mask, is_causal=self.causal))
                if not self.per_step:
                    y = y.mean(1)
            else:
                y, _ = self.core(x)
                if not self.per_step:
                    y = y[:, -1]
            if self.drop is not None:
                y = self.drop(y)
            return self.head(y)

    return SeqNet()


def _register(kind: str, doc: str):
    def build(in_shape: Tuple[int, ...], num_outputs: int, hidden_size: Optional[int] = None,
              num_layers: Optional[int] = None, num_heads: Optional[int] = None, vocab: Optional[int] = None,
              per_step: bool = False, causal: bool = False, dropout: Optional[float] = None,
              batchnorm: bool = False) -> nn.Module:
        return _net(kind, in_shape, num_outputs, hidden_size, num_layers, num_heads, vocab, per_step, causal, dropout,
                    batchnorm)

    build.__name__ = kind
    build.__doc__ = doc
    MODELS.register(family="sequence")(build)


_register("rnn", "Elman RNN (tanh), hidden 128, 1 layer (rows of a 28x28 image -> 10: 21,514 parameters).")
_register("lstm", "LSTM, hidden 128, 1 layer (rows of a 28x28 image -> 10: 82,186 parameters).")
_register("gru", "GRU, hidden 128, 1 layer (rows of a 28x28 image -> 10: 61,962 parameters).")
_register("transformer", "Transformer encoder, pre-norm, width 128, 4 heads, 1 layer, sinusoidal positions "
          "(rows of a 28x28 image -> 10: 203,530 parameters).")
