"""Sample quality in a feature space: improved precision and recall (Kynkaanniemi et al. 2019) and
the Frechet distance (FID's formula; "FID" proper uses Inception features, ours a classifier's).

Precision: the share of generated samples inside the real manifold, the union of balls around each
real feature vector with radius the distance to its k-th nearest real neighbour. Recall: the share
of real samples inside the generated manifold, built the same way. Both depend on k and on N (more
samples, larger manifolds): a score is only comparable to scores with the same N and k, which is
why a run also records the real-vs-real baseline (training split vs test split) at its N and k.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Dict, Iterable

if TYPE_CHECKING:
    import torch
    from torch import nn

CHUNK = 1024  # rows of the distance matrix at a time: N = 50,000 needs no N x N matrix


def knn_radii(x: torch.Tensor, k: int) -> torch.Tensor:
    """Distance from every row of x to its k-th nearest other row."""
    import torch

    if not 1 <= k < len(x):
        raise ValueError(f"k: expected 1 <= k < N = {len(x)}, got {k}")
    out = torch.empty(len(x), dtype=x.dtype, device=x.device)
    for s in range(0, len(x), CHUNK):
        d = torch.cdist(x[s : s + CHUNK], x)
        out[s : s + CHUNK] = d.topk(k + 1, dim=1, largest=False).values[:, k]  # [:, 0] is the row itself
    return out


def coverage_of(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor) -> float:
    """Share of `points` inside at least one ball (centre, radius)."""
    import torch

    inside = torch.zeros(len(points), dtype=torch.bool, device=points.device)
    for s in range(0, len(points), CHUNK):
        d = torch.cdist(points[s : s + CHUNK], centres)
        inside[s : s + CHUNK] = (d <= radii[None, :]).any(dim=1)
    return inside.double().mean().item()


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = 3) -> Dict[str, float]:
    """Improved precision and recall of `fake` against `real` (feature vectors, one per row)."""
    real, fake = real.double(), fake.double()
    return {"precision": coverage_of(fake, real, knn_radii(real, k)),
            "recall": coverage_of(real, fake, knn_radii(fake, k))}


def moments(x: torch.Tensor):
    """Mean and covariance (unbiased, as numpy.cov) of the rows, in float64 numpy."""
    import numpy as np

    a = x.detach().double().cpu().numpy()
    return a.mean(0), np.cov(a, rowvar=False)


def frechet(mu1, s1, mu2, s2) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)). The trace of the matrix square root is taken
    as the sum of square roots of the eigenvalues of S1^(1/2) S2 S1^(1/2) (symmetric, PSD), which
    is exact and, unlike sqrtm of the non-symmetric S1 S2, never returns a complex part."""
    import numpy as np

    w, v = np.linalg.eigh(s1)
    half = (v * np.sqrt(w.clip(min=0))) @ v.T
    m = half @ s2 @ half
    tr_sqrt = np.sqrt(np.linalg.eigvalsh((m + m.T) / 2).clip(min=0)).sum()
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt)


def fid(real: torch.Tensor, fake: torch.Tensor) -> float:
    return frechet(*moments(real), *moments(fake))


def scores(real: torch.Tensor, fake: torch.Tensor, k: int) -> Dict[str, float]:
    return {**precision_recall(real, fake, k), "fid": fid(real, fake)}


def feature_extractor(classifier: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """images in [0, 1] -> the classifier's penultimate features: the input of its last linear
    layer (every dl2bench classifier ends in one), read by a forward hook."""
    import torch
    from torch import nn

    last = [m for m in classifier.modules() if isinstance(m, nn.Linear)]
    if not last:
        raise ValueError("the classifier has no linear layer to read features from")
    store = {}
    last[-1].register_forward_hook(lambda mod, inp, out: store.__setitem__("f", inp[0]))
    classifier.eval()

    def features(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            classifier(x)
        return store.pop("f").flatten(1).float()

    return features


def features_of(extract: Callable[[torch.Tensor], torch.Tensor], batches: Iterable[torch.Tensor]) -> torch.Tensor:
    import torch

    return torch.cat([extract(b) for b in batches])


def vgg16_weights_file() -> str:
    """Where torchvision keeps VGG-16's ImageNet weights (torch hub's checkpoint folder)."""
    import os

    import torch
    from torchvision.models import VGG16_Weights

    return os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(VGG16_Weights.IMAGENET1K_V1.url))


def vgg16_extractor(vgg: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """images in [0, 1] (grey or colour, any size) -> VGG-16's fc2 output (4,096 values, before its
    ReLU), the feature space of Kynkaanniemi et al.: grey replicated to RGB, resized to 224 x 224
    (bilinear), ImageNet-normalised."""
    import torch
    import torch.nn.functional as F

    vgg.eval()
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    fc1_relu_drop_fc2 = vgg.classifier[:4]  # Linear, ReLU, Dropout (off in eval), Linear

    def features(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            if x.shape[1] == 1:
                x = x.expand(-1, 3, -1, -1)
            x = F.interpolate(x.float(), size=(224, 224), mode="bilinear", align_corners=False)
            x = (x - mean.to(x.device)) / std.to(x.device)
            h = torch.flatten(vgg.avgpool(vgg.features(x)), 1)
            return fc1_relu_drop_fc2(h).float()

    return features
