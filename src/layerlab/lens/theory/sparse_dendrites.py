r"""False matches of a dendritic segment on sparse distributed representations.

Paper: Ahmad & Hawkins, "How do neurons operate on sparse distributed representations? A
mathematical theory of sparsity, neurons and active dendrites", 2016, arXiv:1601.00720 (Eq. 1 and
its derivation in Ahmad & Hawkins 2015).

Setting (the paper's notation). A population of ``n`` cells of which ``a`` are active in a
pattern (a binary vector with ``a`` ones, all such patterns equally likely); a dendritic segment
with ``s`` synapses onto a fixed set of ``s`` cells fires (an NMDA spike) when at least ``theta``
of them are active. The number of patterns that share exactly ``b`` active cells with the
segment is ``|Omega_n(a, b, s)| = C(s, b) C(n - s, a - b)``, so the probability that a random
pattern is falsely matched is

    P_false = sum_{b=theta}^{s} C(s, b) C(n - s, a - b) / C(n, a)

(the hypergeometric upper tail). ``false_match_probability`` computes it exactly with integers
(reference form); ``false_match_probability_fast`` sums the terms in log space (``lgamma``,
float64), for large ``n`` and vectors of thresholds; its relative error grows like
``n log(n) eps`` (1e-10 up to ``n ~ 10^4``, 1e-8 at ``n = 10^5``).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction

import torch
from torch import Tensor

from ...errors import ConfigError

__all__ = ["false_match_probability", "false_match_probability_fast", "overlap_set_size"]


def _check(n: int, a: int, s: int) -> None:
    if not all(isinstance(v, int) and v >= 0 for v in (n, a, s)) or a > n or s > n:
        raise ConfigError(f"need integers 0 <= a <= n and 0 <= s <= n (active cells a, synapses s, cells n); "
                          f"got n={n!r}, a={a!r}, s={s!r}")


def overlap_set_size(n: int, a: int, b: int, s: int) -> int:
    """``|Omega_n(a, b, s)| = C(s, b) C(n - s, a - b)``: patterns with exactly ``b`` of the segment's cells active."""
    _check(n, a, s)
    if b < 0 or b > s or a - b < 0 or a - b > n - s:
        return 0
    return math.comb(s, b) * math.comb(n - s, a - b)


def false_match_probability(n: int, a: int, s: int, theta: int) -> float:
    """``sum_{b >= theta} |Omega_n(a, b, s)| / C(n, a)``, exactly (rational arithmetic), as a float."""
    _check(n, a, s)
    if not isinstance(theta, int) or theta < 0:
        raise ConfigError(f"theta is the spike threshold, an integer >= 0; got {theta!r}")
    total = sum(overlap_set_size(n, a, b, s) for b in range(theta, s + 1))
    return float(Fraction(total, math.comb(n, a)))


def _log_comb(n: Tensor, k: Tensor) -> Tensor:
    return torch.lgamma(n + 1) - torch.lgamma(k + 1) - torch.lgamma(n - k + 1)


def false_match_probability_fast(n: int, a: int, s: int, theta: int | Sequence[int] | Tensor) -> Tensor:
    """The same sum in log space for one or several thresholds (float64 tensor of their shape)."""
    _check(n, a, s)
    th = torch.as_tensor(theta, dtype=torch.float64)
    if bool((th < 0).any()):
        raise ConfigError(f"theta is the spike threshold, >= 0; got {theta!r}")
    b = torch.arange(max(0, a - (n - s)), min(s, a) + 1, dtype=torch.float64)  # the feasible overlaps
    f = torch.tensor(float(n), dtype=torch.float64)
    log_terms = _log_comb(torch.tensor(float(s), dtype=torch.float64), b) + _log_comb(f - s, a - b) - _log_comb(f, torch.tensor(float(a), dtype=torch.float64))
    masked = torch.where(b >= th.reshape(-1, 1), log_terms, torch.tensor(-math.inf, dtype=torch.float64))
    return torch.logsumexp(masked, -1).exp().reshape(th.shape)
