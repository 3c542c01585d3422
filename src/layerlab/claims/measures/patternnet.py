r"""Signal-estimator quality ρ of patterns against the filter (gradient) estimator on a digits MLP.

Paper: Kindermans et al., "Learning how to explain neural networks: PatternNet and
PatternAttribution", ICLR 2018, arXiv:1705.05598: DeConvNet, Guided BackProp and LRP reduce, for a
linear neuron, to the filter-based signal estimator ``S_w(x) = w w^T x / ||w||²``, which is not the
signal; the learned patterns (``S_a``, and the two-component ``S_{a+-}`` for ReLUs) are better
signal estimators by the criterion ``ρ(S) = 1 - max_v corr(w^T x, v^T (x - S(x)))``
(``lens.patterns``), and produce improved explanations for deep networks (abstract).

The measurement trains a ReLU MLP ``64 -> width (x depth) -> 10`` on layerlab's digits train split
(Adam, batch 64, one thread, ``seed``), fits the patterns of every Linear layer on the inputs that
layer sees for the training split, and measures ρ of each neuron with ``v`` fitted by least
squares on the training split and the correlation on the val and test splits (held out). Per
Linear layer followed by a ReLU it reports the mean ρ over neurons active on some and inactive on
other training inputs (``rho_filter.<l>``, ``rho_linear.<l>``, ``rho_two_component.<l>``); the
statistic is ``delta`` = mean over those layers of ``ρ(S_{a+-}) - ρ(S_w)``, ``error = 1 - delta``.
"""
from __future__ import annotations

import torch
from torch import nn

from ...lens import patterns as pt
from ...registry import Paper
from . import register_measure
from ._digits_mlp import check, digits_splits, train_mlp
from ._fit import one_thread


def _inputs(net: nn.Sequential, x: torch.Tensor) -> list[torch.Tensor]:
    """The input of every Linear layer (float64)."""
    out, h = [], x.double()
    with torch.no_grad():
        for m in net:
            if isinstance(m, nn.Linear):
                out.append(h)
            h = m.double()(h) if isinstance(m, nn.Linear) else m(h)
    return out


@register_measure("pattern_signal_quality", metric="error",
                  paper=Paper("Learning how to explain neural networks: PatternNet and PatternAttribution", 2017,
                              "1705.05598"))
def pattern_signal_quality(seed: int, *, width: int = 64, depth: int = 2, steps: int = 1500,
                           lr: float = 1e-3) -> dict[str, float]:
    check(width, depth, steps, lr)
    data = digits_splits()
    x, y = data["train"]
    xe = torch.cat([data["val"][0], data["test"][0]])
    out: dict[str, float] = {}
    deltas = []
    with one_thread():
        net = train_mlp(x, y, seed, width=width, depth=depth, steps=steps, lr=lr).double()
        fit_in, eval_in = _inputs(net, x), _inputs(net, xe)
        linears = [m for m in net if isinstance(m, nn.Linear)]
        for l, (m, h, he) in enumerate(zip(linears[:-1], fit_in, eval_in)):  # every Linear but the last feeds a ReLU
            w, b = m.weight.detach(), m.bias.detach()
            on = (h @ w.T + b) > 0
            live = on.any(0) & ~on.all(0)
            a = pt.linear_patterns(h, w)
            a2 = pt.two_component_patterns(h, w, b)
            rho = {"filter": pt.signal_quality(h, w, "filter", x_eval=he),
                   "linear": pt.signal_quality(h, w, "linear", a, x_eval=he),
                   "two_component": pt.signal_quality(h, w, "two_component", a2, bias=b, x_eval=he)}
            for k, v in rho.items():
                out[f"rho_{k}.{l}"] = float(v[live].mean())
            out[f"live.{l}"] = float(live.sum())
            deltas.append(out[f"rho_two_component.{l}"] - out[f"rho_filter.{l}"])
        with torch.no_grad():
            out["test_accuracy"] = float((net(data["test"][0].double()).argmax(1) == data["test"][1]).double().mean())
    delta = sum(deltas) / len(deltas)
    return {"error": 1.0 - delta, "delta": delta, **out}
