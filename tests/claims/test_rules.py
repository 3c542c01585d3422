"""Decision rules on synthetic intervals: one test per branch of every rule."""
import math

import pytest

from layerlab.arena.stats import t_quantile_975
from layerlab.claims.rules import (
    CONTRADICTED,
    INCONCLUSIVE,
    SUPPORTED,
    All,
    Any_,
    Difference,
    NonInferiority,
    Sample,
    Threshold,
    Tolerance,
    decide_above,
    decide_within,
    evaluate,
    oriented_difference,
    parse_rule,
    rule_to_dict,
)
from layerlab.errors import ConfigError

T = "task"


def sample(values, higher=True):
    return Sample(dict(enumerate(values)), higher)


def data(**models):
    return {(T, name): s for name, s in models.items()}


# ---- the two primitives --------------------------------------------------------------------
@pytest.mark.parametrize("lo, hi, bound, want", [
    (0.1, 0.3, 0.0, SUPPORTED), (-0.3, -0.1, 0.0, CONTRADICTED), (-0.1, 0.1, 0.0, INCONCLUSIVE),
    (0.0, 0.2, 0.0, INCONCLUSIVE),  # touching the bound does not cross it
    (math.nan, 0.2, 0.0, INCONCLUSIVE), (0.1, math.inf, 0.0, INCONCLUSIVE)])
def test_decide_above(lo, hi, bound, want):
    assert decide_above(lo, hi, bound) == want


@pytest.mark.parametrize("lo, hi, tol, want", [
    (0.01, 0.04, 0.05, SUPPORTED), (0.01, 0.05, 0.05, SUPPORTED), (0.06, 0.08, 0.05, CONTRADICTED),
    (0.03, 0.07, 0.05, INCONCLUSIVE), (math.nan, math.nan, 0.05, INCONCLUSIVE)])
def test_decide_within(lo, hi, tol, want):
    assert decide_within(lo, hi, tol) == want


# ---- difference ----------------------------------------------------------------------------
def test_paired_difference_ci_by_hand():
    # per-seed differences 0.4, 0.2, 0.3: mean 0.3, sd 0.1, half = t(2) * 0.1 / sqrt(3)
    d = oriented_difference(sample([0.9, 0.7, 0.8]), sample([0.5, 0.5, 0.5]))
    half = 4.303 * 0.1 / math.sqrt(3)
    assert d["method"] == "paired" and d["df"] == 2
    assert d["diff"] == pytest.approx(0.3) and d["lo"] == pytest.approx(0.3 - half) and d["hi"] == pytest.approx(0.3 + half)


def test_paired_is_tighter_than_welch_for_correlated_seeds():
    a, b = sample([0.9, 0.5, 0.7]), sample([0.8, 0.4, 0.6])  # same seed effect; difference 0.1 exactly
    d = oriented_difference(a, b)
    assert d["method"] == "paired" and d["lo"] == pytest.approx(0.1) and d["hi"] == pytest.approx(0.1)
    assert evaluate(Difference("a", "b", T), data(a=a, b=b)).verdict == SUPPORTED


def test_welch_when_seeds_differ_by_hand():
    a = Sample({0: 1.0, 1: 2.0, 2: 3.0}, True)          # mean 2, var 1, n 3
    b = Sample({0: 0.0, 1: 0.5, 3: 1.0, 4: 0.5}, True)  # mean 0.5, var 1/6, n 4
    d = oriented_difference(a, b)
    va, vb = 1 / 3, (1 / 6) / 4
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / 2 + vb**2 / 3)
    assert d["method"] == "welch" and d["df"] == pytest.approx(df)
    assert d["diff"] == pytest.approx(1.5)
    assert d["hi"] - d["diff"] == pytest.approx(t_quantile_975(math.floor(df)) * se)


def test_difference_lower_is_better_is_oriented():
    # loss: the model's is lower, so Delta = baseline - model > 0
    d = oriented_difference(sample([1.0, 1.1, 0.9], higher=False), sample([2.0, 2.1, 1.9], higher=False))
    assert d["diff"] == pytest.approx(1.0)


def test_difference_supported():
    out = evaluate(Difference("a", "b", T), data(a=sample([0.9, 0.95, 0.92]), b=sample([0.5, 0.52, 0.55])))
    assert out.verdict == SUPPORTED and out.lo > 0 and out.observed == pytest.approx(0.4, abs=1e-9)


def test_difference_contradicted():
    out = evaluate(Difference("a", "b", T), data(a=sample([0.5, 0.52, 0.55]), b=sample([0.9, 0.95, 0.92])))
    assert out.verdict == CONTRADICTED and out.hi < 0


def test_difference_inconclusive():
    out = evaluate(Difference("a", "b", T), data(a=sample([0.5, 0.9, 0.6]), b=sample([0.6, 0.7, 0.65])))
    assert out.verdict == INCONCLUSIVE and out.lo < 0 < out.hi


def test_difference_with_margin_contradicted_when_gain_is_surely_smaller():
    # gain 0.05 +- tiny, margin 0.1: better, but not by the claimed margin
    a, b = sample([0.85, 0.86, 0.87]), sample([0.80, 0.81, 0.82])
    assert evaluate(Difference("a", "b", T, margin=0.1), data(a=a, b=b)).verdict == CONTRADICTED
    assert evaluate(Difference("a", "b", T, margin=0.0), data(a=a, b=b)).verdict == SUPPORTED


def test_difference_one_seed_is_inconclusive():
    out = evaluate(Difference("a", "b", T), data(a=sample([1.0]), b=sample([0.0])))
    assert out.verdict == INCONCLUSIVE and math.isnan(out.hi)


# ---- noninferiority ------------------------------------------------------------------------
def test_noninferiority_supported():
    # 0.01 worse, margin 0.05
    a, b = sample([0.79, 0.80, 0.81]), sample([0.80, 0.81, 0.82])
    assert evaluate(NonInferiority("a", "b", T, margin=0.05), data(a=a, b=b)).verdict == SUPPORTED


def test_noninferiority_contradicted():
    a, b = sample([0.60, 0.61, 0.62]), sample([0.80, 0.81, 0.82])
    out = evaluate(NonInferiority("a", "b", T, margin=0.05), data(a=a, b=b))
    assert out.verdict == CONTRADICTED and out.hi < -0.05


def test_noninferiority_inconclusive():
    a, b = sample([0.70, 0.80, 0.75]), sample([0.80, 0.81, 0.82])
    assert evaluate(NonInferiority("a", "b", T, margin=0.05), data(a=a, b=b)).verdict == INCONCLUSIVE


# ---- threshold -----------------------------------------------------------------------------
def test_threshold_supported_higher_and_lower():
    assert evaluate(Threshold("a", 0.9, T), data(a=sample([0.98, 0.99, 0.97]))).verdict == SUPPORTED
    assert evaluate(Threshold("a", 1.0, T), data(a=sample([0.5, 0.55, 0.45], higher=False))).verdict == SUPPORTED


def test_threshold_contradicted_higher_and_lower():
    assert evaluate(Threshold("a", 0.9, T), data(a=sample([0.5, 0.55, 0.6]))).verdict == CONTRADICTED
    out = evaluate(Threshold("a", 0.2, T), data(a=sample([0.5, 0.55, 0.45], higher=False)))
    assert out.verdict == CONTRADICTED and out.observed == pytest.approx(0.5)


def test_threshold_inconclusive():
    assert evaluate(Threshold("a", 0.9, T), data(a=sample([0.8, 0.99, 0.95]))).verdict == INCONCLUSIVE


# ---- tolerance -----------------------------------------------------------------------------
def measured(values):
    return {(None, None): Sample(dict(enumerate(values)), False)}


def test_tolerance_supported():
    assert evaluate(Tolerance(0.05), measured([0.01, 0.02, 0.015])).verdict == SUPPORTED


def test_tolerance_contradicted():
    out = evaluate(Tolerance(0.05), measured([0.2, 0.21, 0.19]))
    assert out.verdict == CONTRADICTED and out.lo > 0.05


def test_tolerance_inconclusive():
    assert evaluate(Tolerance(0.05), measured([0.01, 0.09, 0.05])).verdict == INCONCLUSIVE


def test_tolerance_deterministic_measurement_decides():
    assert evaluate(Tolerance(1e-9), measured([1e-12, 1e-12])).verdict == SUPPORTED


# ---- all / any -----------------------------------------------------------------------------
GOOD = Threshold("good", 0.5, T)
BAD = Threshold("bad", 0.5, T)
UNSURE = Threshold("unsure", 0.5, T)
PARTS = data(good=sample([0.9, 0.91, 0.92]), bad=sample([0.1, 0.11, 0.12]), unsure=sample([0.1, 0.9, 0.5]))


@pytest.mark.parametrize("rules, want", [
    ((GOOD, GOOD), SUPPORTED), ((GOOD, BAD), CONTRADICTED), ((GOOD, UNSURE), INCONCLUSIVE),
    ((UNSURE, BAD), CONTRADICTED)])
def test_all(rules, want):
    out = evaluate(All(rules), PARTS)
    assert out.verdict == want and out.observed is None and len(out.details["parts"]) == len(rules)


@pytest.mark.parametrize("rules, want", [
    ((BAD, GOOD), SUPPORTED), ((BAD, BAD), CONTRADICTED), ((BAD, UNSURE), INCONCLUSIVE)])
def test_any(rules, want):
    assert evaluate(Any_(rules), PARTS).verdict == want


# ---- parsing -------------------------------------------------------------------------------
def test_parse_rule_round_trip_with_defaults():
    r = parse_rule({"type": "difference", "model": "a", "baseline": "b"})
    assert r == Difference("a", "b") and rule_to_dict(r) == {"type": "difference", "model": "a", "baseline": "b",
                                                               "task": None, "margin": 0.0}
    nested = parse_rule({"type": "all", "rules": [{"type": "threshold", "model": "a", "value": 1},
                                                  {"type": "tolerance", "tol": 0.1}]})
    assert isinstance(nested, All) and nested.rules[0] == Threshold("a", 1.0)


@pytest.mark.parametrize("table, message", [
    ({"type": "difference", "model": "a", "baseline": "b", "margn": 0.1}, "unknown key 'margn'.*did you mean 'margin'"),
    ({"type": "diference", "model": "a"}, "unknown rule type.*'diference'.*did you mean 'difference'"),
    ({"model": "a"}, "needs a `type`"),
    ({"type": "noninferiority", "model": "a", "baseline": "b"}, "needs 'margin'"),
    ({"type": "threshold", "model": "a", "value": "high"}, "value must be a finite number"),
    ({"type": "tolerance", "tol": -1}, "tol must be >= 0"),
    ({"type": "difference", "model": "a", "baseline": "a"}, "both 'a'"),
    ({"type": "all", "rules": [{"type": "tolerance", "tol": 1, "extra": 2}]}, r"unknown key 'extra' in \[rule\]\.rules\[0\]"),
    ({"type": "any", "rules": []}, "non-empty list"),
])
def test_parse_rule_errors_name_the_problem(table, message):
    with pytest.raises(ConfigError, match=message):
        parse_rule(table)
