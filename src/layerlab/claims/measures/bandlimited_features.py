r"""Bandlimited random tanh features fitted to ``sin(omega x)``: an error floor below the target's frequency.

Paper: Li, Sonoda, Cao, Wang & Liang, "How Powerful are Shallow Neural Networks with Bandlimited
Random Weights?", 2020 (ICML 2023), arXiv:2008.08427: when the hidden parameters of a random net
lie in a bounded domain the approximation error may not reach zero (a lower bound by ridgelet
analysis); a suitable range of random weights depends on the complexity of the target.

The measurement (``lens.theory.bandlimited_features``): on ``n`` grid points of ``[-pi, pi]``, the
network ``f = (1/m) sum_j c_j tanh(w_j x + b_j)`` with ``w_j ~ U[-B, B]``, ``b_j ~ U[-B pi, B pi]``
(one draw of the uniforms per seed, scaled by ``B``), output ``c`` fitted by ridge least squares
with penalty ``alpha ||c||^2 / m`` (a bounded ``||gamma||_{L^2}``). For each frequency in ``omegas``
and each width in ``widths``:

- ``low``: the relative error at ``B = low_ratio * omega`` (weights far below the frequency);
  ``floor_gap = 1 - min`` of these (the error stays near 1: ``floor_gap`` small), and
  ``floor_trend = `` the largest ratio ``err(widest) / err(narrowest)`` over ``omega`` (a plateau: ~1);
- ``high``: the relative error at ``B = high_ratio * omega``; ``high_error = max`` of these at the
  widest width (the error decays when ``B`` is of the order of ``omega``);
- ``bstar_<omega>``: the bandwidth where the error crosses ``threshold`` (bisection on ``log B``,
  widest width) and ``bstar_slope``, the slope of ``log B*`` on ``log omega``.
"""
from __future__ import annotations

import math

import torch

from ...errors import ConfigError
from ...lens.theory import bandlimited_features as bf
from ...registry import Paper
from . import register_measure


@register_measure("bandlimited_random_features", metric="high_error",
                  paper=Paper("How Powerful are Shallow Neural Networks with Bandlimited Random Weights?", 2020,
                              "2008.08427"))
def bandlimited_random_features(seed: int, *, omegas: tuple[float, ...] | list[float] = (4.0, 8.0, 16.0),
                                widths: tuple[int, ...] | list[int] = (250, 1000, 4000), n: int = 1024,
                                alpha: float = 1e-6, low_ratio: float = 0.125, high_ratio: float = 2.0,
                                threshold: float = 0.1, bisections: int = 6) -> dict[str, float]:
    oms, ms = [float(o) for o in omegas], sorted(int(m) for m in widths)
    if not oms or not ms or min(oms) <= 0 or ms[0] < 1 or n < 8 or not alpha > 0 or not 0 < low_ratio < high_ratio:
        raise ConfigError(f"bandlimited_random_features: need omegas > 0, widths >= 1, n >= 8, alpha > 0, "
                          f"0 < low_ratio < high_ratio; got omegas={oms}, widths={ms}, n={n}, alpha={alpha}, "
                          f"low_ratio={low_ratio}, high_ratio={high_ratio}")
    x = torch.linspace(-math.pi, math.pi, n, dtype=torch.float64)
    g = torch.Generator().manual_seed(seed)
    uw, ub = bf.draw_hidden(ms[-1], 1.0, generator=g)  # the widest draw; narrower nets take its first units

    def err(omega: float, band: float, m: int) -> float:
        y = torch.sin(omega * x)
        phi = bf.features(x, uw[:m] * band, ub[:m] * band)
        return bf.relative_error(phi, y, bf.ridge_fit(phi, y, alpha))

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out: dict[str, float] = {}
        low = {(o, m): err(o, low_ratio * o, m) for o in oms for m in ms}
        high = {o: err(o, high_ratio * o, ms[-1]) for o in oms}
        bstar = [bf.bandwidth_for_error(lambda b, o=o: err(o, b, ms[-1]), threshold, low_ratio * o,
                                        high_ratio * o, bisections) for o in oms]
    finally:
        torch.set_num_threads(threads)
    for (o, m), e in low.items():
        out[f"low_{o:g}_{m}"] = e
    for o, e in high.items():
        out[f"high_{o:g}"] = e
    for o, b in zip(oms, bstar):
        out[f"bstar_{o:g}"] = b
    out["floor_gap"] = 1 - min(low.values())
    out["floor_trend"] = max(low[(o, ms[-1])] / low[(o, ms[0])] for o in oms)
    out["high_error"] = max(high.values())
    lo = torch.log(torch.tensor(oms, dtype=torch.float64))
    lb = torch.log(torch.tensor(bstar, dtype=torch.float64))
    out["bstar_slope"] = (float(((lo - lo.mean()) * (lb - lb.mean())).sum() / ((lo - lo.mean()) ** 2).sum())
                          if len(oms) > 1 else math.nan)
    return out
