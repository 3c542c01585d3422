r"""The global minimizer of the plain unconstrained-features model with MSE loss on imbalanced classes.

Paper: Dang, Tran, Osher, Tran-The, Ho & Nguyen, "Neural Collapse in Deep Linear Networks: From
Balanced to Imbalanced Data", 2023, arXiv:2301.00437 (Sec. 5: imbalanced data, MSE, bias-free
plain UFM): the last-layer features collapse to their class means, and the class means and
classifier rows form a "general orthogonal frame": orthogonal vectors whose lengths depend on the
number of examples in their class.

Model (bias-free, our normalization, the one of ``claims.measures.neural_collapse``). Classes
``k = 1..K`` with ``n_k`` examples, ``N = sum n_k``, features ``H = [h_{k,i}]`` (``d x N``, free),
classifier ``W`` (``K x d``), one-hot targets ``Y``, ``d >= K``:

    f(W, H) = (1/2N) ||W H - Y||_F^2 + (lambda_W / 2) ||W||_F^2 + (lambda_H / 2N) ||H||_F^2.

Closed form (our derivation, consistent with the paper's statement; not copied from its theorem).
For fixed ``W`` each feature minimizes a strictly convex function of its own class only, so
``h_{k,i} = h_k`` (NC1). With ``D = diag(sqrt(n_k))`` and ``H~ = [h_1 .. h_K] D``, ``N f`` equals
``(1/2) ||W H~ - D||^2 + (N lambda_W / 2) ||W||^2 + (lambda_H / 2) ||H~||^2``, whose minimum over
factorizations of ``A = W H~`` is ``(1/2) ||A - D||^2 + sqrt(N lambda_W lambda_H) ||A||_*``: soft
thresholding of the singular values ``sqrt(n_k)`` of ``D``,

    a_k = max(sqrt(n_k) - sqrt(N lambda_W lambda_H), 0),

with ``A`` diagonal (so the ``w_k`` are orthogonal, and so are the ``h_k``: the frame) and the
balanced split ``||w_k||^2 = sqrt(lambda_H / (N lambda_W)) a_k``,
``||h_k||^2 = sqrt(N lambda_W / lambda_H) a_k / n_k``, ``w_k . h_k = a_k / sqrt(n_k)``. A class with
``sqrt(n_k) <= sqrt(N lambda_W lambda_H)`` collapses to zero (minority collapse). The minimum is
``f* = (1/N) sum_k [ (sqrt(n_k) - a_k)^2 / 2 + sqrt(N lambda_W lambda_H) a_k ]``.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ...errors import ConfigError

__all__ = ["ufm_mse_minimum"]


def ufm_mse_minimum(counts: Sequence[int], lambda_w: float, lambda_h: float) -> dict[str, Tensor]:
    """Closed-form global minimum of the bias-free plain UFM with MSE loss: per class ``feature_norm``
    ``||h_k||``, ``classifier_norm`` ``||w_k||``, ``logit`` ``w_k . h_k``, and the ``objective`` ``f*``."""
    n = torch.as_tensor([float(c) for c in counts], dtype=torch.float64)
    if n.numel() < 1 or bool((n < 1).any()) or bool((n != n.round()).any()):
        raise ConfigError(f"counts are the examples per class, integers >= 1; got {list(counts)}")
    if not (lambda_w > 0 and lambda_h > 0):
        raise ConfigError(f"lambda_W and lambda_H must be > 0, got {lambda_w}, {lambda_h}")
    total = n.sum()
    c = torch.sqrt(total * lambda_w * lambda_h)
    a = (n.sqrt() - c).clamp_min(0)
    return {"feature_norm": (torch.sqrt(total * lambda_w / lambda_h) * a / n).sqrt(),
            "classifier_norm": (torch.sqrt(lambda_h / (total * lambda_w)) * a).sqrt(),
            "logit": a / n.sqrt(),
            "objective": (((n.sqrt() - a) ** 2 / 2 + c * a).sum() / total)}
