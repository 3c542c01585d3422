r"""DiffROAR of input gradients: standard against adversarially trained MLPs on digits.

Paper: Shah, Jain & Netrapalli, "Do Input Gradients Highlight Discriminative Features?", NeurIPS
2021, arXiv:2102.12781 (abstract: "input gradients of standard models (i.e., trained on original
data) may grossly violate (A), whereas (ii) input gradients of adversarially robust models satisfy
(A) reasonably well"). ``lens.diffroar``: DiffROAR(k) = accuracy after retraining on each
example's top-k coordinates by attribution minus that on its bottom-k coordinates.

The measurement trains two ReLU MLPs ``64 -> width -> 10`` on layerlab's `digits` train split
(Adam, ``lr``, batch 64, ``steps``; one thread; weights drawn under ``seed``): a standard one, and
a robust one by PGD adversarial training in the ``l_inf`` ball of radius ``eps`` (``pgd_steps``
steps of size ``2.5 eps / pgd_steps``, inputs in the task's standardized units). The attributions
are ``|∂ logit_y / ∂x|`` of each model on the train and test examples; masked coordinates are set
to 0 (the feature mean); every retraining uses the standard recipe from the same seed. It reports
``diffroar_standard``, ``diffroar_robust`` (at ``k``), ``delta = robust - standard``, the models'
clean test accuracies, and ``error = 1 - delta``.
"""
from __future__ import annotations

import torch

from ...errors import ConfigError
from ...lens import diffroar as dr
from ...registry import Paper
from ...tasks import build_task
from . import register_measure
from ._fit import accuracy, one_thread, train_relu_mlp





@register_measure("diffroar_robust_vs_standard", metric="error",
                  paper=Paper("Do Input Gradients Highlight Discriminative Features?", 2021, "2102.12781"))
def diffroar_robust_vs_standard(seed: int, *, width: int = 128, steps: int = 400, lr: float = 1e-3,
                                eps: float = 0.3, pgd_steps: int = 5, k: float = 0.25) -> dict[str, float]:
    if width < 1 or steps < 1 or not lr > 0 or not eps > 0 or pgd_steps < 1 or not 0 < k < 1:
        raise ConfigError(f"diffroar_robust_vs_standard: need width, steps, pgd_steps >= 1, lr > 0, eps > 0, "
                          f"0 < k < 1; got {width}, {steps}, {pgd_steps}, {lr}, {eps}, {k}")
    task = build_task("digits")
    train, test = task.train_batch(0, torch.Generator()), task.eval_set("test")
    xtr, ytr, xte, yte = train.inputs.float(), train.targets, test.inputs.float(), test.targets

    def retrain(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, d: torch.Tensor) -> float:
        return accuracy(train_relu_mlp(a, b, (width,), seed, steps, lr, n_out=10), c, d)

    out: dict[str, float] = {}
    with one_thread():
        for name, e in (("standard", 0.0), ("robust", eps)):
            net = train_relu_mlp(xtr, ytr, (width,), seed, steps, lr, n_out=10, eps=e, pgd_steps=pgd_steps)
            out[f"acc_{name}"] = accuracy(net, xte, yte)
            res = dr.diffroar(dr.input_gradients(net, xtr, ytr), dr.input_gradients(net, xte, yte),
                              xtr, ytr, xte, yte, k, retrain)
            out[f"diffroar_{name}"], out[f"top_{name}"], out[f"bottom_{name}"] = res["diffroar"], res["top"], res["bottom"]
    delta = out["diffroar_robust"] - out["diffroar_standard"]
    return {"error": 1.0 - delta, "delta": delta, **out}
