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
from torch import nn

from ...errors import ConfigError
from ...lens import diffroar as dr
from ...registry import Paper
from ...tasks import build_task
from . import register_measure
from ._fit import one_thread


def _train(x: torch.Tensor, y: torch.Tensor, seed: int, width: int, steps: int, lr: float,
           eps: float = 0.0, pgd_steps: int = 0) -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = nn.Sequential(nn.Linear(x.shape[1], width), nn.ReLU(), nn.Linear(width, 10))
        opt = torch.optim.Adam(net.parameters(), lr=lr)
        gen = torch.Generator().manual_seed(seed)
        for _ in range(steps):
            idx = torch.randint(0, len(x), (64,), generator=gen)
            xb, yb = x[idx], y[idx]
            if eps > 0:  # PGD in the l_inf ball around the batch
                delta = torch.zeros_like(xb)
                for _ in range(pgd_steps):
                    delta.requires_grad_(True)
                    (g,) = torch.autograd.grad(nn.functional.cross_entropy(net(xb + delta), yb), delta)
                    delta = (delta.detach() + 2.5 * eps / pgd_steps * g.sign()).clamp(-eps, eps)
                xb = xb + delta
            opt.zero_grad()
            nn.functional.cross_entropy(net(xb), yb).backward()
            opt.step()
    return net


def _accuracy(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((net(x).argmax(1) == y).float().mean())


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
        return _accuracy(_train(a, b, seed, width, steps, lr), c, d)

    out: dict[str, float] = {}
    with one_thread():
        for name, e in (("standard", 0.0), ("robust", eps)):
            net = _train(xtr, ytr, seed, width, steps, lr, e, pgd_steps)
            out[f"acc_{name}"] = _accuracy(net, xte, yte)
            res = dr.diffroar(dr.input_gradients(net, xtr, ytr), dr.input_gradients(net, xte, yte),
                              xtr, ytr, xte, yte, k, retrain)
            out[f"diffroar_{name}"], out[f"top_{name}"], out[f"bottom_{name}"] = res["diffroar"], res["top"], res["bottom"]
    delta = out["diffroar_robust"] - out["diffroar_standard"]
    return {"error": 1.0 - delta, "delta": delta, **out}
