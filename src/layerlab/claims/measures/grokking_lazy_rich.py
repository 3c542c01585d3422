r"""Grokking delay as a function of the output scale alpha (lazy -> rich transition).

Paper: Kumar, Bordelon, Gershman & Pehlevan, "Grokking as the Transition from Lazy to Rich Training
Dynamics", 2023, arXiv:2310.06110 (abstract; Sec. 3-5). A two-layer network trained by vanilla
gradient descent on a polynomial (single-index) regression task first fits the training set with
its initial features, a kernel regression with the initial NTK whose test loss stays high, and
generalizes only later, once it learns features. The rate of feature learning is set by the
output scale ``alpha`` of the centred model

    h(x) = alpha (f_theta(x) - f_theta0(x)),   L = (1 / 2 alpha^2) (1/P) sum_mu (h(x_mu) - y_mu)^2

(Chizat et al.'s lazy scaling: under gradient flow the function moves at an alpha-independent
rate while the parameters move ``O(1/alpha)``), so a larger ``alpha`` keeps the network lazy longer
and delays the test-loss drop after the train-loss drop: the grokking delay grows with ``alpha``.

The measurement: inputs ``x ~ N(0, I_D)``, target ``y = He_2(beta . x) / sqrt(2) = ((beta . x)^2 - 1)
/ sqrt(2)`` with a random unit ``beta`` (unit variance), ``P`` training and ``n_test`` test points;
``f_theta = lens.theory.TwoLayerReLU`` (NTK parameterization, width ``width``, with bias) on
``x / sqrt(D)``; full-batch gradient descent at step ``lr`` (the same for every alpha), float64.
Train and test MSE ``(1/P) sum (h - y)^2`` are recorded every ``every`` steps. ``t_train`` is the
first recorded step with train MSE ``<= drop`` (a fraction of ``Var y = 1``), ``t_test`` the same
for the test MSE, and the delay is ``t_test - t_train`` (at least ``every``). A test loss that has
not dropped by ``max_steps`` is censored at ``max_steps`` (a lower bound on its delay, which can
only shrink the measured growth); a train loss that has not dropped leaves the delay NaN.

``error = log(delay(alpha_lo) / delay(alpha_hi))``: negative when the delay grows with alpha (the
claim), positive when it shrinks. Also recorded: each alpha's ``t_train``, ``t_test``, whether the
test drop was censored, and the NTK's relative movement ``||K_t - K_0||_F / ||K_0||_F``
(``lens.ntk``) on the training inputs at ``t_train`` and at the end, and its centred alignment
with the targets (``lens.ntk.target_alignment``) at both ends.
"""
from __future__ import annotations

import math

import torch

from ...errors import ConfigError
from ...lens import ntk, theory
from ...registry import Paper
from . import register_measure


def single_index_data(n: int, d: int, beta: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` inputs ``x ~ N(0, I_d)`` and targets ``He_2(beta . x) / sqrt(2)`` (mean 0, variance 1)."""
    x = torch.randn(n, d, generator=generator, dtype=torch.float64)
    z = x @ beta
    return x, (z * z - 1.0) / math.sqrt(2.0)


def first_below(values: list[float], steps: list[int], level: float) -> int | None:
    """The first step whose value is ``<= level`` (None when none is)."""
    return next((s for s, v in zip(steps, values) if v <= level), None)


def grokking_run(seed: int, alpha: float, *, dim: int, n_train: int, n_test: int, width: int, lr: float,
                 max_steps: int, every: int, drop: float) -> dict[str, float]:
    """Train the centred model at output scale ``alpha``; drop times, delay and NTK statistics."""
    gen = torch.Generator().manual_seed(seed)
    beta = torch.randn(dim, generator=gen, dtype=torch.float64)
    beta = beta / beta.norm()
    x, y = single_index_data(n_train, dim, beta, gen)
    xt, yt = single_index_data(n_test, dim, beta, gen)
    x, xt = x / math.sqrt(dim), xt / math.sqrt(dim)
    model = theory.TwoLayerReLU(dim, width, torch.Generator().manual_seed(seed + 7919), bias=True,
                                dtype=torch.float64)
    with torch.no_grad():
        f0, f0t = model(x).squeeze(-1), model(xt).squeeze(-1)
    k0 = ntk.empirical(model, x)
    params = list(model.parameters())
    steps, train, test = [], [], []
    k_drop = None
    for step in range(max_steps + 1):
        h = alpha * (model(x).squeeze(-1) - f0)
        mse = (h - y).square().mean()
        if step % every == 0 or step == max_steps:
            with torch.no_grad():
                test_mse = float((alpha * (model(xt).squeeze(-1) - f0t) - yt).square().mean())
            steps.append(step)
            train.append(float(mse.detach()))
            test.append(test_mse)
            if k_drop is None and train[-1] <= drop:
                k_drop = ntk.empirical(model, x)
            if test_mse <= drop and train[-1] <= drop:
                break
        if step == max_steps:
            break
        grads = torch.autograd.grad(0.5 * mse / alpha**2, params)
        with torch.no_grad():
            for p, g in zip(params, grads):
                p.sub_(lr * g)
    t_train = first_below(train, steps, drop)
    t_test = first_below(test, steps, drop)
    censored = t_test is None
    k_end = ntk.empirical(model, x)
    out = {"t_train": float("nan") if t_train is None else float(t_train),
           "t_test": float(max_steps if censored else t_test), "censored": float(censored),
           "final_train": train[-1], "final_test": test[-1],
           "ntk_change_at_train_drop": float("nan") if k_drop is None else float(ntk.relative_change(k0, k_drop)),
           "ntk_change_end": float(ntk.relative_change(k0, k_end)),
           "alignment_init": float(ntk.target_alignment(k0.squeeze(), y)),
           "alignment_end": float(ntk.target_alignment(k_end.squeeze(), y))}
    out["delay"] = (float("nan") if t_train is None
                    else float(max(out["t_test"] - t_train, every)))
    return out


@register_measure("grokking_alpha_delay", metric="error",
                  paper=Paper("Grokking as the Transition from Lazy to Rich Training Dynamics", 2023, "2310.06110"))
def grokking_alpha_delay(seed: int, *, alphas: tuple[float, ...] | list[float] = (0.25, 2.0), dim: int = 10,
                         n_train: int = 200, n_test: int = 500, width: int = 128, lr: float = 2.0,
                         max_steps: int = 3_000, every: int = 25, drop: float = 0.1) -> dict[str, float]:
    alphas = [float(a) for a in alphas]
    if len(alphas) != 2 or not 0 < alphas[0] < alphas[1]:
        raise ConfigError(f"grokking_alpha_delay: alphas must be two increasing positive scales [lo, hi], got {alphas}")
    if dim < 2 or n_train < 2 or n_test < 2 or width < 1 or not lr > 0 or max_steps < 1 or every < 1 \
            or not 0 < drop < 1:
        raise ConfigError("grokking_alpha_delay: need dim, n_train, n_test >= 2, width >= 1, lr > 0, max_steps >= 1, "
                          f"every >= 1, 0 < drop < 1; got {dim}, {n_train}, {n_test}, {width}, {lr}, {max_steps}, "
                          f"{every}, {drop}")
    out: dict[str, float] = {}
    delays = []
    for tag, a in zip(("lo", "hi"), alphas):
        r = grokking_run(seed, a, dim=dim, n_train=n_train, n_test=n_test, width=width, lr=lr,
                         max_steps=max_steps, every=every, drop=drop)
        out.update({f"{k}@{tag}": v for k, v in r.items()})
        delays.append(r["delay"])
    lo_ok = out["censored@lo"] == 0.0  # the small scale's delay must be measured, not censored
    out["error"] = math.log(delays[0] / delays[1]) if lo_ok and all(map(math.isfinite, delays)) else float("nan")
    return out
