"""Classifiers: the course's MLPs and CNNs. Every builder takes the task's input shape and class
count plus two switches the regularisers set (dropout p, batchnorm), and returns logits (softmax
lives in the loss)."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, List, Optional, Sequence, Tuple

from ...nets import MODELS, hidden_block

if TYPE_CHECKING:
    from torch import nn


def _dense_stack(sizes: Sequence[int], batchnorm: bool, dropout: float) -> List[nn.Module]:
    from torch import nn

    layers: List[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            hidden_block(layers, b, batchnorm, dropout, conv=False)
    return layers


def _flat_size(features: nn.Module, in_shape: Tuple[int, ...]) -> int:
    """Feature size after a conv stack, so a model adapts to 1x28x28 as well as 3x32x32."""
    import torch

    was_training = features.training
    features.eval()  # BN in train mode rejects a batch of one
    with torch.no_grad():
        n = features(torch.zeros(1, *in_shape)).numel()
    features.train(was_training)
    return n


@MODELS.register(family="classification")
def mlp(in_shape: Tuple[int, ...], num_classes: int, dropout: Optional[float] = None,
        batchnorm: bool = False) -> nn.Module:
    """784-64-32-10 MLP, ReLU (52,650 parameters on MNIST)."""
    from torch import nn

    return nn.Sequential(nn.Flatten(), *_dense_stack([math.prod(in_shape), 64, 32, num_classes],
                                                     batchnorm, dropout or 0.0))


@MODELS.register(family="classification")
def fc(in_shape: Tuple[int, ...], num_classes: int, dropout: Optional[float] = None,
       batchnorm: bool = False) -> nn.Module:
    """3072-1024-256-64-10 fully connected net, ReLU (3,426,250 parameters on CIFAR-10)."""
    from torch import nn

    return nn.Sequential(nn.Flatten(), *_dense_stack([math.prod(in_shape), 1024, 256, 64, num_classes],
                                                     batchnorm, dropout or 0.0))


@MODELS.register(family="classification")
def lenet(in_shape: Tuple[int, ...], num_classes: int, dropout: Optional[float] = None,
          batchnorm: bool = False) -> nn.Module:
    """LeNet-5 style CNN: conv5-6, pool, conv5-16, pool, 120-84-10 (62,006 parameters on CIFAR-10)."""
    from torch import nn

    layers: List[nn.Module] = [nn.Conv2d(in_shape[0], 6, 5)]
    hidden_block(layers, 6, batchnorm, 0.0, conv=True)
    layers += [nn.MaxPool2d(2), nn.Conv2d(6, 16, 5)]
    hidden_block(layers, 16, batchnorm, 0.0, conv=True)
    layers += [nn.MaxPool2d(2), nn.Flatten()]
    features = nn.Sequential(*layers)
    head = _dense_stack([_flat_size(features, in_shape), 120, 84, num_classes], batchnorm, dropout or 0.0)
    if dropout:  # dropout also on the flattened features, where LeNet variants put it
        head.insert(0, nn.Dropout(dropout))
    return nn.Sequential(*features, *head)


@MODELS.register(family="classification")
def wide_cnn(in_shape: Tuple[int, ...], num_classes: int, dropout: Optional[float] = None,
             batchnorm: bool = False) -> nn.Module:
    """Wide CNN: 3x2 3x3 convs 32-64/128-128/256-256, 4096-1024-512-10 (5,852,170 params on CIFAR-10).

    BN on the first conv of each block and dropout 0.05 as the course defines it; `batchnorm`
    adds BN to every conv, `dropout` replaces the 0.05."""
    from torch import nn

    p = 0.05 if dropout is None else dropout
    layers: List[nn.Module] = []
    c_in = in_shape[0]
    for a, b in ((32, 64), (128, 128), (256, 256)):
        layers.append(nn.Conv2d(c_in, a, 3, padding=1))
        hidden_block(layers, a, True, 0.0, conv=True)
        layers.append(nn.Conv2d(a, b, 3, padding=1))
        hidden_block(layers, b, batchnorm, 0.0, conv=True)
        layers.append(nn.MaxPool2d(2))
        c_in = b
    if p:
        layers.append(nn.Dropout(p))
    layers.append(nn.Flatten())
    features = nn.Sequential(*layers)
    head = [nn.Linear(_flat_size(features, in_shape), 1024), nn.ReLU(inplace=True),
            nn.Linear(1024, 512), nn.ReLU(inplace=True)]
    if p:
        head.append(nn.Dropout(p))
    head.append(nn.Linear(512, num_classes))
    return nn.Sequential(*features, *head)
