r"""Feature emergence on modular addition (Li_2): the energy's maxima, and the features a trained net learns.

Paper: Tian, "Provable Scaling Laws of Feature Emergence from Learning Dynamics of Grokking", 2025,
arXiv:2509.21519 (abstract): in the independent-feature-learning stage each hidden node of a
two-layer network follows the gradient ascent of an energy ``E``, whose local maxima are precisely
the emerging features; on group arithmetic these are the group's irreducible representations --
for ``a + b mod M``, single Fourier frequencies (``lens.theory.feature_emergence``).

``li2_energy_maxima``: ``nodes`` unit vectors ``w = [u; v]`` drawn at random ascend ``E`` on the full
table (quadratic ``sigma``) by Riemannian gradient ascent (``energy_ascent``); each end point is
compared with the closed form, ``E* = M/4`` reached exactly by single-frequency features:

    error = max over nodes of max(|E(w)/E* - 1|, 1 - IPR(u), 1 - IPR(v))

(folded Fourier IPR, ``lens.fourier_ipr``: 1 exactly for one frequency). Also recorded: how many
distinct frequencies the nodes found, and whether ``u`` and ``v`` share theirs.

``li2_trained_fourier``: the author's setting (his ``modular_addition_simple2.py``: one-hot inputs,
hidden ``F = (X W^T)^2`` without biases, top layer ``V``, mean-centred outputs against targets
``Y - 1/M`` under the square loss, Adam with weight decay) trained on a ``train_fraction`` of the
table; at the end each node's Fourier IPR ``IPR_j = min(IPR(u_j), IPR(v_j))`` is read off and

    error = 1 - sum_j ||w_j||^2 IPR_j / sum_j ||w_j||^2

(the norm-weighted mean: weight decay leaves the unused nodes small and unstructured, and they are
not features; about ``1 - 4/M`` for random weights, 0 when every node is one frequency), with the
unweighted mean, the share of nodes above 1/2 and the held-out accuracy beside it.
"""
from __future__ import annotations

import math

import torch

from ...errors import ConfigError
from ...lens.fourier_ipr import dominant_frequency, fourier_ipr
from ...lens.theory import feature_emergence as li2
from ...registry import Paper
from . import register_measure

PAPER = Paper("Provable Scaling Laws of Feature Emergence from Learning Dynamics of Grokking", 2025, "2509.21519")


def _node_ipr(w: torch.Tensor, M: int) -> torch.Tensor:
    """``min(IPR(u), IPR(v))`` per row ``w = [u; v]``."""
    return torch.minimum(fourier_ipr(w[:, :M]), fourier_ipr(w[:, M:]))


@register_measure("li2_energy_maxima", metric="error", paper=PAPER)
def li2_energy_maxima(seed: int, *, M: int = 97, nodes: int = 32, steps: int = 300,
                      lr: float = 0.05) -> dict[str, float]:
    if not isinstance(M, int) or M < 3 or M % 2 == 0 or nodes < 1 or steps < 1 or not lr > 0:
        raise ConfigError(f"li2_energy_maxima: need an odd integer M >= 3, nodes >= 1, steps >= 1, lr > 0; got M={M!r}, "
                          f"nodes={nodes}, steps={steps}, lr={lr}")
    x, labels = li2.modular_addition_data(M)
    yt = li2.centred_targets(labels, M)
    w0 = torch.randn(nodes, 2 * M, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # restored below
    try:
        w = li2.energy_ascent(w0, x, yt, steps=steps, lr=lr)
    finally:
        torch.set_num_threads(threads)
    best = li2.max_energy(M)
    gap = (li2.energy(w, x, yt) / best - 1.0).abs()
    ipr_u, ipr_v = fourier_ipr(w[:, :M]), fourier_ipr(w[:, M:])
    err = torch.stack([gap, 1.0 - ipr_u, 1.0 - ipr_v]).amax(0)
    ku, kv = dominant_frequency(w[:, :M]), dominant_frequency(w[:, M:])
    return {"error": float(err.max()), "energy_gap_max": float(gap.max()),
            "ipr_min": float(torch.minimum(ipr_u, ipr_v).min()),
            "ipr_start_mean": float(_node_ipr(w0, M).mean()),
            "energy_start_mean": float((li2.energy(w0 / w0.norm(dim=1, keepdim=True), x, yt) / best).mean()),
            "same_frequency": float((ku == kv).to(torch.float64).mean()),
            "distinct_frequencies": float(len(set(ku.tolist())))}


@register_measure("li2_trained_fourier", metric="error", paper=PAPER)
def li2_trained_fourier(seed: int, *, M: int = 23, train_fraction: float = 0.5, hidden: int = 64, steps: int = 3000,
                        lr: float = 0.01, weight_decay: float = 1e-4) -> dict[str, float]:
    if not isinstance(M, int) or M < 3 or not 0 < train_fraction < 1 or hidden < 1 or steps < 1 or not lr > 0 \
            or weight_decay < 0:
        raise ConfigError("li2_trained_fourier: need an integer M >= 3, 0 < train_fraction < 1, hidden >= 1, steps >= 1, "
                          f"lr > 0, weight_decay >= 0; got M={M!r}, train_fraction={train_fraction}, hidden={hidden}, "
                          f"steps={steps}, lr={lr}, weight_decay={weight_decay}")
    gen = torch.Generator().manual_seed(seed)
    pairs = torch.cartesian_prod(torch.arange(M), torch.arange(M))
    perm = torch.randperm(M * M, generator=gen)
    n = int(train_fraction * M * M)
    if n < 1 or n >= M * M:
        raise ConfigError(f"li2_trained_fourier: train_fraction {train_fraction} leaves an empty train or held-out set")
    x, y = li2.modular_addition_data(M, pairs[perm[:n]])
    xh, yh = li2.modular_addition_data(M, pairs[perm[n:]])
    target = li2.centred_targets(y, M)
    w = torch.randn(hidden, 2 * M, generator=gen, dtype=torch.float64) / math.sqrt(2 * M)
    v = torch.randn(M, hidden, generator=gen, dtype=torch.float64) / math.sqrt(hidden)
    ipr_init = float(_node_ipr(w, M).mean())
    params = [w.requires_grad_(True), v.requires_grad_(True)]
    moments = [(torch.zeros_like(q), torch.zeros_like(q)) for q in params]
    beta1, beta2, eps = 0.9, 0.999, 1e-8

    def logits(inputs: torch.Tensor) -> torch.Tensor:
        return (inputs @ params[0].T).square() @ params[1].T

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices; restored below
    try:
        for t in range(1, steps + 1):
            out = logits(x)
            loss = (out - out.mean(1, keepdim=True) - target).square().sum(1).mean()
            grads = torch.autograd.grad(loss, params)
            with torch.no_grad():  # Adam with L2 weight decay added to the gradient (torch.optim.Adam's rule)
                for q, g, (m1, m2) in zip(params, grads, moments):
                    g = g + weight_decay * q
                    m1.mul_(beta1).add_(g, alpha=1 - beta1)
                    m2.mul_(beta2).addcmul_(g, g, value=1 - beta2)
                    q.sub_(lr * (m1 / (1 - beta1**t)) / ((m2 / (1 - beta2**t)).sqrt() + eps))
    finally:
        torch.set_num_threads(threads)
    with torch.no_grad():
        node = _node_ipr(params[0].detach(), M)
        mass = params[0].detach().square().sum(1)
        alive = mass > 0  # a node decayed to exactly 0 has no IPR (and no weight)
        weighted = float((mass[alive] * node[alive]).sum() / mass.sum())
        train_acc = float((logits(x).argmax(1) == y).to(torch.float64).mean())
        test_acc = float((logits(xh).argmax(1) == yh).to(torch.float64).mean())
    return {"error": 1.0 - weighted, "ipr_weighted": weighted, "ipr_mean": float(node.mean()), "ipr_init_mean": ipr_init,
            "fourier_nodes": float((node > 0.5).to(torch.float64).mean()), "train_acc": train_acc,
            "test_acc": test_acc, "final_loss": float(loss.detach())}
