r"""The operator backbone: DeepONet (branch and trunk nets) and the paper's fully-connected baseline.

Paper: Lu, Jin, Pang, Zhang & Karniadakis, "DeepONet: Learning nonlinear operators for identifying
differential equations based on the universal approximation theorem of operators", 2019 (Nature
Machine Intelligence 2021), arXiv:1910.03193, Section 3 (unstacked DeepONet, Fig. 1d).

An operator G maps an input function u, seen at m fixed sensors x_1..x_m, to an output function
G(u), asked for at points y. The unstacked DeepONet (Eq. 2's form with one branch net)::

    G(u)(y) ≈ Σ_{k=1}^{p} b_k(u(x_1), ..., u(x_m)) · t_k(y) + b_0

with the branch net b: R^m -> R^p (an FNN, linear last layer) and the trunk net t: R^d -> R^p (an
FNN whose last layer also applies the activation, as the paper says of its trunk), and a learned
bias b_0. The baseline the paper compares with is a fully-connected network on the concatenated
input [u(x_1), ..., u(x_m), y] -> G(u)(y) ("fnn").

How a ModelSpec reads on this backbone (``backbone = "operator"``)::

    mixer          "deeponet" or "fnn" (or "mgno": ``layerlab.models.mgno``)
    mixer_options  p (32: the number of basis functions t_k; deeponet only), activation ("relu",
                   "tanh" or "gelu"; default "relu")
    d_model        the width of every hidden layer; n_layers: hidden layers of each net

The task (``input_kind = "function"``) gives ``sensors`` (m,) and ``queries`` (P, d_y) (a one-column
tensor for functions of one variable); the model holds the queries as a buffer and maps inputs
(B, m) to outputs (B, P). Initialization: Glorot normal weights, zero biases (DeepXDE's default,
which the paper's code uses); b_0 = 0.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..errors import ConfigError, ShapeError, unknown_name

OPERATOR_MIXERS = ("deeponet", "fnn")
OPERATOR_OPTIONS: dict[str, Any] = {"p": 32, "activation": "relu"}
ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}


def operator_options(mixer: str, options: dict[str, Any]) -> dict[str, Any]:
    """The operator backbone's options with their defaults, checked strictly."""
    if mixer not in OPERATOR_MIXERS:
        raise unknown_name("operator network (mixer of backbone 'operator')", mixer, OPERATOR_MIXERS)
    unknown = sorted(set(options) - set(OPERATOR_OPTIONS))
    if unknown:
        raise ConfigError(f"backbone 'operator': unknown mixer_options {unknown}; valid: {sorted(OPERATOR_OPTIONS)}")
    if mixer == "fnn" and "p" in options:
        raise ConfigError("backbone 'operator': mixer = 'fnn' has no basis size p (DeepONet's); remove it")
    opts = {**OPERATOR_OPTIONS, **options}
    if isinstance(opts["p"], bool) or not isinstance(opts["p"], int) or opts["p"] < 1:
        raise ConfigError(f"backbone 'operator': mixer_options.p must be an integer >= 1, got {opts['p']!r}")
    if opts["activation"] not in ACTIVATIONS:
        raise unknown_name("operator activation", str(opts["activation"]), ACTIVATIONS)
    return opts


def fnn(widths: list[int], activation: str, *, last_activation: bool) -> nn.Sequential:
    """A fully-connected net with the given layer widths, Glorot-normal weights, zero biases."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        linear = nn.Linear(a, b)
        nn.init.xavier_normal_(linear.weight)
        nn.init.zeros_(linear.bias)
        layers.append(linear)
        if i < len(widths) - 2 or last_activation:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


def _check_queries(queries: Tensor) -> Tensor:
    q = torch.as_tensor(queries)
    if not q.is_floating_point():
        q = q.to(torch.get_default_dtype())  # float queries keep their precision until the model is cast
    if q.dim() == 1:
        q = q[:, None]
    if q.dim() != 2 or q.shape[0] < 1:
        raise ShapeError(f"operator backbone: queries must be (P, d_y) points, got shape {tuple(q.shape)}")
    return q


class DeepONet(nn.Module):
    """Unstacked DeepONet: G(u)(y_j) = Σ_k b_k(u) t_k(y_j) + b_0 at the P query points.

    ``sensors`` = m (input width), ``queries`` (P, d_y); branch [m, width × depth, p] (linear
    last layer), trunk [d_y, width × depth, p] (activation on its last layer). (B, m) -> (B, P).
    """

    def __init__(self, sensors: int, queries: Tensor, *, width: int, depth: int, p: int = 32,
                 activation: str = "relu") -> None:
        super().__init__()
        if sensors < 1 or width < 1 or depth < 0 or p < 1:
            raise ConfigError(f"DeepONet needs sensors, width, p >= 1 and depth >= 0; got {sensors}, {width}, "
                              f"{p}, {depth}")
        q = _check_queries(queries)
        self.sensors, self.p = int(sensors), int(p)
        self.register_buffer("queries", q)
        self.branch = fnn([sensors] + [width] * depth + [p], activation, last_activation=False)
        self.trunk = fnn([q.shape[1]] + [width] * depth + [p], activation, last_activation=True)
        self.b0 = nn.Parameter(torch.zeros(()))

    def forward(self, u: Tensor) -> Tensor:
        if u.dim() != 2 or u.shape[1] != self.sensors:
            raise ShapeError(f"DeepONet expects input functions of shape (B, m) with m = sensors = {self.sensors}; "
                             f"got {tuple(u.shape)}")
        b = self.branch(u)  # (B, p)
        t = self.trunk(self.queries.to(u.dtype))  # (P, p)
        return b @ t.T + self.b0


class OperatorFNN(nn.Module):
    """The paper's baseline: one FNN on [u(x_1), ..., u(x_m), y] -> G(u)(y), at each query point."""

    def __init__(self, sensors: int, queries: Tensor, *, width: int, depth: int, activation: str = "relu") -> None:
        super().__init__()
        if sensors < 1 or width < 1 or depth < 0:
            raise ConfigError(f"OperatorFNN needs sensors, width >= 1 and depth >= 0; got {sensors}, {width}, {depth}")
        q = _check_queries(queries)
        self.sensors = int(sensors)
        self.register_buffer("queries", q)
        self.net = fnn([sensors + q.shape[1]] + [width] * depth + [1], activation, last_activation=False)

    def forward(self, u: Tensor) -> Tensor:
        if u.dim() != 2 or u.shape[1] != self.sensors:
            raise ShapeError(f"OperatorFNN expects input functions of shape (B, m) with m = sensors = "
                             f"{self.sensors}; got {tuple(u.shape)}")
        B, P = u.shape[0], self.queries.shape[0]
        y = self.queries.to(u.dtype)
        pairs = torch.cat([u[:, None, :].expand(B, P, -1), y[None].expand(B, -1, -1)], dim=-1)
        return self.net(pairs).squeeze(-1)


def build_operator(spec: Any, *, sensors: int, queries: Tensor) -> nn.Module:
    """The operator network ``spec`` names (``spec.mixer``), sized by ``d_model`` and ``n_layers``."""
    opts = operator_options(spec.mixer, spec.mixer_options)
    if spec.mixer == "deeponet":
        return DeepONet(sensors, queries, width=spec.d_model, depth=spec.n_layers, p=opts["p"],
                        activation=opts["activation"])
    return OperatorFNN(sensors, queries, width=spec.d_model, depth=spec.n_layers, activation=opts["activation"])


__all__ = ["OPERATOR_MIXERS", "DeepONet", "OperatorFNN", "build_operator", "operator_options"]
