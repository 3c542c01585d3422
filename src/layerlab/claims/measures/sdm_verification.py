"""SDM against softmax for selective classification on digits with held-out (out-of-distribution) classes.

Paper: Schmaltz, "Similarity-Distance-Magnitude Universal Verification", 2025, arXiv:2502.20167
(abstract: the SDM activation is "more robust than the softmax function to co-variate shifts and
out-of-distribution inputs in high-probability regions"; sdm(z)_i = (2 + q)^(d z_i) / Σ_c (2 + q)^(d z_c),
``layerlab.blocks.sdm_output``).

Per seed: a ReLU MLP 64-128-128-K is trained (Adam, ``steps``) on the digits training split restricted
to classes ``0..K-1`` (K = ``n_known``); the validation split's known-class digits are the calibration
set (nearest-distance CDF for d); the test split holds known digits (in distribution) and the other
classes (out of distribution, always wrong). The representation is the penultimate layer; q uses the
``k`` nearest training exemplars. Among test inputs admitted at max probability >= ``alpha``::

    precision = (admitted known-class digits predicted correctly) / (all admitted)

for the softmax and for SDM; ``deficit = precision_softmax - precision_sdm`` (<= 0: SDM's
high-probability region is at least as reliable), plus each one's admitted fraction of known and OOD inputs.
"""
from __future__ import annotations

import torch

from ...blocks.sdm_output import distance_quantile, nearest_distance, sdm, similarity
from ...errors import ConfigError
from ...registry import Paper
from . import register_measure
from ._digits_mlp import digits_splits, penultimate, train_mlp


@register_measure("sdm_selective_digits", metric="deficit",
                  paper=Paper("Similarity-Distance-Magnitude Universal Verification", 2025, "2502.20167"))
def sdm_selective_digits(seed: int, *, n_known: int = 7, width: int = 128, steps: int = 1500, lr: float = 1e-3,
                         alpha: float = 0.95, k: int = 100) -> dict[str, float]:
    if not 2 <= n_known <= 9 or width < 1 or steps < 1 or not lr > 0 or not 0 < alpha < 1 or k < 1:
        raise ConfigError(f"sdm_selective_digits: need 2 <= n_known <= 9, width, steps, k >= 1, lr > 0, "
                          f"0 < alpha < 1; got {n_known}, {width}, {steps}, {k}, {lr}, {alpha}")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matmuls: extra threads only wait on each other on a loaded machine
    try:
        data = digits_splits()
        (x, y), (xv, yv), (xt, yt) = data["train"], data["val"], data["test"]
        known = y < n_known
        net = train_mlp(x[known], y[known], seed, width=width, depth=2, steps=steps, lr=lr, n_classes=n_known)
        h_tr, h_cal, h_te = penultimate(net, x[known]), penultimate(net, xv[yv < n_known]), penultimate(net, xt)
        with torch.no_grad():
            correct_tr = net(x[known]).argmax(1) == y[known]
            z = net(xt).double()
        pred = z.argmax(1)
        q = similarity(h_te, pred, h_tr, y[known], correct_tr, k=k)
        d = distance_quantile(nearest_distance(h_te, h_tr), nearest_distance(h_cal, h_tr))
        p_soft, p_sdm = torch.softmax(z, 1).amax(1), sdm(z, q, d).amax(1)
    finally:
        torch.set_num_threads(threads)
    ok = (yt < n_known) & (pred == yt)
    ood = yt >= n_known
    out: dict[str, float] = {}
    for name, p in (("softmax", p_soft), ("sdm", p_sdm)):
        adm = p >= alpha
        out[f"precision_{name}"] = float(ok[adm].float().mean()) if adm.any() else float("nan")
        out[f"admit_known_{name}"] = float(adm[~ood].float().mean())
        out[f"admit_ood_{name}"] = float(adm[ood].float().mean())
    out["deficit"] = out["precision_softmax"] - out["precision_sdm"]
    return out
