"""Q-networks (course practical 4): an observation in, one value per action out. Every builder
takes the observation's shape and the number of actions, plus the regularisers' switches."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, List, Optional, Tuple

from ...nets import MODELS, hidden_block

if TYPE_CHECKING:
    from torch import nn


@MODELS.register(family="rl")
def qnet_fc(in_shape: Tuple[int, ...], num_actions: int, dropout: Optional[float] = None,
            batchnorm: bool = False) -> nn.Module:
    """Fully connected d-120-84-A, ReLU (CleanRL's DQN net; 16,624 parameters on the grid game, 10,934 on CartPole)."""
    from torch import nn

    layers: List[nn.Module] = [nn.Flatten()]
    width = math.prod(in_shape)
    for h in (120, 84):
        layers.append(nn.Linear(width, h))
        hidden_block(layers, h, batchnorm, dropout or 0.0, conv=False)
        width = h
    layers.append(nn.Linear(width, num_actions))
    return nn.Sequential(*layers)


@MODELS.register(family="rl")
def qnet_conv(in_shape: Tuple[int, ...], num_actions: int, dropout: Optional[float] = None,
              batchnorm: bool = False) -> nn.Module:
    """The course's conv net: 5x5x2 -> 2x2 conv -> 4x4x8 -> ReLU -> 2x2 conv -> 3x3x16 -> ReLU -> 144 -> A (1,180 parameters on the grid game)."""
    from torch import nn

    if len(in_shape) != 3 or min(in_shape[1:]) < 3:
        raise ValueError(f"qnet_conv needs an image observation (channels, height, width) of at least 3x3; "
                         f"got shape {tuple(in_shape)}")
    c, h, w = in_shape
    layers: List[nn.Module] = [nn.Conv2d(c, 8, 2)]
    hidden_block(layers, 8, batchnorm, dropout or 0.0, conv=True)
    layers.append(nn.Conv2d(8, 16, 2))
    hidden_block(layers, 16, batchnorm, dropout or 0.0, conv=True)
    layers += [nn.Flatten(), nn.Linear(16 * (h - 2) * (w - 2), num_actions)]
    return nn.Sequential(*layers)
