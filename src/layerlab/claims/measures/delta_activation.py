r"""Temporal sparsity of delta activations on digit "videos": transmitted updates vs threshold and accuracy,
for an MLP trained plainly and one trained with the sparsity-promoting delta penalty.

Paper: Yousefzadeh, Sifalakis, "Training for temporal sparsity in deep neural networks, application in
video processing", 2021, arXiv:2107.07305 (abstract: the Delta Activation Layer "casts temporal
sparsity into spatial activation sparsity"; trained with delta inference and "the usual" spatial
sparsification heuristics, "an almost 3x improvement of activation sparsity, with recoverable loss of
model accuracy after longer training"). Block: ``blocks.delta_activation`` (``Delta_t = x_t - xhat_{t-1}``
sent where ``|.| > theta``, ``xhat_t = xhat_{t-1} + Delta_t``; a Linear fed by it accumulates
``y_t = y_{t-1} + W Delta_t``).

Data: each digit image of layerlab's `digits` (8x8, in [0, 1]) becomes a clip of ``frames`` frames
``x_t = img + n_t`` with AR(1) noise ``n_t = rho n_{t-1} + sqrt(1 - rho^2) sigma eps_t`` (a slowly
changing scene, as consecutive video frames), the label at every frame; the noise of each split is
drawn from its own seeded generator.

Per seed: a ReLU MLP ``64 -> width -> width -> 10`` applied frame by frame, a DeltaActivation before
each of its Linear layers (the input and both hidden layers), trained dense (threshold 0) with Adam on
cross-entropy over all frames: (a) plainly; (b) with ``+ lam * sum_l delta_l1(h_l)`` over the two
hidden activations, for each ``lam`` of ``lams``; the kept ``lam`` is the largest whose *validation*
accuracy at ``card_threshold`` is within ``acc_tol`` of the plain model's (none: the smallest).
Reported on the test split, for each threshold of ``thresholds``: ``acc_plain_t<th>``,
``acc_pen_t<th>``, ``frac_plain_t<th>``, ``frac_pen_t<th>`` (transmitted updates / all updates at the
two hidden DeltaActivations, counted on the real tensors) and ``frac_all_*`` (the input's too); and
``update_ratio`` = frac_pen / frac_plain at ``card_threshold``, ``acc_drop`` = acc_plain - acc_pen there,
``lam`` (the kept one).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ...blocks.delta_activation import DeltaActivation, delta_l1
from ...errors import ConfigError
from ...registry import Paper
from . import register_measure
from ._digits_mlp import digits_splits
from ._fit import one_thread

PAPER = Paper("Training for temporal sparsity in deep neural networks, application in video processing", 2021,
              "2107.07305")


class DeltaMLP(nn.Module):
    """ReLU MLP over frames (B, T, d_in) -> logits (B, T, classes), a DeltaActivation before every Linear."""

    def __init__(self, d_in: int, width: int, d_out: int) -> None:
        super().__init__()
        self.linears = nn.ModuleList([nn.Linear(d_in, width), nn.Linear(width, width), nn.Linear(width, d_out)])
        self.deltas = nn.ModuleList(DeltaActivation(0.0) for _ in self.linears)
        self.hidden: list[Tensor] = []

    def set_threshold(self, theta: float) -> None:
        for d in self.deltas:
            d.threshold = float(theta)
            d.reset_counts()

    def forward(self, x: Tensor) -> Tensor:
        self.hidden = []
        h = x
        for i, (delta, lin) in enumerate(zip(self.deltas, self.linears)):
            if i:
                self.hidden.append(h)
            h = lin(delta(h))
            if i < len(self.linears) - 1:
                h = torch.relu(h)
        return h


def clips(x: Tensor, frames: int, rho: float, sigma: float, gen: torch.Generator) -> Tensor:
    """(N, 64) images -> (N, frames, 64) clips with AR(1) noise of stationary std ``sigma``."""
    noise = torch.randn(x.shape, generator=gen) * sigma
    out = [x + noise]
    for _ in range(frames - 1):
        noise = rho * noise + math.sqrt(1 - rho ** 2) * sigma * torch.randn(x.shape, generator=gen)
        out.append(x + noise)
    return torch.stack(out, 1)


def _train(x: Tensor, y: Tensor, seed: int, width: int, steps: int, lr: float, batch: int, lam: float) -> DeltaMLP:
    g = torch.Generator().manual_seed(seed)
    net = DeltaMLP(x.shape[-1], width, 10)
    with torch.no_grad():
        for lin in net.linears:
            bound = lin.in_features ** -0.5
            lin.weight.uniform_(-bound, bound, generator=g)
            lin.bias.uniform_(-bound, bound, generator=g)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    batches = torch.Generator().manual_seed(seed + 1)  # the same minibatches for every lam
    net.train()
    for _ in range(steps):
        idx = torch.randint(0, len(x), (batch,), generator=batches)
        logits = net(x[idx])
        loss = nn.functional.cross_entropy(logits.flatten(0, 1), y[idx].repeat_interleave(x.shape[1]))
        if lam:
            loss = loss + lam * sum(delta_l1(h) for h in net.hidden)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return net.eval()


def _evaluate(net: DeltaMLP, x: Tensor, y: Tensor, theta: float) -> tuple[float, float, float]:
    """(accuracy over frames, transmitted fraction at the hidden DeltaActivations, at all of them)."""
    net.set_threshold(theta)
    with torch.no_grad():
        acc = float((net(x).argmax(-1) == y[:, None]).float().mean())
    hidden = net.deltas[1:]
    frac_hidden = sum(d.transmitted for d in hidden) / sum(d.total for d in hidden)
    frac_all = sum(d.transmitted for d in net.deltas) / sum(d.total for d in net.deltas)
    net.set_threshold(0.0)
    return acc, frac_hidden, frac_all


@register_measure("delta_activation_digits_video", metric="update_ratio", paper=PAPER)
def delta_activation_digits_video(seed: int, *, width: int = 128, frames: int = 8, rho: float = 0.9,
                                  sigma: float = 0.1, steps: int = 800, lr: float = 3e-3, batch: int = 32,
                                  lams: Sequence[float] = (0.3, 1.0, 3.0),
                                  thresholds: Sequence[float] = (0.0, 0.05, 0.1, 0.2, 0.4),
                                  card_threshold: float = 0.1, acc_tol: float = 0.02) -> dict[str, float]:
    thresholds = [float(t) for t in thresholds]
    lams = sorted(float(v) for v in lams)
    if float(card_threshold) not in thresholds or min(thresholds) < 0 or not lams or min(lams) <= 0:
        raise ConfigError(f"delta_activation_digits_video: thresholds >= 0 including card_threshold, lams > 0; got "
                          f"{thresholds}, {card_threshold}, {lams}")
    if not 0 <= rho < 1 or sigma < 0 or frames < 2:
        raise ConfigError(f"delta_activation_digits_video: need 0 <= rho < 1, sigma >= 0, frames >= 2; got "
                          f"{rho}, {sigma}, {frames}")
    splits = digits_splits()
    data = {s: (clips(x, frames, rho, sigma, torch.Generator().manual_seed(1000 * seed + i)), y)
            for i, (s, (x, y)) in enumerate(splits.items())}
    with one_thread():
        plain = _train(*data["train"], seed, width, steps, lr, batch, 0.0)
        ref_val = _evaluate(plain, *data["val"], card_threshold)[0]
        kept, kept_lam = None, lams[0]
        for lam in lams:
            net = _train(*data["train"], seed, width, steps, lr, batch, lam)
            if kept is None:
                kept = net
            if _evaluate(net, *data["val"], card_threshold)[0] >= ref_val - acc_tol:
                kept, kept_lam = net, lam
        out: dict[str, float] = {"lam": kept_lam}
        for th in thresholds:
            for name, net in (("plain", plain), ("pen", kept)):
                acc, fh, fa = _evaluate(net, *data["test"], th)
                out[f"acc_{name}_t{th:g}"], out[f"frac_{name}_t{th:g}"], out[f"frac_all_{name}_t{th:g}"] = acc, fh, fa
    c = f"t{float(card_threshold):g}"
    out["update_ratio"] = out[f"frac_pen_{c}"] / out[f"frac_plain_{c}"]
    out["acc_drop"] = out[f"acc_plain_{c}"] - out[f"acc_pen_{c}"]
    return out
