r"""WDiscOOD against the Mahalanobis and maximum-softmax scores: digits 0-4 in-distribution, 5-9 OOD.

Paper: Chen, Lin, Xu & Vela, "WDiscOOD: Out-of-Distribution Detection via Whitened Linear
Discriminant Analysis", ICCV 2023, arXiv:2303.07543 (abstract: whitened LDA splits the feature
space into a discriminative and a residual subspace; the score combines the deviation from the ID
data in both; "WDiscOOD demonstrates superior performance" over feature- and classifier-based
baselines on ImageNet-1k). ``lens.wdiscood`` implements the score, the baselines and AUROC.

The measurement trains a ReLU MLP ``64 -> width (x depth) -> 5`` (Adam, batch 64, one thread,
``seed``) on the digits 0-4 of layerlab's digits train split; fits WLDA and the class statistics
on the penultimate features (the last Linear's input) of that training data (``D = K - 1 = 4``
discriminants, ``α = 1e-3``, residual weight ``beta``); and scores ID = the val and test digits
0-4 against OOD = every digit 5-9 of all splits (never seen in training). It reports AUROC and
FPR at 95% TPR for WDiscOOD, Mahalanobis (tied covariance, penultimate features) and MSP (the
MLP's softmax), ``delta = AUROC_WDiscOOD - max(AUROC_Mahalanobis, AUROC_MSP)``, ``error = 1 - delta``,
and WDiscOOD's AUROC at ``beta = 5`` (the authors' ResNet setting) for reference.
"""
from __future__ import annotations

import torch

from ...errors import ConfigError
from ...lens import wdiscood as wd
from ...registry import Paper
from . import register_measure
from ._digits_mlp import accuracy, check, digits_splits, penultimate, train_mlp
from ._fit import one_thread


@register_measure("wdiscood_digits", metric="error",
                  paper=Paper("WDiscOOD: Out-of-Distribution Detection via Whitened Linear Discriminant Analysis",
                              2023, "2303.07543"))
def wdiscood_digits(seed: int, *, width: int = 128, depth: int = 2, steps: int = 1500, lr: float = 1e-3,
                    beta: float = 1.0) -> dict[str, float]:
    check(width, depth, steps, lr)
    if not beta >= 0:
        raise ConfigError(f"wdiscood_digits: beta must be >= 0, got {beta}")
    data = digits_splits()
    x, y = data["train"]
    keep = y < 5
    xe = torch.cat([data["val"][0], data["test"][0]])
    ye = torch.cat([data["val"][1], data["test"][1]])
    x_all = torch.cat([x, xe])
    y_all = torch.cat([y, ye])
    x_in, x_out = xe[ye < 5], x_all[y_all >= 5]
    with one_thread():
        net = train_mlp(x[keep], y[keep], seed, width=width, depth=depth, steps=steps, lr=lr, n_classes=5)
        h_train = penultimate(net, x[keep])
        h_in, h_out = penultimate(net, x_in), penultimate(net, x_out)
        with torch.no_grad():
            z_in, z_out = net(x_in), net(x_out)
        model = wd.fit_wlda(h_train, y[keep], n_discriminants=4)
        scores = {
            "wdiscood": (wd.wdiscood_score(model, h_in, beta=beta), wd.wdiscood_score(model, h_out, beta=beta)),
            "mahalanobis": (wd.mahalanobis_score(model, h_in), wd.mahalanobis_score(model, h_out)),
            "msp": (wd.msp_score(z_in), wd.msp_score(z_out)),
        }
        out: dict[str, float] = {}
        for name, (s_in, s_out) in scores.items():
            out[f"auroc_{name}"] = wd.auroc(s_in, s_out)
            out[f"fpr95_{name}"] = wd.fpr_at_tpr(s_in, s_out)
        out["auroc_wdiscood_beta5"] = wd.auroc(wd.wdiscood_score(model, h_in, beta=5.0),
                                               wd.wdiscood_score(model, h_out, beta=5.0))
        out["id_accuracy"] = accuracy(net, x_in, ye[ye < 5])
    delta = out["auroc_wdiscood"] - max(out["auroc_mahalanobis"], out["auroc_msp"])
    return {"error": 1.0 - delta, "delta": delta, **out}
