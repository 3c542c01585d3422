r"""Directional derivatives by one stacked forward pass, for networks built of known parts.

For ``y = f(x)`` and a direction ``v`` the forward-mode derivative (Jacobian-vector product) is
``dy = J_f(x) v``; by the chain rule it is carried through a composition part by part,

    Linear  y = W x + b       dy = W dx
    ReLU    y = max(0, x)      dy = 1[x > 0] dx
    GELU    y = x Phi(x)       dy = (Phi(x) + x phi(x)) dx        (or the tanh form's derivative)
    RMSNorm y = g a / r,  r = sqrt(mean(a^2) + eps)
                               dy = g (da - a mean(a da) / r^2) / r
    LayerNorm  c = a - mean(a),  s = (mean(c^2) + eps)^(-1/2),  y = g c s + b
                               dy = g s (dc - c s^2 mean(c dc)),  dc = da - mean(da)

and through any code that only adds, scales or reshapes the outputs of its parts (a residual
sum ``x + f(x)``, a sequential container) unchanged, since such code is linear. So the network
runs once on the rows ``[x; dx]`` stacked along dim 0: every known part maps its stacked input
``[a; da]`` to ``[y; dy]`` (below), the code between the parts acts on both halves alike, and the
output is ``[f(x); J_f(x) dx]``. A Linear layer is then one matrix product for value and
derivative, and no autograd graph is built: about two forward passes, where the derivative by
two reverse passes (``regions._jvp``, the reference form) costs about four.

``stacked_supported(net)`` says whether every module of ``net`` is a part with a rule here or a
container whose forward is known to be linear in its parts (``LINEAR_CONTAINERS``); only then
does ``stacked_forward`` give the derivative. The rules replace the ``forward`` of the parts on
the instance for the duration of the call (on a copy the caller owns) and restore it after.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..models.classifier import Classifier
from ..models.sequence import Residual


def _halves(s: Tensor) -> tuple[Tensor, Tensor]:
    n = s.shape[0] // 2
    return s[:n], s[n:]


def _linear(m: nn.Linear, s: Tensor) -> Tensor:
    y = F.linear(s, m.weight)
    if m.bias is not None:
        y[: s.shape[0] // 2] += m.bias
    return y


def _relu(m: nn.Module, s: Tensor) -> Tensor:
    x, dx = _halves(s)
    return torch.cat([F.relu(x), torch.where(x > 0, dx, torch.zeros_like(dx))])


def _gelu(m: nn.Module, s: Tensor) -> Tensor:
    x, dx = _halves(s)
    approximate = getattr(m, "approximate", "none")
    return torch.cat([F.gelu(x, approximate=approximate),
                      torch.ops.aten.gelu_backward(dx, x, approximate=approximate)])


def _rmsnorm(m: nn.Module, s: Tensor) -> Tensor:
    a, da = _halves(s)
    ms = a.square().mean(dim=-1, keepdim=True)
    r = torch.sqrt(ms + m.eps)
    g = m.weight
    dy = (da - a * ((a * da).mean(dim=-1, keepdim=True) / r.square())) / r * g
    return torch.cat([a / r * g, dy])


def _layernorm(m: nn.Module, s: Tensor) -> Tensor:
    a, da = _halves(s)
    c, dc = a - a.mean(dim=-1, keepdim=True), da - da.mean(dim=-1, keepdim=True)
    inv = torch.rsqrt(c.square().mean(dim=-1, keepdim=True) + m.eps)
    y, dy = c * inv, inv * (dc - c * inv.square() * (c * dc).mean(dim=-1, keepdim=True))
    if m.weight is not None:
        y, dy = y * m.weight, dy * m.weight
    if m.bias is not None:
        y = y + m.bias
    return torch.cat([y, dy])


Rule = Callable[[nn.Module, Tensor], Tensor]
# Exact types only: a subclass may change forward. PyTorch's modules by type; layerlab's blocks by
# the (kind, name) the registry gave their class (the lens finds blocks by what they expose and
# never imports them), set on the class itself, not inherited.
RULES: dict[type[nn.Module], Rule] = {nn.Linear: _linear, nn.ReLU: _relu, nn.GELU: _gelu}
REGISTERED_RULES: dict[tuple[str, str], Rule] = {
    ("activation", "relu"): _relu, ("activation", "gelu"): _gelu,
    ("norm", "rmsnorm"): _rmsnorm, ("norm", "layernorm"): _layernorm,
}
# modules whose own forward code is linear in their parts' outputs and their input (Dropout and
# Identity in eval mode are the identity); Residual and Classifier run their shape checks, which
# hold for the stacked rows too; so does the registered channel "mlp"
LINEAR_CONTAINERS: tuple[type[nn.Module], ...] = (nn.Sequential, nn.ModuleList, nn.Identity, nn.Dropout, Residual,
                                                  Classifier)
REGISTERED_CONTAINERS: tuple[tuple[str, str], ...] = (("channel", "mlp"),)


def _registered_as(cls: type) -> tuple[str, str] | None:
    if "registry_name" not in vars(cls):
        return None
    return cls.registry_kind, cls.registry_name


def rule_for(m: nn.Module) -> Rule | None:
    """The (value, derivative) rule of module ``m``, or None."""
    return RULES.get(type(m)) or REGISTERED_RULES.get(_registered_as(type(m)))


def is_linear_container(m: nn.Module) -> bool:
    """Whether ``m``'s own code is linear in its parts' outputs and its input (Dropout: in eval mode)."""
    if isinstance(m, nn.Dropout) and m.training:
        return False
    return type(m) in LINEAR_CONTAINERS or _registered_as(type(m)) in REGISTERED_CONTAINERS


def stacked_supported(net: nn.Module) -> bool:
    """Whether ``stacked_forward`` computes ``J v`` for ``net``: every module a part with a rule
    or a linear container (Dropout in eval mode)."""
    return all(rule_for(m) is not None or is_linear_container(m) for m in net.modules())


@contextlib.contextmanager
def stacked(net: nn.Module) -> Iterator[None]:
    """Inside, ``net(cat([x, v]))`` returns ``cat([f(x), J_f(x) v])`` (needs ``stacked_supported``)."""
    patched = [m for m in net.modules() if rule_for(m) is not None]
    for m in patched:
        rule = rule_for(m)
        m.forward = (lambda mod, r: lambda s: r(mod, s))(m, rule)
    try:
        yield
    finally:
        for m in patched:
            del m.forward


def stacked_forward(net: nn.Module, x: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
    """``(f(x), J_f(x) v)`` by one forward pass on the stacked rows (module docstring)."""
    with stacked(net), torch.no_grad():
        out = net(torch.cat([x, v]))
    return _halves(out)
