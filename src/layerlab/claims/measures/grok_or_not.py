r"""Pruning the low-IPR (memorizing) neurons of an MLP trained on corrupted modular addition.

Paper: Doshi, Das, He & Gromov, "To grok or not to grok: Disentangling generalization and
memorization on corrupted algorithmic datasets", 2023 (ICLR 2024), arXiv:2310.13061 (abstract,
claims (i)-(ii)): an MLP trained on ``a + b mod p`` with a fraction ``xi`` of its training labels
corrupted can memorize the corrupted labels and generalize at once; the memorizing neurons are
those whose weights have a low inverse participation ratio in the Fourier basis
(``lens.fourier_ipr``), and pruning them lowers the accuracy on the corrupted data while raising
the accuracy on uncorrupted data.

The measurement. Pairs and splits of the ``modular`` task (``encoding = "onehot"``, ``data_seed =
seed``): the training split, of which ``floor(xi n_train)`` examples (drawn by the seed) get a label
``(y + s) mod p`` with ``s`` uniform in ``1 .. p-1`` (always wrong); the validation and test splits
together are the clean held-out set. The network is the paper's two-layer MLP on the concatenated
one-hot codes ``x = [e_a; e_b]``,

    f(x) = W phi(U x),   U: (N, 2p) ~ N(0, 1/2p),  W: (p, N) ~ N(0, 1/N),  phi(z) = z^2 (or relu),

trained full batch on ``(1/n) sum_i ||f(x_i) - e_{y_i}||^2`` by AdamW (betas 0.9, 0.98, decoupled
weight decay), float64. A neuron's score is the mean of the folded Fourier IPRs of its two input
blocks ``U[n, :p]``, ``U[n, p:]`` and its readout ``W[:, n]`` (``lens.fourier_ipr.neuron_ipr``);
the neurons scoring below ``ipr_cut`` (default 1/2: no frequency holds most of the weight) are
pruned (their readout set to 0). Reported, before and after pruning: the accuracy on the corrupted
training examples (agreement with their corrupted labels), on the clean training examples and on
the held-out pairs; the statistics

    corrupted_change = acc_corrupted(after) - acc_corrupted(before)   (< 0: the claim)
    test_drop        = acc_heldout(before) - acc_heldout(after)       (<= 0: the claim)

and the same two for pruning as many neurons chosen at random (the control).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ...errors import ConfigError
from ...lens.fourier_ipr import neuron_ipr
from ...registry import Paper
from ...tasks.modular import ModularArithmetic
from . import register_measure

ACTIVATIONS = ("quadratic", "relu")
PAPER = Paper("To grok or not to grok: Disentangling generalization and memorization on corrupted algorithmic "
              "datasets", 2023, "2310.13061")


def corrupt_labels(y: torch.Tensor, p: int, xi: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``floor(xi n)`` labels, at random positions, replaced by ``(y + s) mod p``, ``s`` uniform in
    ``1 .. p-1``; returns (labels, mask of the corrupted positions)."""
    n = y.shape[0]
    idx = torch.randperm(n, generator=generator)[: int(xi * n)]
    mask = torch.zeros(n, dtype=torch.bool)
    mask[idx] = True
    out = y.clone()
    out[idx] = (y[idx] + torch.randint(1, p, (idx.numel(),), generator=generator)) % p
    return out, mask


def train_mlp(x: torch.Tensor, y: torch.Tensor, p: int, *, width: int, steps: int, lr: float, weight_decay: float,
              activation: str, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Full-batch AdamW on the MSE to one-hot targets; returns the weights ``(U, W)``."""
    u = (torch.randn(width, x.shape[1], generator=generator, dtype=torch.float64) / math.sqrt(x.shape[1]))
    w = (torch.randn(p, width, generator=generator, dtype=torch.float64) / math.sqrt(width))
    params = [u.requires_grad_(True), w.requires_grad_(True)]
    target = F.one_hot(y, p).to(torch.float64)
    moments = [(torch.zeros_like(q), torch.zeros_like(q)) for q in params]
    beta1, beta2, eps = 0.9, 0.98, 1e-8
    for t in range(1, steps + 1):
        loss = (forward(x, u, w, activation) - target).square().sum(1).mean()
        grads = torch.autograd.grad(loss, params)
        with torch.no_grad():  # AdamW written out (torch.optim's first use imports dynamo, ~20 s)
            for q, g, (m1, m2) in zip(params, grads, moments):
                q.mul_(1.0 - lr * weight_decay)
                m1.mul_(beta1).add_(g, alpha=1 - beta1)
                m2.mul_(beta2).addcmul_(g, g, value=1 - beta2)
                q.sub_(lr * (m1 / (1 - beta1**t)) / ((m2 / (1 - beta2**t)).sqrt() + eps))
    return u.detach(), w.detach()


def forward(x: torch.Tensor, u: torch.Tensor, w: torch.Tensor, activation: str,
            keep: torch.Tensor | None = None) -> torch.Tensor:
    """``W phi(U x)``; ``keep`` (N,) zeroes the pruned neurons."""
    h = x @ u.T
    h = h * h if activation == "quadratic" else torch.relu(h)
    if keep is not None:
        h = h * keep
    return h @ w.T


def ipr_keep_mask(u: torch.Tensor, w: torch.Tensor, p: int, ipr_cut: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Each neuron's score (mean folded Fourier IPR of its two input blocks and its readout) and the
    float mask keeping the neurons that score at least ``ipr_cut``."""
    score = neuron_ipr(u, w, p=p).mean(1)
    return score, (score >= ipr_cut).to(u.dtype)


def _accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    return float((logits.argmax(1) == y).to(torch.float64).mean()) if y.numel() else float("nan")


@register_measure("grok_or_not_pruning", metric="corrupted_change", paper=PAPER)
def grok_or_not_pruning(seed: int, *, p: int = 23, train_fraction: float = 0.7, xi: float = 0.2, width: int = 64,
                        steps: int = 6000, lr: float = 0.01, weight_decay: float = 1.0,
                        activation: str = "quadratic", ipr_cut: float = 0.5) -> dict[str, float]:
    if activation not in ACTIVATIONS:
        raise ConfigError(f"grok_or_not_pruning: activation must be one of {ACTIVATIONS}, got {activation!r}")
    if not 0 < xi < 1 or width < 1 or steps < 1 or not lr > 0 or weight_decay < 0 or not 0 < ipr_cut < 1:
        raise ConfigError("grok_or_not_pruning: need 0 < xi < 1, width >= 1, steps >= 1, lr > 0, weight_decay >= 0, "
                          f"0 < ipr_cut < 1; got xi={xi}, width={width}, steps={steps}, lr={lr}, "
                          f"weight_decay={weight_decay}, ipr_cut={ipr_cut}")
    task = ModularArithmetic(p=p, op="+", train_fraction=train_fraction, data_seed=seed, encoding="onehot")
    train = task.train_batch(0, torch.Generator())  # the whole training split
    held = [task.eval_set(s) for s in ("val", "test")]
    x = train.inputs.to(torch.float64)
    xh = torch.cat([b.inputs for b in held]).to(torch.float64)
    yh = torch.cat([b.targets for b in held])
    gen = torch.Generator().manual_seed(seed)
    y, corrupted = corrupt_labels(train.targets, p, xi, gen)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: one thread is faster on a shared machine; restored below
    try:
        u, w = train_mlp(x, y, p, width=width, steps=steps, lr=lr, weight_decay=weight_decay, activation=activation,
                         generator=gen)
    finally:
        torch.set_num_threads(threads)
    score, keep = ipr_keep_mask(u, w, p, ipr_cut)
    n_pruned = int(width - keep.sum())
    rand_keep = torch.ones(width, dtype=torch.float64)
    rand_keep[torch.randperm(width, generator=gen)[:n_pruned]] = 0.0

    def accuracies(k: torch.Tensor | None) -> tuple[float, float, float]:
        out = forward(x, u, w, activation, k)
        return (_accuracy(out[corrupted], y[corrupted]), _accuracy(out[~corrupted], y[~corrupted]),
                _accuracy(forward(xh, u, w, activation, k), yh))

    cor0, clean0, test0 = accuracies(None)
    cor1, clean1, test1 = accuracies(keep)
    cor2, _, test2 = accuracies(rand_keep)
    pruned = keep == 0
    return {"corrupted_change": cor1 - cor0, "test_drop": test0 - test1,
            "random_corrupted_change": cor2 - cor0, "random_test_drop": test0 - test2,
            "corrupted_acc_before": cor0, "corrupted_acc_after": cor1,
            "clean_train_acc_before": clean0, "clean_train_acc_after": clean1,
            "test_acc_before": test0, "test_acc_after": test1,
            "pruned_fraction": n_pruned / width,
            "ipr_mean_pruned": float(score[pruned].mean()) if n_pruned else float("nan"),
            "ipr_mean_kept": float(score[~pruned].mean()) if n_pruned < width else float("nan")}
