"""One Tversky projection layer fits XOR; one linear layer cannot.

Paper: Doumbouya, Jurafsky & Manning, "Tversky Neural Networks: Psychologically Plausible Deep
Learning with Differentiable Tversky Similarity", 2025, arXiv:2506.11035 (abstract; the XOR
experiment): the Tversky projection ``y_i = S(a, π_i) = θ f(A ∩ Π_i) - α f(A - Π_i) - β f(Π_i - A)``
"unlike the linear projection layer can model non-linear functions such as xor".

Per seed, the measurement trains on the four XOR points ``{0, 1}^2 -> a xor b`` (cross-entropy,
Adam, full batch, float64) both a single ``TverskyProjection(2 -> 2 class prototypes)`` and a single
``nn.Linear(2, 2)``, each initialized from the seed's ``torch.Generator`` (Tversky: features and
prototypes U(0, 1), the paper's best XOR init; linear: ``nn.Linear``'s U(-1/sqrt(2), 1/sqrt(2))),
and returns ``error = 1 - accuracy`` of the Tversky layer on the four points, beside both
accuracies. A linear decision rule gets at most 3 of the 4 XOR points right, so
``accuracy_linear <= 0.75`` always.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...blocks.channels.tversky import DIFFERENCES, INTERSECTIONS, TverskyProjection
from ...errors import ConfigError
from ...registry import Paper
from . import register_measure

XOR_X = ((0.0, 0.0), (0.0, 1.0), (1.0, 0.0), (1.0, 1.0))
XOR_Y = (0, 1, 1, 0)


def _fit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, lr: float) -> tuple[float, float]:
    """Full-batch Adam on cross-entropy; returns (accuracy, final loss) on the four points."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        logits = model(x)
        return (logits.argmax(-1) == y).double().mean().item(), F.cross_entropy(logits, y).item()


@register_measure("tversky_xor", metric="error",
                  paper=Paper("Tversky Neural Networks: Psychologically Plausible Deep Learning with "
                              "Differentiable Tversky Similarity", 2025, "2506.11035"))
def tversky_xor(seed: int, *, n_features: int = 4, intersection: str = "product",
                difference: str = "substractmatch", steps: int = 200, lr: float = 0.05) -> dict[str, float]:
    if intersection not in INTERSECTIONS or difference not in DIFFERENCES:
        raise ConfigError(f"tversky_xor: intersection must be one of {INTERSECTIONS} and difference one of "
                          f"{DIFFERENCES}; got {intersection!r}, {difference!r}")
    if steps < 1 or not lr > 0:
        raise ConfigError(f"tversky_xor: need steps >= 1 and lr > 0, got steps={steps}, lr={lr}")
    x = torch.tensor(XOR_X, dtype=torch.float64)
    y = torch.tensor(XOR_Y)
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):  # the constructors' own draws leave the global RNG as it was
        tversky = TverskyProjection(2, 2, n_features=n_features, intersection=intersection,
                                    difference=difference, init="uniform", dtype=torch.float64)
        linear = nn.Linear(2, 2, dtype=torch.float64)
    with torch.no_grad():
        tversky.features.uniform_(0.0, 1.0, generator=g)
        tversky.prototypes.uniform_(0.0, 1.0, generator=g)
        bound = 2 ** -0.5
        linear.weight.uniform_(-bound, bound, generator=g)
        linear.bias.uniform_(-bound, bound, generator=g)
    acc_t, loss_t = _fit(tversky, x, y, steps, lr)
    acc_l, loss_l = _fit(linear, x, y, steps, lr)
    return {"error": 1.0 - acc_t, "accuracy_tversky": acc_t, "accuracy_linear": acc_l,
            "loss_tversky": loss_t, "loss_linear": loss_l}
