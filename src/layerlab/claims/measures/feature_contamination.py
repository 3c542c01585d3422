r"""Feature contamination: background weights of a two-layer ReLU network against a linear model, and OOD accuracy.

Paper: Zhang, Zhao, Chen, Jiang & Chen, "Feature Contamination: Neural Networks Learn Uncorrelated
Features and Fail to Generalize", 2024, arXiv:2406.03345: a two-layer ReLU network trained on core
(label-carrying) plus background (label-independent) features learns the background features too
(activation asymmetry), a linear model does not, and the network fails when the background shifts
(``lens.theory.feature_contamination``).

The measurement draws a label-paired training sample (``pairs`` pairs; core ``y U[0,1]^{d_c}``,
background ``U[0,1]^{d_b}``, embedded in ``R^d`` by random orthonormal rows ``P``), trains from
``N(0, init^2)`` weights by full-batch gradient descent (``steps``, ``lr``) the ReLU network
``sum_r a_r ReLU(<w_r, x>)`` (``a_r = +-1/m`` fixed) and the linear model, and reads:

- ``contamination_relu`` / ``contamination_linear``: the learned part of the first-layer weights
  on the background rows over that on the core rows, ``mean_r ||P_b (w_r - w_r(0))|| / mean_r
  ||P_c (w_r - w_r(0))||`` (the linear model has one row);
- ``error = contamination_linear / contamination_relu`` (small: only the ReLU network is contaminated);
- ``ood_retention = acc_OOD / acc_ID`` of the ReLU network on ``n_test`` fresh examples whose
  background is ``+U[0,1]^{d_b}`` (ID) or ``-U[0,1]^{d_b}`` (OOD: the same core, the background
  negated, as in the paper's toy experiment), and ``linear_ood_retention`` for the linear model;
  the accuracies and the OOD/ID logistic losses; the final training losses.
"""
from __future__ import annotations

import torch

from ...errors import ConfigError
from ...lens.theory import feature_contamination as fc
from ...registry import Paper
from . import register_measure


@register_measure("feature_contamination", metric="error",
                  paper=Paper("Feature Contamination: Neural Networks Learn Uncorrelated Features and Fail to "
                              "Generalize", 2024, "2406.03345"))
def feature_contamination(seed: int, *, core_dim: int = 32, bg_dim: int = 32, input_dim: int = 256, hidden: int = 256,
                          pairs: int = 500, steps: int = 1000, lr: float = 5.0, init: float = 0.01,
                          n_test: int = 4000) -> dict[str, float]:
    if hidden < 2 or pairs < 1 or core_dim + bg_dim > input_dim or n_test < 2 or not init > 0:
        raise ConfigError(f"feature_contamination: need hidden >= 2, pairs >= 1, core_dim + bg_dim <= input_dim, "
                          f"n_test >= 2, init > 0; got hidden={hidden}, pairs={pairs}, core_dim={core_dim}, "
                          f"bg_dim={bg_dim}, input_dim={input_dim}, n_test={n_test}, init={init}")
    g = torch.Generator().manual_seed(seed)
    p = fc.orthonormal_rows(core_dim + bg_dim, input_dim, g)
    zc, zb, y = fc.paired_sample(pairs, core_dim, bg_dim, g)
    x = torch.cat([zc, zb], 1) @ p
    a = torch.cat([torch.ones(hidden // 2), -torch.ones(hidden - hidden // 2)]).to(torch.float64) / hidden
    w0 = init * torch.randn(hidden, input_dim, generator=g, dtype=torch.float64)
    v0 = init * torch.randn(1, input_dim, generator=g, dtype=torch.float64)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        w = fc.train(w0, a, x, y, steps=steps, lr=lr)
        v = fc.train(v0, None, x, y, steps=steps, lr=lr)
    finally:
        torch.set_num_threads(threads)
    out: dict[str, float] = {}
    for name, dw in (("relu", w - w0), ("linear", v - v0)):
        core, bg = fc.feature_weights(dw, p, core_dim)
        out[f"contamination_{name}"] = float(bg.mean() / core.mean())
    out["error"] = out["contamination_linear"] / out["contamination_relu"]
    zc_t, zb_t, y_t = fc.sample(n_test, core_dim, bg_dim, g)
    models = {"relu": lambda inp: fc.relu_forward(w, a, inp), "linear": lambda inp: (inp @ v.T)[:, 0]}
    for name, f in models.items():
        for split, zbs in (("id", zb_t), ("ood", -zb_t)):
            logits = f(torch.cat([zc_t, zbs], 1) @ p)
            out[f"{name}_{split}_accuracy"] = float((torch.sign(logits) == y_t).double().mean())
            out[f"{name}_{split}_loss"] = float(fc.logistic_loss(logits, y_t))
        out[f"{name}_train_loss"] = float(fc.logistic_loss(f(x), y))
    out["ood_retention"] = out["relu_ood_accuracy"] / out["relu_id_accuracy"]
    out["linear_ood_retention"] = out["linear_ood_accuracy"] / out["linear_id_accuracy"]
    return out
