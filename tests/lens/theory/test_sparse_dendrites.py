"""Ahmad & Hawkins (2016, arXiv:1601.00720) Eq. 1 against enumeration, the paper's numbers and its fast form."""
from __future__ import annotations

import itertools

import pytest
import torch

from layerlab.errors import ConfigError
from layerlab.lens.theory.sparse_dendrites import (false_match_probability, false_match_probability_fast,
                                                   overlap_set_size)


def test_enumeration_of_every_pattern():
    n, a, s = 10, 4, 5
    segment = set(range(s))
    patterns = list(itertools.combinations(range(n), a))
    for b in range(0, 6):
        assert overlap_set_size(n, a, b, s) == sum(len(segment & set(p)) == b for p in patterns)
    for theta in range(0, 6):
        brute = sum(len(segment & set(p)) >= theta for p in patterns) / len(patterns)
        assert false_match_probability(n, a, s, theta) == pytest.approx(brute, rel=1e-15)


def test_numbers_quoted_with_the_paper():
    # n = 10000, a = 300, s = 24, theta = 12 and Table 1B (n = 100000, a = 2000, theta = s = 6)
    assert false_match_probability(10000, 300, 24, 12) == pytest.approx(8.37584522709849e-13, rel=1e-12)
    assert false_match_probability(100000, 2000, 6, 6) == pytest.approx(6.35308872941916e-11, rel=1e-12)
    assert false_match_probability(100000, 2000, 20, 10) == pytest.approx(1.5419276725872e-12, rel=1e-12)


def test_fast_form_equals_exact_form():
    # lgamma(n) ~ n log n carries an absolute error ~ n log n * eps: relative 1e-10 up to n ~ 1e4
    for n, a, s, rtol in ((256, 16, 24, 1e-10), (2048, 40, 20, 1e-10), (100000, 2000, 12, 1e-8)):
        ths = list(range(1, min(a, s) + 1))
        fast = false_match_probability_fast(n, a, s, ths)
        exact = torch.tensor([false_match_probability(n, a, s, t) for t in ths], dtype=torch.float64)
        assert torch.allclose(fast, exact, rtol=rtol, atol=0)
    assert false_match_probability_fast(256, 16, 24, 0).item() == pytest.approx(1.0, rel=1e-12)
    assert false_match_probability(256, 16, 24, 17) == 0.0  # more than a cells can never be active


def test_bad_input():
    with pytest.raises(ConfigError, match="0 <= a <= n"):
        false_match_probability(10, 11, 3, 1)
    with pytest.raises(ConfigError, match="threshold"):
        false_match_probability(10, 4, 3, -1)
