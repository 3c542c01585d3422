r"""A trained linear self-attention layer against the global minimum of in-context regression.

Paper: Zhang, Frei & Bartlett, "Trained Transformers Learn Linear Models In-Context", 2023,
arXiv:2306.09927, Theorem 4.1: gradient flow on the LSA model ``y_hat = [E + W^{PV} E (E^T W^{KQ}
E)/N]_{d+1, N+1}`` from the paper's initialization reaches the global minimum, whose prediction is
``x_query^T Gamma* (1/N) sum_i y_i x_i`` with ``Gamma* = ((1 + 1/N) Lambda + tr(Lambda)/N I)^{-1}``
and whose prediction error is ``R* = tr(Lambda) - tr(Gamma* Lambda^2)``
(``lens.theory.icl_linear_regression``).

The measurement trains the one-layer LSA in the paper's parameterization (the two full
``(d+1) x (d+1)`` matrices ``W^{PV}``, ``W^{KQ}``, initialized as in the paper; the registered
``linear_attention`` mixer has a positive feature map and a normalizer, so it is not this model)
on fresh prompts of the ``in_context_regression`` task, by Adam on the paper's loss
``(1/2) E (y_hat - y_query)^2`` with a cosine learning-rate decay (the paper's gradient flow is
the small-step limit; any optimizer that reaches the global minimum reaches the same risk).
It then evaluates the trained layer on the task's test prompts: ``risk = mean (y_hat - y_query)^2``
(twice the task's ``mse``) and ``error = |risk - R*| / R*``. Beside it: the closed-form risk of the
trained layer's ``Gamma`` block (``u W^{KQ}_{11}``, ``u = W^{PV}_{d+1,d+1}``), the relative
distance of that block from ``Gamma*``, the test-set risk of ``Gamma*`` itself on the same prompts
(the sampling error of the test set), and the risk of predicting 0 (``tr(Lambda)``).
"""
from __future__ import annotations

import math

import torch

from ...errors import ConfigError
from ...lens.theory import icl_linear_regression as icl
from ...registry import Paper
from ...tasks.in_context_regression import InContextRegression
from . import register_measure


def _predict(tokens: torch.Tensor, w_pv: torch.Tensor, w_kq: torch.Tensor) -> torch.Tensor:
    """``y_hat`` from tokens ``(B, N+1, d+1)``: ``W^{PV}_{d+1,:} (E E^T / N) W^{KQ} E_{:, N+1}``
    (the last entry of ``f_LSA(E)``; ``E``'s own entry there is the query's 0 label)."""
    n = tokens.shape[1] - 1
    gram = tokens.transpose(1, 2) @ tokens / n  # E E^T / N, (B, d+1, d+1)
    return ((w_pv[-1] @ gram) * (tokens[:, -1] @ w_kq.T)).sum(-1)


@register_measure("icl_linear_regression", metric="error",
                  paper=Paper("Trained Transformers Learn Linear Models In-Context", 2023, "2306.09927"))
def icl_linear_regression(seed: int, *, dim: int = 5, context: int = 20,
                          spectrum: tuple[float, ...] | list[float] = (), steps: int = 3000, batch: int = 1024,
                          lr: float = 0.01, sigma: float = 0.1, n_test: int = 50_000) -> dict[str, float]:
    if steps < 1 or batch < 1 or not lr > 0 or not sigma > 0 or n_test < 2:
        raise ConfigError(f"icl_linear_regression: need steps, batch >= 1, lr > 0, sigma > 0, n_test >= 2; got "
                          f"steps={steps}, batch={batch}, lr={lr}, sigma={sigma}, n_test={n_test}")
    task = InContextRegression(dim=dim, context=context, spectrum=tuple(spectrum), n_eval=n_test, data_seed=seed)
    lam = task.covariance
    g = torch.Generator().manual_seed(seed)
    w_pv, w_kq = icl.paper_init(dim, sigma, g)
    params = [w_pv.requires_grad_(True), w_kq.requires_grad_(True)]
    moments = [(torch.zeros_like(p), torch.zeros_like(p)) for p in params]
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: one thread is faster (no spinning on a shared machine); restored below
    try:
        for t in range(1, steps + 1):
            b = task.train_batch(batch, g)
            loss = task.loss(_predict(task.tokens(b), w_pv, w_kq)[:, None], b)
            grads = torch.autograd.grad(loss, params)
            step = lr * (0.5 * (1 + math.cos(math.pi * (t - 1) / steps)) + 1e-3)  # cosine decay
            with torch.no_grad():  # Adam (Kingma & Ba), written out: torch.optim's first use imports dynamo (~20 s)
                for p, gr, (m1, m2) in zip(params, grads, moments):
                    m1.mul_(beta1).add_(gr, alpha=1 - beta1)
                    m2.mul_(beta2).addcmul_(gr, gr, value=1 - beta2)
                    p.sub_(step * (m1 / (1 - beta1**t)) / ((m2 / (1 - beta2**t)).sqrt() + eps))
    finally:
        torch.set_num_threads(threads)
    w_pv, w_kq = w_pv.detach(), w_kq.detach()
    test = task.eval_set("test")
    tokens, y = task.tokens(test), test.targets[:, 0]
    risk = float((_predict(tokens, w_pv, w_kq) - y).square().mean())
    gamma_star = icl.global_minimum(lam, context)
    r_star = float(icl.global_minimum_risk(lam, context))
    x, yy, xq = tokens[:, :-1, :-1], tokens[:, :-1, -1], tokens[:, -1, :-1]
    h = (yy[:, :, None] * x).mean(1)  # (1/N) sum_i y_i x_i
    star_risk_test = float(((xq @ gamma_star * h).sum(-1) - y).square().mean())
    gamma = w_pv[-1, -1] * w_kq[:-1, :-1].T  # y_hat = x_q^T Gamma h  <=>  Gamma = u (W^{KQ}_{11})^T
    return {"error": abs(risk - r_star) / r_star, "risk": risk, "predicted_risk": r_star,
            "gamma_block_risk": float(icl.lsa_risk(gamma, lam, context)),
            "gamma_distance": float(torch.linalg.matrix_norm(gamma - gamma_star) / torch.linalg.matrix_norm(gamma_star)),
            "gamma_star_test_risk": star_risk_test, "zero_risk": float(torch.trace(lam)),
            "test_error_of_gamma_star": abs(star_risk_test - r_star) / r_star}
