r"""The Hessian's outlier eigenvalues are the Gauss–Newton part's (Papyan's measurements).

Paper: V. Papyan, "Measurements of Three-Level Hierarchical Structure in the Outliers in the
Spectrum of Deepnet Hessians", ICML 2019, arXiv:1901.08244. For the cross-entropy of a ``C``-class
classifier the Hessian of the training loss splits as ``H = G + E``,

    G = Ave_i J_iᵀ (diag(p_i) - p_i p_iᵀ) J_i,     E = Ave_i Σ_c (p_i,c - y_i,c) ∇²_θ f_c(x_i),

(``J_i = ∂f(x_i)/∂θ`` the logits' Jacobian, ``p_i`` the softmax); abstract (verified): "Previous
works decomposed the Hessian into two components, attributing the outliers to one of them, the
so-called Covariance of gradients [G]. We show this term is not a Covariance but a second moment
matrix ... These means possess an additive two-way structure that is the source of the outliers
in the spectrum", measured (Sec. 2-3) on VGG/ResNet/DenseNet classifiers trained on MNIST,
Fashion-MNIST and CIFAR to zero training error: the top-``C`` outliers of ``H`` are those of ``G``,
``E`` adds a bulk near 0. (His three-level class/cross-class structure of ``G``'s outliers is not
measured here.)

The measurement trains a tanh MLP (``64 -> width -> 10``, float64) by ``train_steps`` full-batch
GD steps (step ``lr``) on the cross-entropy of the digits training split (1257 images, centred),
then takes the three operators of ``lens.curvature.gauss_newton_split`` (``H``, ``G`` =
`GaussNewtonOperator`, ``E`` = `ResidualOperator`) on the whole training set and their extreme
eigenpairs by Lanczos (``top_eigenpairs``: the top ``C + 1`` of ``H`` and ``G``, the largest
``|λ|`` of ``E``; relative residual 1e-9, at most ``lanczos_iter`` products each; on this model
they equal the dense operators' ``eigvalsh`` to the digits shown). Statistic:
``error = max_{k <= C} |λ_k(H) - λ_k(G)| / λ_k(H)`` over the top ``C = 10`` eigenvalues. Recorded
beside it: ``split_error = ‖(H - G - E)V‖ / ‖HV‖`` on four random vectors (0 up to roundoff),
the residual's spectral norm against ``λ_C(H)``, the ratio ``λ_C(H) / λ_{C+1}(H)`` (how far the top ``C`` stand out),
the mean squared cosine between the top-``C`` eigenspaces of ``H`` and ``G``
(``‖U_Hᵀ U_G‖_F² / C``), training loss and accuracy.
"""
from __future__ import annotations

import torch
from torch import nn

from ...errors import ConfigError
from ...lens import curvature
from ...registry import Paper
from ...tasks.digits import Digits
from . import register_measure

CLASSES = 10


@register_measure("hessian_outliers_gauss_newton", metric="error",
                  paper=Paper("Measurements of Three-Level Hierarchical Structure in the Outliers in the Spectrum of "
                              "Deepnet Hessians", 2019, "1901.08244"))
def hessian_outliers_gauss_newton(seed: int, *, width: int = 32, train_steps: int = 1500, lr: float = 0.5,
                                  n_train: int = 0, lanczos_iter: int = 300) -> dict[str, float]:
    if width < 1 or train_steps < 0 or not lr > 0 or n_train < 0 or lanczos_iter < CLASSES + 1:
        raise ConfigError(f"hessian_outliers_gauss_newton: need width >= 1, train_steps >= 0, lr > 0, n_train >= 0 "
                          f"(0: the whole training split), lanczos_iter >= {CLASSES + 1}; got {width}, {train_steps}, {lr}, "
                          f"{n_train}, {lanczos_iter}")
    full = Digits().train_batch(0, torch.Generator())
    n = len(full) if n_train == 0 else n_train
    if not CLASSES <= n <= len(full):
        raise ConfigError(f"n_train must lie in {CLASSES}..{len(full)} (or 0 for all), got {n_train}")
    x, y = full.inputs[:n].double(), full.targets[:n]
    x = x - x.mean(0)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = nn.Sequential(nn.Linear(64, width), nn.Tanh(), nn.Linear(width, CLASSES)).double()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small matrices: one thread is faster, and kind to a shared machine
    try:
        train_gd(model, x, y, train_steps, lr)
        return outlier_statistics(model, x, y, classes=CLASSES, lanczos_iter=lanczos_iter,
                                  generator=torch.Generator().manual_seed(seed))
    finally:
        torch.set_num_threads(threads)


def train_gd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, lr: float) -> None:
    """``steps`` full-batch gradient-descent steps of size ``lr`` on the mean cross-entropy (in place)."""
    params = list(model.parameters())
    for _ in range(steps):
        grads = torch.autograd.grad(nn.functional.cross_entropy(model(x), y), params)
        with torch.no_grad():
            for p, g in zip(params, grads):
                p.sub_(lr * g)


def outlier_statistics(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, classes: int = CLASSES,
                       lanczos_iter: int = 300, generator: torch.Generator | None = None) -> dict[str, float]:
    """The statistics of the module docstring for ``model`` on ``(x, y)`` (``classes`` outliers)."""
    if not 1 <= classes < sum(p.numel() for p in model.parameters()) or lanczos_iter < classes + 1:
        raise ConfigError(f"need 1 <= classes < parameters and lanczos_iter >= classes + 1, got {classes}, {lanczos_iter}")
    H, G, E = curvature.gauss_newton_split(model, [(x, y)], loss="cross_entropy")
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    k = classes + 1
    h = H.top_eigenpairs(k, max_iter=lanczos_iter, tol=1e-9, generator=gen)
    g = G.top_eigenpairs(k, max_iter=lanczos_iter, tol=1e-9, generator=gen)
    e = E.top_eigenpairs(1, which="magnitude", max_iter=lanczos_iter, tol=1e-9, generator=gen)
    eh, uh, eg, ug = h.values, h.vectors, g.values, g.vectors
    top_h, top_g = eh[:classes], eg[:classes]
    rel = (top_h - top_g).abs() / top_h.abs()
    overlap = float((uh[:, :classes].T @ ug[:, :classes]).square().sum()) / classes
    v = torch.randn(H.dim, 4, generator=gen, dtype=torch.float64)
    split = float((H.matmat(v) - G.matmat(v) - E.matmat(v)).norm() / H.matmat(v).norm())
    with torch.no_grad():
        logits = model(x)
        loss = float(nn.functional.cross_entropy(logits, y))
        accuracy = float((logits.argmax(-1) == y).double().mean())
    return {"error": float(rel.max()), "mean_relative_difference": float(rel.mean()),
            "split_error": split, "residual_norm_over_lambda_C": float(e.values.abs().max() / eh[classes - 1]),
            "lambda_C_over_lambda_C1": float(eh[classes - 1] / eh[classes]),
            "top_space_overlap": overlap, "lambda_1": float(eh[0]), "lambda_C": float(eh[classes - 1]),
            "gn_lambda_1": float(eg[0]), "train_loss": loss, "train_accuracy": accuracy, "params": float(H.dim),
            "lanczos_value_error": max(h.value_error, g.value_error, e.value_error),
            "lanczos_converged": float(h.converged and g.converged and e.converged)}
