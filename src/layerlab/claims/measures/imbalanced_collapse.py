r"""Gradient descent on the imbalanced, bias-free plain UFM with MSE loss against its global minimizer.

Paper: Dang, Tran, Osher, Tran-The, Ho & Nguyen, "Neural Collapse in Deep Linear Networks: From
Balanced to Imbalanced Data", 2023, arXiv:2301.00437, Sec. 5: with imbalanced classes the features
collapse to class means that, with the classifier rows, form orthogonal vectors whose lengths
depend on the class sizes (closed form in ``lens.theory.imbalanced_collapse``).

The measurement trains ``W`` (``K x d``) and free features ``H`` (``d x N``, ``counts[k]`` columns
for class ``k``) from ``N(0, init_scale^2)`` entries by full-batch gradient descent on ``N f``
(the same minimizers as ``f``) in float64, and compares: ``length_error``, the largest relative
gap of ``||mean_k h||`` and ``||w_k||`` from the closed form; ``nc1``, the largest within-class
spread ``max_i ||h_{k,i} - mean_k|| / ||mean_k||``; ``orthogonality``, the largest ``|cos|`` between
two class means or two classifier rows; ``objective_gap``, ``(f - f*) / f*``. ``error`` is the
largest of ``length_error``, ``nc1`` and ``orthogonality``.
"""
from __future__ import annotations

import torch

from ...errors import ConfigError
from ...lens.theory.imbalanced_collapse import ufm_mse_minimum
from ...registry import Paper
from . import register_measure


def _max_abs_cos(v: torch.Tensor) -> float:
    u = v / v.norm(dim=1, keepdim=True)
    g = u @ u.T
    return float((g - torch.diag(torch.diagonal(g))).abs().max())


@register_measure("imbalanced_ufm_collapse", metric="error",
                  paper=Paper("Neural Collapse in Deep Linear Networks: From Balanced to Imbalanced Data", 2023,
                              "2301.00437"))
def imbalanced_ufm_collapse(seed: int, *, counts: tuple[int, ...] | list[int] = (24, 12, 6, 3), width: int = 8,
                            lambda_w: float = 1e-2, lambda_h: float = 1e-2, lr: float = 0.02, steps: int = 20_000,
                            init_scale: float = 0.1) -> dict[str, float]:
    cnt = [int(c) for c in counts]
    k = len(cnt)
    if width < k or steps < 1 or not lr > 0 or not init_scale > 0:
        raise ConfigError(f"imbalanced_ufm_collapse: need width >= classes ({k}), steps >= 1, lr > 0, init_scale > 0; "
                          f"got width={width}, steps={steps}, lr={lr}, init_scale={init_scale}")
    theory = ufm_mse_minimum(cnt, lambda_w, lambda_h)
    if bool((theory["logit"] == 0).any()):
        raise ConfigError("imbalanced_ufm_collapse: a class collapses to zero at these lambdas (minority collapse); "
                          "the length comparison needs every class alive: lower lambda_w * lambda_h")
    n = sum(cnt)
    labels = torch.repeat_interleave(torch.arange(k), torch.tensor(cnt))
    y = torch.nn.functional.one_hot(labels, k).double().T  # K x N
    g = torch.Generator().manual_seed(seed)
    w = init_scale * torch.randn(k, width, generator=g, dtype=torch.float64)
    h = init_scale * torch.randn(width, n, generator=g, dtype=torch.float64)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: one thread avoids spinning on a shared machine; restored below
    try:
        for _ in range(steps):  # gradient descent on N f = ||WH - Y||^2/2 + N lambda_W ||W||^2/2 + lambda_H ||H||^2/2
            r = w @ h - y
            gw = r @ h.T + n * lambda_w * w
            gh = w.T @ r + lambda_h * h
            w, h = w - lr * gw, h - lr * gh
    finally:
        torch.set_num_threads(threads)
    means = torch.stack([h[:, labels == c].mean(1) for c in range(k)])  # K x d
    spread = max(float((h[:, labels == c] - means[c, :, None]).norm(dim=0).max() / means[c].norm()) for c in range(k))
    gaps = torch.cat([(means.norm(dim=1) - theory["feature_norm"]).abs() / theory["feature_norm"],
                      (w.norm(dim=1) - theory["classifier_norm"]).abs() / theory["classifier_norm"]])
    f = (0.5 * (w @ h - y).square().sum() / n + 0.5 * lambda_w * w.square().sum()
         + 0.5 * lambda_h * h.square().sum() / n)
    ortho = max(_max_abs_cos(means), _max_abs_cos(w))
    out = {"length_error": float(gaps.max()), "nc1": spread, "orthogonality": ortho,
           "objective_gap": float((f - theory["objective"]) / theory["objective"])}
    out["error"] = max(out["length_error"], out["nc1"], out["orthogonality"])
    # how unequal the predicted lengths are (what a balanced-ETF prediction would miss)
    out["feature_norm_ratio"] = float(theory["feature_norm"].max() / theory["feature_norm"].min())
    return out
