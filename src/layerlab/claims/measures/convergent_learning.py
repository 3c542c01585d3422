r"""Convergent learning, one-to-many: how much better a few units of one network predict a unit of
another than its single best match does.

Paper: Li, Yosinski, Clune, Lipson & Hopcroft, "Convergent Learning: Do different neural networks
learn the same representations?", ICLR 2016, arXiv:1511.07543 (abstract, finding (3); Sec. 4). Two
networks trained from different initialisations; each unit ``b_j`` of network 2 is predicted from
all units of network 1 by the lasso ``min_w 1/(2N) ||b_j - A w||^2 + lam ||w||_1`` on standardised
activations (``lens.convergent.sparse_prediction``), against the one-to-one matching, whose error is
``1 - rho^2`` of the matched pair. The paper reads a large drop in error from a few units as codes
"slightly, but not fully, distributed".

The measurement trains two ReLU MLPs (``depth`` hidden layers of ``width``; ``hash_encoder.relu_mlp``)
on digits' training split from seeds ``2 seed`` and ``2 seed + 1`` (full-batch Adam, ``lr``,
``steps``), takes the post-ReLU activations of hidden layer ``layer`` on the test split, and reports
``error = error_ratio`` (mean lasso error / mean one-to-one error) at ``lam``, with the mean number of
units used per unit and the ratio at ``lam / 5`` and ``5 lam`` for context.
"""
from __future__ import annotations

import torch

from ...errors import ConfigError
from ...lens import convergent, dynamics
from ...registry import Paper
from ...tasks.digits import Digits, _load_digits
from . import register_measure
from ._fit import fit_full_batch, one_thread
from .hash_encoder import relu_mlp


@register_measure("convergent_sparse_prediction", metric="error",
                  paper=Paper("Convergent Learning: Do different neural networks learn the same representations?", 2015,
                              "1511.07543"))
def convergent_sparse_prediction(seed: int, *, width: int = 64, depth: int = 2, layer: int = 0, lr: float = 1e-3,
                                 steps: int = 300, lam: float = 0.05) -> dict[str, float]:
    if width < 1 or depth < 1 or not 0 <= layer < depth or not lr > 0 or steps < 0 or not lam > 0:
        raise ConfigError("convergent_sparse_prediction: need width, depth >= 1, 0 <= layer < depth, lr > 0, "
                          f"steps >= 0, lam > 0; got {width}, {depth}, {layer}, {lr}, {steps}, {lam}")
    task = Digits(data_seed=seed)
    xs, ys = _load_digits()
    tr, te = task.split_indices("train"), task.split_indices("test")
    out: dict[str, float] = {}
    acts = []
    with one_thread():
        for k in (0, 1):
            model = relu_mlp(64, width, depth, 10, torch.Generator().manual_seed(2 * seed + k))
            fit_full_batch(model, xs[tr], ys[tr], lr, steps)
            with torch.no_grad():
                out[f"test_accuracy_{k}"] = float((model(xs[te]).argmax(-1) == ys[te]).float().mean())
            name = str(2 * layer + 1)  # the ReLU of hidden layer `layer` in Linear, ReLU, ..., Linear
            acts.append(dynamics.capture(model, xs[te], [name], kind="output")[name])
        a, b = acts
        if b.abs().sum(0).gt(0).sum() > a.abs().sum(0).gt(0).sum():
            a, b = b, a  # predict the network with fewer live units from the other
        for tag, l in (("", lam), ("_small_lam", lam / 5), ("_large_lam", lam * 5)):
            sp = convergent.sparse_prediction(a, b, l, tol=1e-9)
            out[f"error{tag}"] = sp.error_ratio
            out[f"nonzero{tag}"] = float(sp.nonzero.double().mean())
            if not tag:
                out["one_to_one_mse"] = float(sp.one_to_one.mean())
                out["sparse_mse"] = float(sp.mse.mean())
                out["units"] = float(sp.mse.numel())
    return out
