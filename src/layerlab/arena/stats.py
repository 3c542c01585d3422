"""Confidence intervals over seeds."""
from __future__ import annotations

import math
from collections.abc import Sequence

# Two-sided 97.5% quantiles of Student's t for 1..30 degrees of freedom.
_T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
         2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
         2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042]


def t_quantile_975(df: int) -> float:
    if df < 1:
        return math.nan
    if df <= len(_T975):
        return _T975[df - 1]
    return 1.959964 + 2.4 / df  # within 0.5% of the exact value for df > 30


def mean_ci(values: Sequence[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95% confidence interval (Student t; NaN half-width for n < 2)."""
    n = len(values)
    if n == 0:
        return math.nan, math.nan
    mean = sum(values) / n
    if n < 2:
        return mean, math.nan
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, t_quantile_975(n - 1) * math.sqrt(var / n)


def _t_quantile_975_real(df: float) -> float:
    """t quantile at a real-valued df (Welch): the table's value at floor(df), which is at least
    the exact one (the quantile falls as df grows), so the interval errs on the wide side."""
    if not df >= 1:  # also NaN
        return math.nan
    return t_quantile_975(int(math.floor(df)))


def paired_difference_ci(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Mean of ``a_i - b_i`` and the half-width of its 95% CI (Student t, n - 1 df), for values
    paired by position (the same seed). NaN half-width for fewer than 2 pairs."""
    if len(a) != len(b):
        raise ValueError(f"paired difference needs equally many values, got {len(a)} and {len(b)}")
    return mean_ci([x - y for x, y in zip(a, b)])


def welch_difference_ci(a: Sequence[float], b: Sequence[float]) -> tuple[float, float, float]:
    """Mean of ``a`` minus mean of ``b``, the half-width of its 95% CI and the Welch-Satterthwaite
    degrees of freedom, for two independent samples of possibly unequal variance::

        d = mean(a) - mean(b),  se^2 = s_a^2/n_a + s_b^2/n_b,
        df = se^4 / ((s_a^2/n_a)^2/(n_a-1) + (s_b^2/n_b)^2/(n_b-1)),  half = t_{0.975, floor(df)} se

    NaN half-width when either sample has fewer than 2 values. When both variances are 0 the
    half-width is 0 (df is then undefined and reported as NaN)."""
    na, nb = len(a), len(b)
    if na == 0 or nb == 0:
        return math.nan, math.nan, math.nan
    ma, mb = sum(a) / na, sum(b) / nb
    if na < 2 or nb < 2:
        return ma - mb, math.nan, math.nan
    va = sum((x - ma) ** 2 for x in a) / (na - 1) / na
    vb = sum((x - mb) ** 2 for x in b) / (nb - 1) / nb
    se2 = va + vb
    if se2 == 0:
        return ma - mb, 0.0, math.nan
    df = se2**2 / (va**2 / (na - 1) + vb**2 / (nb - 1))
    return ma - mb, _t_quantile_975_real(df) * math.sqrt(se2), df
