r"""Dropout stability and the piecewise-linear path between two SGD solutions of a wide two-layer net.

Paper: Shevchenko & Mondelli, "Landscape Connectivity and Dropout Stability of SGD Solutions for
Over-parameterized Neural Networks", 2020 (ICML 2020), arXiv:1912.10095 (abstract; Sec. 3 for two
layers): "SGD solutions are connected via a piecewise linear path, and the increase in loss along
this path vanishes as the number of neurons grows large", because the solutions are increasingly
*dropout stable*: removing part of the neurons and rescaling the rest changes the loss by an amount
that depends only on how many neurons are left.

Model (mean-field scaling, the paper's): ``ŷ(x) = (1/N) Σ_i a_i σ(<w_i, x> + b_i)``, σ = ReLU,
here an ``nn.Sequential(Linear(d, N), ReLU, Linear(N, C, bias=False))`` whose last weight holds
``a_i / N``. Online SGD in the mean-field time scale: every neuron moves at rate O(1), i.e. step
``η N`` on ``(w_i, b_i)`` and ``η / N`` on the stored ``a_i / N`` (both are SGD with step ``η N`` on
``(w_i, b_i, a_i)``). Init: ``w_i ~ N(0, I/d)``, ``b_i ~ N(0, 1/4)``, ``a_i ~ N(0, I_C)``.

Dropout (keep the first ``k = N/2`` neurons, rescale): ``θ_S`` has ``a_i -> (N/k) a_i`` for
``i ≤ k`` and ``a_i -> 0`` otherwise, so ``ŷ_S = (1/k) Σ_{i≤k} a_i σ(...)``. The dropout gap is
``L(θ_S) − L(θ)``.

Path (Sec. 3's construction for two layers), through six nodes::

    θ_A → A_S → [A's kept neurons | B's kept neurons, inactive] → [A's, inactive | B's kept, active]
        → [B's dropped neurons, inactive | B's kept, active] → π(θ_B)

(the last node is ``θ_B`` with its two halves swapped, the same function: ``lens.permutation``).
Segments that move only output weights are linear in the logits, so the cross-entropy along them
is convex; segments that move only the input weights of inactive neurons leave the function
unchanged. The loss on the path therefore never exceeds the larger of the dropout networks'
losses. Measured here with ``lens.landscape.interpolate`` on each segment: ``path_excess = max over
the path of L − max(L(θ_A), L(θ_B))`` (training loss: the paper's claims are about the
optimization landscape). Also reported: the dropout gaps, and the straight-line barrier
(``lens.landscape.barrier``) before and after weight matching (``lens.permutation.align``).

``error = path_excess(widest) − path_excess(narrowest)``: below 0 when the increase along the path
shrinks with width.
"""
from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...errors import ConfigError
from ...lens import landscape, permutation
from ...registry import Paper
from ...tasks import build_task
from . import register_measure
from ._fit import one_thread

PAPER = Paper("Landscape Connectivity and Dropout Stability of SGD Solutions for Over-parameterized Neural Networks",
              2019, "1912.10095")


def two_layer(d: int, n: int, c: int, generator: torch.Generator) -> nn.Sequential:
    """The mean-field two-layer ReLU net ``(1/N) Σ a_i relu(<w_i, x> + b_i)`` (float64)."""
    m = nn.Sequential(nn.Linear(d, n), nn.ReLU(), nn.Linear(n, c, bias=False)).double()
    with torch.no_grad():
        m[0].weight.copy_(torch.randn(n, d, generator=generator, dtype=torch.float64) / math.sqrt(d))
        m[0].bias.copy_(0.5 * torch.randn(n, generator=generator, dtype=torch.float64))
        m[2].weight.copy_(torch.randn(c, n, generator=generator, dtype=torch.float64) / n)
    return m


def train_mean_field(model: nn.Sequential, x: Tensor, y: Tensor, *, steps: int, eta: float, batch_size: int,
                     generator: torch.Generator) -> nn.Sequential:
    """Online SGD at the mean-field time scale (step ``η N`` per neuron); changes ``model`` in place."""
    n = model[0].out_features
    opt = torch.optim.SGD([{"params": list(model[0].parameters()), "lr": eta * n},
                           {"params": [model[2].weight], "lr": eta / n}])
    for _ in range(steps):
        i = torch.randint(0, x.shape[0], (batch_size,), generator=generator)
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x[i]), y[i]).backward()
        opt.step()
    return model


def _with(model: nn.Sequential, w1: Tensor, b1: Tensor, w2: Tensor) -> nn.Sequential:
    out = copy.deepcopy(model)
    with torch.no_grad():
        out[0].weight.copy_(w1)
        out[0].bias.copy_(b1)
        out[2].weight.copy_(w2)
    return out


def dropout(model: nn.Sequential, k: int) -> nn.Sequential:
    """Keep the first ``k`` neurons, output weights rescaled by ``N / k``; the rest silenced."""
    n = model[0].out_features
    w2 = model[2].weight.detach().clone()
    w2[:, :k] *= n / k
    w2[:, k:] = 0
    return _with(model, model[0].weight.detach(), model[0].bias.detach(), w2)


def dropout_path(a: nn.Sequential, b: nn.Sequential, k: int) -> list[nn.Sequential]:
    """The six nodes of the piecewise-linear path from ``a`` to ``b`` with its halves swapped (see
    the module docstring); requires ``k = N/2`` so that the kept halves fit side by side."""
    n = a[0].out_features
    if 2 * k != n:
        raise ConfigError(f"dropout_path: the construction keeps half the neurons; got k={k} of N={n}")
    wa, ba, va = a[0].weight.detach(), a[0].bias.detach(), a[2].weight.detach()
    wb, bb, vb = b[0].weight.detach(), b[0].bias.detach(), b[2].weight.detach()
    zero = torch.zeros_like(va[:, :k])
    swap = torch.cat((torch.arange(k, n), torch.arange(k)))
    mixed_w, mixed_b = torch.cat((wa[:k], wb[:k])), torch.cat((ba[:k], bb[:k]))
    return [
        a,
        dropout(a, k),
        _with(a, mixed_w, mixed_b, torch.cat((2 * va[:, :k], zero), 1)),
        _with(a, mixed_w, mixed_b, torch.cat((zero, 2 * vb[:, :k]), 1)),
        _with(a, wb[swap], bb[swap], torch.cat((zero, 2 * vb[:, :k]), 1)),
        permutation.apply_permutation(b, {"0": swap}),
    ]


def cross_entropy(model: nn.Module, batch: tuple[Tensor, Tensor]) -> Tensor:
    return F.cross_entropy(model(batch[0]), batch[1])


def path_losses(nodes: list[nn.Module], batches: list, alphas: int) -> list[Tensor]:
    """The loss along each straight segment between consecutive nodes (``alphas`` points each)."""
    return [landscape.interpolate(p, q, cross_entropy, batches, alphas=alphas)[1] for p, q in zip(nodes, nodes[1:])]


@register_measure("dropout_stability_path", metric="error", paper=PAPER)
def dropout_stability_path(seed: int, *, widths: list[int] = (64, 512), steps: int = 2000, eta: float = 0.05,
                           batch_size: int = 32, alphas: int = 11) -> dict[str, float]:
    ns = [int(n) for n in widths]
    if not ns or any(n < 2 or n % 2 for n in ns) or ns != sorted(set(ns)):
        raise ConfigError(f"dropout_stability_path: widths must be increasing even numbers >= 2, got {list(widths)}")
    if steps < 1 or batch_size < 1 or not (eta > 0 and math.isfinite(eta)) or alphas < 3:
        raise ConfigError("dropout_stability_path: need steps, batch_size >= 1, a finite eta > 0, alphas >= 3")
    task = build_task("digits")
    train = task._rows(task.split_indices("train"))
    x, y = train.inputs.double(), train.targets
    batches = [(x, y)]
    out: dict[str, float] = {}
    with one_thread():
        for n in ns:
            models = []
            for run in (2 * seed, 2 * seed + 1):
                g = torch.Generator().manual_seed(1000 * run + n)
                models.append(train_mean_field(two_layer(x.shape[1], n, task.n_outputs, g), x, y, steps=steps,
                                               eta=eta, batch_size=batch_size, generator=g).eval())
            a, b = models
            with torch.no_grad():
                la, lb = float(cross_entropy(a, batches[0])), float(cross_entropy(b, batches[0]))
                gap_a = float(cross_entropy(dropout(a, n // 2), batches[0])) - la
                gap_b = float(cross_entropy(dropout(b, n // 2), batches[0])) - lb
            losses = torch.cat(path_losses(dropout_path(a, b, n // 2), batches, alphas))
            aligned, _, _ = permutation.align(a, b, seed=seed)
            out.update({f"loss_a_{n}": la, f"loss_b_{n}": lb, f"dropout_gap_{n}": max(gap_a, gap_b),
                        f"path_excess_{n}": float(losses.max()) - max(la, lb),
                        f"barrier_{n}": landscape.barrier(a, b, cross_entropy, batches, alphas=alphas),
                        f"barrier_aligned_{n}": landscape.barrier(a, aligned, cross_entropy, batches, alphas=alphas)})
    out["error"] = out[f"path_excess_{ns[-1]}"] - out[f"path_excess_{ns[0]}"] if len(ns) > 1 else math.nan
    return out
