"""Adversarial attacks in [0, 1] pixel space: FGSM, and PGD under the l-inf or l2 norm with random
start and restarts, untargeted or targeted (Goodfellow et al. 2015; Madry et al. 2018).

Every attack takes a model that maps [0, 1] pixels to logits (normalisation inside it, see
`runs.Trained.pixel_model`) in eval mode, and returns adversarial inputs that stay in the
eps-ball around x and in the [0, 1] box: the perturbation is projected onto the ball and the
result clamped to the box after every step (clamping never leaves the ball, since it only shrinks
each coordinate of the perturbation). An attack is one decorated function in `ATTACKS`."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

from ...registry import Registry

if TYPE_CHECKING:
    import torch
    from torch import nn

ATTACKS = Registry("attack")
NORMS = ("linf", "l2")
TINY = 1e-12  # guards the l2 normalisations of an all-zero gradient or perturbation


@dataclass(frozen=True)
class Threat:
    """What an attack may do: the norm and radius of the ball, and its goal."""

    norm: str = "linf"
    eps: float = 8 / 255
    steps: int = 10
    step_size: Optional[float] = None  # None: 2.5 * eps / steps (Madry et al.)
    restarts: int = 1
    random_start: bool = True
    targeted: bool = False

    def __post_init__(self):
        if self.norm not in NORMS:
            raise ValueError(f"attack norm {self.norm!r}: expected one of {', '.join(NORMS)}")
        if self.eps < 0:
            raise ValueError(f"attack eps {self.eps}: expected >= 0")

    @property
    def alpha(self) -> float:
        return self.step_size if self.step_size is not None else 2.5 * self.eps / max(self.steps, 1)


def norms(delta: torch.Tensor, norm: str) -> torch.Tensor:
    """Per-example norm of a batch of perturbations."""
    flat = delta.flatten(1)
    return flat.abs().amax(1) if norm == "linf" else flat.norm(dim=1)


def _per_example(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.view(-1, *([1] * (like.dim() - 1)))


def project(delta: torch.Tensor, norm: str, eps: float) -> torch.Tensor:
    """The nearest point of the eps-ball (l-inf: clip each coordinate; l2: rescale if outside)."""
    if norm == "linf":
        return delta.clamp(-eps, eps)
    n = norms(delta, "l2")
    factor = (eps / (n + TINY)).clamp(max=1.0)
    return delta * _per_example(factor, delta)


def ascent(grad: torch.Tensor, norm: str) -> torch.Tensor:
    """The steepest-ascent direction of unit size in the norm: sign(g) (l-inf) or g / ||g||_2."""
    if norm == "linf":
        return grad.sign()
    return grad / _per_example(norms(grad, "l2") + TINY, grad)


LEVELS = 65_536  # l-inf random start: evenly spaced values per pixel (see random_in_ball)


def random_in_ball(like: torch.Tensor, norm: str, eps: float, generator: Optional[torch.Generator],
                   around: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Uniform in the l-inf ball; uniform in the l2 ball (Gaussian direction, radius eps * u^(1/d)).
    With `around`, that point plus the draw (one pass fewer than adding it afterwards).

    l-inf: each coordinate is uniform over LEVELS evenly spaced values, the midpoints of LEVELS
    equal cells of [-eps, eps] (a spacing of eps/32768: for eps = 0.3, 1/109,000 of an 8-bit pixel
    level, so no attack can tell it from a continuous uniform). They come from NumPy's PCG64 as
    16-bit integers, seeded from `generator`: on a CPU, torch's uniform_ (Mersenne Twister, one
    float per draw) costs about 1.7 forward+backward passes of the MLP on a batch of 500 images,
    which a 10-step attack would pay as 17% more per step; this costs about a third of that."""
    import numpy as np
    import torch

    if norm == "linf":
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        draw = np.random.Generator(np.random.PCG64(seed)).integers(-LEVELS // 2, LEVELS // 2, like.numel(),
                                                                   dtype=np.int16)
        v = torch.from_numpy(draw).view(like.shape).to(like.device)
        s = 2 * eps / LEVELS
        if around is None:
            return v.to(like.dtype).mul_(s).add_(s / 2)
        return (around + s / 2).add_(v, alpha=s)
    g = torch.randn(like.shape, generator=generator, device="cpu", dtype=like.dtype)
    d = g[0].numel()
    r = torch.rand(len(g), generator=generator, device="cpu", dtype=like.dtype) ** (1.0 / d) * eps
    g = g / _per_example(norms(g, "l2") + TINY, g) * _per_example(r, g)
    g = g.to(like.device)
    return g if around is None else g.add_(around)


def _loss_grad(model: nn.Module, x: torch.Tensor, goal: torch.Tensor, targeted: bool) -> torch.Tensor:
    """Gradient wrt x of the summed cross-entropy: to climb (untargeted: away from the label) or,
    targeted, to descend towards the target class (so the returned gradient is negated)."""
    import torch
    import torch.nn.functional as F

    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        loss = F.cross_entropy(model(x), goal, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x)
    return -grad if targeted else grad


def succeeded(logits: torch.Tensor, y: torch.Tensor, target: Optional[torch.Tensor]) -> torch.Tensor:
    """Per example: misclassified (untargeted) or classified as the target (targeted)."""
    pred = logits.argmax(1)
    return pred == target if target is not None else pred != y


@ATTACKS.register
def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, threat: Threat,
         target: Optional[torch.Tensor] = None, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Fast gradient (sign) method: one step of size eps along the norm's ascent direction."""
    goal = target if threat.targeted else y
    # eps times a unit ascent direction lies on the ball already: only the box needs a clamp
    delta = threat.eps * ascent(_loss_grad(model, x, goal, threat.targeted), threat.norm)
    return (x + delta).clamp(0, 1).detach()


@ATTACKS.register
def pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, threat: Threat,
        target: Optional[torch.Tensor] = None, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Projected gradient descent: `steps` ascent steps of `step_size`, each projected onto the ball
    and the box; from a random point of the ball when random_start; over `restarts` starts the
    worst case counts (the first start that fools the model is kept for that example)."""
    import torch

    goal = target if threat.targeted else y
    restarts = max(threat.restarts, 1)
    if restarts == 1:  # nothing to choose between: no extra forward pass to find the fooled points
        return _pgd_once(model, x, goal, threat, generator)
    best = x.detach().clone()
    fooled = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    for r in range(restarts):
        adv = _pgd_once(model, x, goal, threat, generator)
        with torch.no_grad():
            hit = succeeded(model(adv), y, target if threat.targeted else None)
        take = ~fooled if r == 0 else (hit & ~fooled)  # the first start by default, a fooling one if any
        best[take] = adv[take]
        fooled |= hit
        if bool(fooled.all()):
            break  # later restarts cannot make it worse
    return best


def _pgd_once(model: nn.Module, x: torch.Tensor, goal: torch.Tensor, threat: Threat,
              generator: Optional[torch.Generator]) -> torch.Tensor:

    norm, eps, alpha = threat.norm, threat.eps, threat.alpha
    adv = random_in_ball(x, norm, eps, generator, around=x) if threat.random_start else x.clone()
    adv.clamp_(0, 1)
    if norm == "linf":
        # ball and box together are one interval per pixel: projecting onto both is one clamp, which
        # keeps the per-step work beside a small model's forward+backward to three elementwise ops
        lo, hi = (x - eps).clamp_(min=0), (x + eps).clamp_(max=1)
        for _ in range(threat.steps):
            adv.add_(_loss_grad(model, adv, goal, threat.targeted).sign_(), alpha=alpha).clamp_(min=lo, max=hi)
        return adv.detach()
    for _ in range(threat.steps):
        step = alpha * ascent(_loss_grad(model, adv, goal, threat.targeted), norm)
        adv = (x + project(adv + step - x, norm, eps)).clamp(0, 1).detach()
    return adv


def pick_targets(y: torch.Tensor, num_classes: int, generator: Optional[torch.Generator]) -> torch.Tensor:
    """A target class other than the label for every example, uniform over the other classes and
    reproducible from the generator."""
    import torch

    shift = torch.randint(1, num_classes, (len(y),), generator=generator, device="cpu").to(y.device)
    return (y + shift) % num_classes
