r"""DiffROAR: do input-gradient attributions rank the discriminative features first?

Paper: Shah, Jain & Netrapalli, "Do Input Gradients Highlight Discriminative Features?", NeurIPS
2021, arXiv:2102.12781 (Sec. 2). For an attribution scheme ``A`` (here input gradients
``|∂ logit_y / ∂x|`` of a trained model) and a fraction ``k``, every example keeps only its top-k
(or bottom-k) coordinates by attribution, the others replaced by a fixed value; a fresh model is
retrained and evaluated on the masked data (RemOve And Retrain), and

    DiffROAR(k) = acc(top-k masked data) - acc(bottom-k masked data).

Assumption (A), "input gradients highlight discriminative features", predicts DiffROAR > 0; the
paper finds standard models' gradients may violate it while adversarially robust models' satisfy
it. ``input_gradients`` gives the attributions, ``keep_mask`` the per-example top/bottom-k masks
(ties broken by index), ``masked`` the masked inputs, ``diffroar`` the whole procedure with a
caller-given ``train_and_score(x_train, y_train, x_test, y_test) -> accuracy``.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from ..errors import ConfigError, ShapeError
from ._util import side_effect_free


def input_gradients(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """``|∂ f_y(x) / ∂x|`` per example (the logit of its label), ``(N, D)``."""
    if x.shape[0] != y.shape[0]:
        raise ShapeError(f"x and y must pair up along dim 0, got {x.shape[0]} and {y.shape[0]}")
    with side_effect_free(model):
        xx = x.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            logits = model(xx)
            (g,) = torch.autograd.grad(logits.gather(1, y[:, None]).sum(), xx)
    return g.abs()


def keep_mask(attributions: Tensor, k: float, top: bool = True) -> Tensor:
    """Bool ``(N, D)``: for each row the ``round(k D)`` coordinates of largest (``top``) or
    smallest attribution (a stable sort: ties go to the lower index)."""
    if not 0 < k < 1:
        raise ConfigError(f"k must be in (0, 1), got {k}")
    n, d = attributions.shape
    m = max(1, round(k * d))
    order = torch.sort(attributions, dim=1, descending=top, stable=True).indices[:, :m]
    return torch.zeros(n, d, dtype=torch.bool).scatter_(1, order, True)


def masked(x: Tensor, keep: Tensor, fill: float = 0.0) -> Tensor:
    """``x`` where ``keep``, ``fill`` elsewhere."""
    return torch.where(keep, x, torch.full_like(x, fill))


def diffroar(attr_train: Tensor, attr_test: Tensor, x_train: Tensor, y_train: Tensor, x_test: Tensor,
             y_test: Tensor, k: float, train_and_score: Callable[[Tensor, Tensor, Tensor, Tensor], float],
             fill: float = 0.0) -> dict[str, float]:
    """``{"top": acc, "bottom": acc, "diffroar": top - bottom}`` after retraining on each masking."""
    out = {}
    for name, top in (("top", True), ("bottom", False)):
        xtr = masked(x_train, keep_mask(attr_train, k, top), fill)
        xte = masked(x_test, keep_mask(attr_test, k, top), fill)
        out[name] = float(train_and_score(xtr, y_train, xte, y_test))
    out["diffroar"] = out["top"] - out["bottom"]
    return out
