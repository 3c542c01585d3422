r"""Determinism of activation codes: a trained ReLU network gives (almost) every training example
its own linear region.

Paper: He, Lei, Ji & Tao, "Neural networks behave as hash encoders: An empirical study", 2021,
arXiv:2101.05490 (abstract; Sec. 3-4). The input space of a ReLU network is partitioned into linear
regions, one per activation pattern ``c(x) = [1{z_u(x) > 0}]_u`` over all hidden units ``u``.
*Determinism*: in a well-trained, sufficiently expressive network "almost every linear region
contains at most one training example", so the redundancy ratio

    r = (N - #{distinct c(x_i)}) / N

over the ``N`` training examples is close to 0 (the paper's under-expressive regime, small models,
has ``r`` well above 0).

The measurement trains a ReLU MLP (``depth`` hidden layers of ``width`` units) on the training split
of scikit-learn's digits (``tasks.digits``, 1,257 images) with Adam at ``lr`` for ``steps`` full-batch
steps (float32), then counts the distinct activation patterns of the training inputs with
``lens.dynamics.activation_patterns``. Identical input images must share a pattern, so ``N`` counts
distinct training inputs. ``error = r``; also recorded: ``r`` at initialization, the training and
test accuracy, and ``r`` of a narrow network (``narrow_width``) trained the same way (the paper's
under-expressive contrast).
"""
from __future__ import annotations

import torch
from torch import nn

from ...errors import ConfigError
from ...lens import dynamics, hash_codes
from ...registry import Paper
from ...tasks.digits import Digits, _load_digits
from . import register_measure
from ._fit import accuracy, fit_full_batch


def relu_mlp(d_in: int, width: int, depth: int, n_out: int, generator: torch.Generator) -> nn.Sequential:
    """``depth`` Linear+ReLU layers of ``width`` then a linear readout; Kaiming-uniform weights drawn
    from ``generator`` (PyTorch's default scheme, without the global RNG), zero biases."""
    layers: list[nn.Module] = []
    d = d_in
    for _ in range(depth):
        layers += [nn.Linear(d, width), nn.ReLU()]
        d = width
    layers.append(nn.Linear(d, n_out))
    net = nn.Sequential(*layers)
    with torch.no_grad():
        for m in net:
            if isinstance(m, nn.Linear):
                bound = (6.0 / m.in_features) ** 0.5  # Kaiming uniform, gain sqrt(2)
                m.weight.copy_((torch.rand(m.weight.shape, generator=generator) * 2 - 1) * bound)
                m.bias.zero_()
    return net


def redundancy_ratio(model: nn.Module, x: torch.Tensor) -> float:
    """``(N - #distinct activation patterns) / N`` over the distinct rows of ``x``."""
    xu = torch.unique(x, dim=0)
    return 1.0 - dynamics.activation_patterns(model, xu) / xu.shape[0]


@register_measure("hash_encoder_determinism", metric="error",
                  paper=Paper("Neural networks behave as hash encoders: An empirical study", 2021, "2101.05490"))
def hash_encoder_determinism(seed: int, *, width: int = 128, depth: int = 2, narrow_width: int = 4,
                             lr: float = 1e-3, steps: int = 300) -> dict[str, float]:
    if width < 1 or depth < 1 or narrow_width < 1 or not lr > 0 or steps < 0:
        raise ConfigError("hash_encoder_determinism: need width, depth, narrow_width >= 1, lr > 0, steps >= 0; "
                          f"got {width}, {depth}, {narrow_width}, {lr}, {steps}")
    task = Digits(data_seed=seed)
    xs, ys = _load_digits()
    tr, te = task.split_indices("train"), task.split_indices("test")
    x, y, xt, yt = xs[tr], ys[tr], xs[te], ys[te]
    gen = torch.Generator().manual_seed(seed)
    out: dict[str, float] = {}
    for tag, w in (("", width), ("narrow_", narrow_width)):
        model = relu_mlp(64, w, depth, 10, gen)
        out[f"{tag}error_init"] = redundancy_ratio(model, x)
        fit_full_batch(model, x, y, lr, steps)
        out[f"{tag}error"] = redundancy_ratio(model, x)
        out[f"{tag}train_accuracy"] = accuracy(model, x, y)
        out[f"{tag}test_accuracy"] = accuracy(model, xt, yt)
    out["distinct_inputs"] = float(torch.unique(x, dim=0).shape[0])
    return out


@register_measure("hash_encoder_categorization", metric="error",
                  paper=Paper("Neural networks behave as hash encoders: An empirical study", 2021, "2101.05490"))
def hash_encoder_categorization(seed: int, *, width: int = 128, depth: int = 2, lr: float = 1e-3, steps: int = 300,
                                k: int = 1, lam: float = 1e-3) -> dict[str, float]:
    """Categorization (encoding property 2): K-NN (``k``, Hamming), K-Means (10 clusters, labelled
    by majority) and logistic regression (L2 ``lam``) fitted on the neural codes of the training
    split, scored on the test split (``lens.hash_codes.code_categorization``), for the network of
    ``hash_encoder_determinism`` trained the same way. ``error = 1 - min`` of the three test
    accuracies; also recorded: each accuracy, the network's, and the redundancy ratio."""
    if width < 1 or depth < 1 or not lr > 0 or steps < 0 or k < 1 or not lam > 0:
        raise ConfigError("hash_encoder_categorization: need width, depth, k >= 1, lr > 0, lam > 0, steps >= 0; "
                          f"got {width}, {depth}, {k}, {lr}, {lam}, {steps}")
    task = Digits(data_seed=seed)
    xs, ys = _load_digits()
    tr, te = task.split_indices("train"), task.split_indices("test")
    x, y, xt, yt = xs[tr], ys[tr], xs[te], ys[te]
    gen = torch.Generator().manual_seed(seed)
    model = relu_mlp(64, width, depth, 10, gen)
    fit_full_batch(model, x, y, lr, steps)
    out = hash_codes.code_categorization(model, (x, y), (xt, yt), k=k, lam=lam, generator=gen)
    out["network_train_accuracy"] = accuracy(model, x, y)
    out["network_test_accuracy"] = accuracy(model, xt, yt)
    out["error"] = 1.0 - min(out["knn_test"], out["kmeans_test"], out["logistic_test"])
    return out
