"""Weight initialization by a named rule for the network's activation (Kumar's rule and the classics).

Kumar, "On weight initialization in deep neural networks" (2017, arXiv:1704.08863): for an
activation g differentiable at 0, linearising g(x) ≈ g(0) + g'(0) x around 0, the weights of a
layer with fan-in N should be drawn with

    Var(w) = 1 / (N g'(0)² (1 + g(0)²))          (Sec. 3; sigmoid: σ_w ≈ 3.6/√N)

and for the ReLU, which is not differentiable at 0, Var(w) = 2/N (Sec. 4, He et al.'s value).
Beside it, the rules it is compared with:

    xavier (Glorot & Bengio 2010): Var(w) = 2 / (N + M)    (fan-out M)
    he     (He et al. 2015):       Var(w) = 2 / N
    lecun  (LeCun et al. 1998):    Var(w) = 1 / N

g(0) and g'(0) come from the activation itself (evaluated and differentiated by autograd at 0):
``tanh`` and ``sigmoid`` (torch's), ``relu``, or any registered activation (``gelu``, ``silu``,
...). Method ``init``: hook ``setup`` redraws, from the method's own generator, every
``nn.Linear`` weight of the model as N(0, Var(w)) and zeroes its bias; the activation is the
option ``activation`` or, by default, the one the model's MLP blocks name. This overrides the
blocks' own initialization, which is the point of the method.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..registry import Paper, register
from .base import Method, RunContext

PAPER = Paper("On weight initialization in deep neural networks", 2017, "1704.08863")
SCHEMES = ("kumar", "xavier", "he", "lecun")
_TORCH = {"tanh": torch.tanh, "sigmoid": torch.sigmoid, "relu": torch.relu}


def activation_function(name: str) -> Callable[[Tensor], Tensor]:
    """``tanh``, ``sigmoid``, ``relu`` or a registered activation (built at width 1), as a function."""
    if name in _TORCH:
        return _TORCH[name]
    from ..registry import build, names

    if name not in names("activation"):
        raise ConfigError(f"init: unknown activation {name!r}; use one of "
                          f"{', '.join(sorted(set(_TORCH) | set(names('activation'))))}")
    module = build("activation", name, 1).double()
    return lambda x: module(x.reshape(-1, 1)).reshape(x.shape)


def value_and_slope_at_zero(name: str) -> tuple[float, float]:
    """g(0) and g'(0), by autograd in float64."""
    with torch.enable_grad():
        x = torch.zeros((), dtype=torch.float64, requires_grad=True)
        y = activation_function(name)(x)
        (slope,) = torch.autograd.grad(y, x)
    return float(y.detach()), float(slope)


def weight_variance(scheme: str, fan_in: int, fan_out: int, activation: str = "tanh") -> float:
    """Var(w) of ``scheme`` for a layer with fan-in N = ``fan_in`` and fan-out M = ``fan_out``."""
    if fan_in < 1 or fan_out < 1:
        raise ConfigError(f"init: fan_in and fan_out must be >= 1, got {fan_in}, {fan_out}")
    if scheme == "xavier":
        return 2.0 / (fan_in + fan_out)
    if scheme == "he":
        return 2.0 / fan_in
    if scheme == "lecun":
        return 1.0 / fan_in
    if scheme != "kumar":
        raise ConfigError(f"init: unknown scheme {scheme!r}; use one of {', '.join(SCHEMES)}")
    if activation == "relu":
        return 2.0 / fan_in  # Kumar Sec. 4: not differentiable at 0
    g0, slope = value_and_slope_at_zero(activation)
    if slope == 0:
        raise ConfigError(f"init: Kumar's rule needs g'(0) != 0; activation {activation!r} has g'(0) = 0")
    return 1.0 / (fan_in * slope**2 * (1.0 + g0**2))


def model_activation(model: nn.Module) -> str | None:
    """The activation the model's blocks name (their ``activation`` attribute), if one and only one."""
    found = {m.activation for m in model.modules() if isinstance(getattr(m, "activation", None), str)}
    return found.pop() if len(found) == 1 else None


@torch.no_grad()
def reinitialize(model: nn.Module, scheme: str, activation: str, generator: torch.Generator) -> int:
    """Redraw every ``nn.Linear`` weight as N(0, Var(w)) from ``generator`` (bias zero); returns how many."""
    count = 0
    for m in model.modules():
        if isinstance(m, nn.Linear):
            std = math.sqrt(weight_variance(scheme, m.in_features, m.out_features, activation))
            w = torch.randn(m.weight.shape, generator=generator, device=generator.device, dtype=torch.float64)
            m.weight.copy_((std * w).to(m.weight.dtype))
            if m.bias is not None:
                m.bias.zero_()
            count += 1
    return count


@register("method", "init", paper=PAPER)
class Initializer(Method):
    """Initialization by a named rule (Kumar, "On weight initialization in deep neural networks",
    2017, arXiv:1704.08863): Var(w) = 1/(N g'(0)² (1 + g(0)²)) for g differentiable at 0, 2/N for
    ReLU (``kumar``); or ``xavier`` 2/(N+M), ``he`` 2/N, ``lecun`` 1/N. Hook: setup (every
    nn.Linear weight redrawn, biases zeroed).

    Options: ``scheme`` (default "kumar"), ``activation`` (default: the model's MLP activation).
    """

    def __init__(self, *, scheme: str = "kumar", activation: str | None = None) -> None:
        if scheme not in SCHEMES:
            raise ConfigError(f"init: scheme must be one of {', '.join(SCHEMES)}, got {scheme!r}")
        if activation is not None:
            if not isinstance(activation, str):
                raise ConfigError(f"init: activation must be a name (e.g. 'tanh'), got {activation!r}")
            activation_function(activation)  # unknown names fail now, not at setup
        self.scheme, self.activation = scheme, activation

    def setup(self, model: nn.Module, run: RunContext) -> None:
        act = self.activation or model_activation(model)
        if act is None:
            raise ConfigError("init: cannot tell the model's activation (none, or several, named by its blocks); "
                              "give it as the option `activation`, e.g. activation = 'tanh'")
        if reinitialize(model, self.scheme, act, self.generator) == 0:
            raise ConfigError("init: the model has no nn.Linear layer to initialize")
