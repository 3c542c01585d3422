r"""Generalization error of an MLP trained with one frozen Boolean feature, against ``2 Inf_k(f)``.

Paper: Abbe et al., "Learning to Reason with Neural Networks: Generalization, Unseen Data and
Boolean Measures", 2022, arXiv:2205.13647: under the canonical holdout (training data with
``x_k = 1``), the generalization error of GD under quadratic loss is given by the Boolean
influence of ``k`` (``lens.theory.boolean_influence``: ``2 Inf_k(f)`` over the whole cube, the error
of the minimum-degree interpolator ``f(x with x_k = 1)``).

The measurement trains a ReLU MLP (``layers`` hidden layers of ``width``, PyTorch's default
initialization, float32) with Adam on all ``2^{d-1}`` points with ``x_k = 1`` of a target given as
monomials (``terms``: lists of coordinates, each with coefficient ``coefs``), full batch, loss mean
squared error, then evaluates the mean squared error over all ``2^d`` points. ``error`` is
``|err / (2 Inf_k) - 1|``; ``train_loss`` checks that the network interpolates; ``unseen_match_mdi``
is the mean squared distance on the unseen half between the network and the min-degree
interpolator, relative to the distance between ``f`` and it (0: the network is the MDI; 1: it
extrapolates as ``f`` itself would, or as far away).
"""
from __future__ import annotations

import math

import torch

from ...errors import ConfigError
from ...lens.theory import boolean_influence as bi
from ...registry import Paper
from . import register_measure


def _target(x: torch.Tensor, terms: list[list[int]], coefs: list[float]) -> torch.Tensor:
    return sum(c * x[:, t].prod(1) for t, c in zip(terms, coefs))


@register_measure("canonical_holdout_influence", metric="error",
                  paper=Paper("Learning to Reason with Neural Networks: Generalization, Unseen Data and Boolean "
                              "Measures", 2022, "2205.13647"))
def canonical_holdout_influence(seed: int, *, d: int = 8, frozen: int = 0,
                                terms: tuple | list = ((0, 1, 2), (3, 4)), coefs: tuple | list = (1.0, 1.0),
                                width: int = 256, layers: int = 2, lr: float = 1e-3, steps: int = 2000) -> dict[str, float]:
    term_list = [[int(i) for i in t] for t in terms]
    coef_list = [float(c) for c in coefs]
    if len(term_list) != len(coef_list) or not term_list or any(not 0 <= i < d for t in term_list for i in t):
        raise ConfigError(f"canonical_holdout_influence: terms must be lists of coordinates in 0..{d - 1}, one coef "
                          f"each; got terms={term_list}, coefs={coef_list}")
    if not 0 <= frozen < d or width < 1 or layers < 1 or steps < 1 or not lr > 0:
        raise ConfigError(f"canonical_holdout_influence: need 0 <= frozen < d, width, layers, steps >= 1, lr > 0; got "
                          f"frozen={frozen}, width={width}, layers={layers}, steps={steps}, lr={lr}")
    x = bi.cube(d)
    y = _target(x, term_list, coef_list)
    coeffs = bi.fourier_coefficients(y)
    predicted = bi.canonical_holdout_error(coeffs, frozen)
    if predicted == 0:
        raise ConfigError(f"canonical_holdout_influence: the target does not depend on x_{frozen} (influence 0)")
    seen = x[:, frozen] == 1
    x_seen = x.clone()
    x_seen[:, frozen] = 1
    mdi = _target(x_seen, term_list, coef_list)  # f(x with x_k = 1)
    g = torch.Generator().manual_seed(seed)
    dims = [d] + [width] * layers + [1]
    params = []
    for fan_in, fan_out in zip(dims[:-1], dims[1:]):  # PyTorch's nn.Linear default: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
        bound = 1 / math.sqrt(fan_in)
        params += [(torch.rand(fan_out, fan_in, generator=g) * 2 - 1) * bound, (torch.rand(fan_out, generator=g) * 2 - 1) * bound]
    params = [p.requires_grad_(True) for p in params]

    def net(inp: torch.Tensor) -> torch.Tensor:
        h = inp
        for i in range(0, len(params) - 2, 2):
            h = torch.relu(h @ params[i].T + params[i + 1])
        return (h @ params[-2].T + params[-1]).squeeze(-1)

    xs, ys = x[seen].float(), y[seen].float()
    m1 = [torch.zeros_like(p) for p in params]
    m2 = [torch.zeros_like(p) for p in params]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small matrices on a shared machine; restored below
    try:
        for t in range(1, steps + 1):  # Adam (Kingma & Ba), written out
            loss = (net(xs) - ys).square().mean()
            grads = torch.autograd.grad(loss, params)
            with torch.no_grad():
                for p, gr, a, b in zip(params, grads, m1, m2):
                    a.mul_(0.9).add_(gr, alpha=0.1)
                    b.mul_(0.999).addcmul_(gr, gr, value=0.001)
                    p.sub_(lr * (a / (1 - 0.9**t)) / ((b / (1 - 0.999**t)).sqrt() + 1e-8))
        with torch.no_grad():
            pred = net(x.float()).double()
            train = float((pred[seen] - y[seen]).square().mean())
    finally:
        torch.set_num_threads(threads)
    err = float((pred - y).square().mean())
    unseen = ~seen
    match = float((pred[unseen] - mdi[unseen]).square().mean() / (y[unseen] - mdi[unseen]).square().mean())
    return {"error": abs(err / predicted - 1), "test_mse": err, "predicted": predicted, "train_loss": train,
            "unseen_match_mdi": match}
