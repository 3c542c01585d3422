"""Decision rules of claim cards: 95% confidence intervals -> supported / contradicted / inconclusive.

A rule is fixed in the card before its runs. It reads per-seed values of the card's metric on the
test split (the learning rate already chosen on validation) and decides from a 95% interval. Every
statistic is *oriented*: larger is better for the claim, so one convention serves metrics where
higher is better (accuracy) and where lower is better (loss, bits per character, error).

The conventions, with ``[lo, hi]`` the 95% CI of the rule's statistic:

``difference`` (``task``, ``model``, ``baseline``, ``margin = 0``)
    Statistic ``Delta = model - baseline`` (``baseline - model`` when lower is better), so
    ``Delta > 0`` means the model is better. CI paired by seed (Student t on the per-seed
    differences) when both have finished exactly the same seeds, else Welch's interval.
    The claim tested is "Delta > margin":
    **supported** when ``lo > margin``; **contradicted** when ``hi < margin``; else inconclusive.
    With ``margin = 0``: supported when the model is better beyond doubt, contradicted when the
    baseline is; a claim with a stated margin is contradicted when the gain is surely smaller.
``noninferiority`` (``task``, ``model``, ``baseline``, ``margin``)
    Same ``Delta``; the claim is "the model is at most ``margin`` worse":
    **supported** when ``lo > -margin``; **contradicted** when ``hi < -margin``.
``threshold`` (``task``, ``model``, ``value``)
    Statistic: the model's mean. **supported** when the whole CI lies beyond ``value`` on the good
    side (``lo > value`` when higher is better, ``hi < value`` when lower is better);
    **contradicted** when it lies wholly on the other side.
``tolerance`` (``tol``; ``task``/``model`` for an arena card, none for a ``[measure]`` card)
    Statistic: the mean measured error (lower is better, whatever the metric says).
    **supported** when ``hi <= tol``; **contradicted** when ``lo > tol``.
``all`` / ``any`` (``rules = [...]``)
    ``all``: supported when every part is, contradicted when any part is, else inconclusive.
    ``any``: supported when any part is, contradicted when every part is, else inconclusive.
    A combination has no single statistic (observed, lo, hi are None); its parts are in the details.

An interval that cannot be computed (fewer than two finished seeds, NaN values) is inconclusive.
A bound that the interval touches exactly is not crossed (inconclusive), except ``hi <= tol``.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Union

from ..arena.stats import mean_ci, paired_difference_ci, welch_difference_ci
from ..config import check_keys
from ..errors import ConfigError, unknown_name

SUPPORTED, CONTRADICTED, INCONCLUSIVE = "supported", "contradicted", "inconclusive"
VERDICTS = (SUPPORTED, CONTRADICTED, INCONCLUSIVE)


# ---- the decisions, on intervals ----------------------------------------------------------
def _finite(*xs: float) -> bool:
    return all(x is not None and math.isfinite(x) for x in xs)


def decide_above(lo: float, hi: float, bound: float) -> str:
    """The claim "statistic > bound": supported when lo > bound, contradicted when hi < bound."""
    if not _finite(lo, hi, bound):
        return INCONCLUSIVE
    if lo > bound:
        return SUPPORTED
    if hi < bound:
        return CONTRADICTED
    return INCONCLUSIVE


def decide_within(lo: float, hi: float, tol: float) -> str:
    """The claim "error <= tol": supported when hi <= tol, contradicted when lo > tol."""
    if not _finite(lo, hi, tol):
        return INCONCLUSIVE
    if hi <= tol:
        return SUPPORTED
    if lo > tol:
        return CONTRADICTED
    return INCONCLUSIVE


# ---- the data a rule reads ----------------------------------------------------------------
@dataclass(frozen=True)
class Sample:
    """Per-seed values of one (task, model) on the card's metric and split (finished seeds only)."""

    values: Mapping[int, float]  # seed -> value
    higher_is_better: bool
    info: Mapping[str, Any] = field(default_factory=dict)  # lr, params, counts...: copied to the details

    def ci(self) -> tuple[float, float, float]:
        """mean, lo, hi of the 95% CI of the mean over seeds."""
        m, h = mean_ci([self.values[s] for s in sorted(self.values)])
        return m, m - h, m + h

    def summary(self) -> dict[str, Any]:
        m, lo, hi = self.ci()
        return {"mean": m, "lo": lo, "hi": hi, "n": len(self.values),
                "values": {str(s): self.values[s] for s in sorted(self.values)},
                "higher_is_better": self.higher_is_better, **dict(self.info)}


Key = tuple[Union[str, None], Union[str, None]]  # (task label, model label); (None, None) for a measure


@dataclass(frozen=True)
class Outcome:
    verdict: str
    observed: float | None
    lo: float | None
    hi: float | None
    details: dict[str, Any]


def _sample(data: Mapping[Key, Sample], task: str | None, model: str | None) -> Sample:
    try:
        return data[(task, model)]
    except KeyError:
        what = f"model {model!r} on task {task!r}" if model is not None else "the measurement"
        raise ConfigError(f"no results for {what}; have: {sorted(map(str, data))}") from None


def oriented_difference(a: Sample, b: Sample) -> dict[str, Any]:
    """``a - b`` (``b - a`` when lower is better) with its 95% CI: paired by seed when both have
    the same seeds, else Welch."""
    if a.higher_is_better != b.higher_is_better:
        raise ConfigError("a difference needs one metric direction for both models")
    sign = 1.0 if a.higher_is_better else -1.0
    seeds = sorted(a.values)
    if seeds == sorted(b.values) and len(seeds) >= 2:
        d, half = paired_difference_ci([sign * a.values[s] for s in seeds], [sign * b.values[s] for s in seeds])
        method, df = "paired", float(len(seeds) - 1)
    else:
        d, half, df = welch_difference_ci([sign * v for v in a.values.values()], [sign * v for v in b.values.values()])
        method = "welch"
    return {"diff": d, "lo": d - half, "hi": d + half, "method": method, "df": df}


# ---- the rules ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Difference:
    """The model beats the baseline by more than ``margin`` (see the module docstring)."""

    model: str
    baseline: str
    task: str | None = None
    margin: float = 0.0
    type: str = "difference"

    def refs(self) -> list[Key]:
        return [(self.task, self.model), (self.task, self.baseline)]

    def _bound(self) -> float:
        return self.margin

    def evaluate(self, data: Mapping[Key, Sample]) -> Outcome:
        a, b = _sample(data, self.task, self.model), _sample(data, self.task, self.baseline)
        d = oriented_difference(a, b)
        verdict = decide_above(d["lo"], d["hi"], self._bound())
        return Outcome(verdict, d["diff"], d["lo"], d["hi"],
                       {"rule": describe(self), "verdict": verdict, "statistic": "oriented difference",
                        "bound": self._bound(), "method": d["method"], "df": d["df"],
                        "models": {self.model: a.summary(), self.baseline: b.summary()}})


@dataclass(frozen=True)
class NonInferiority(Difference):
    """The model is at most ``margin`` worse than the baseline."""

    margin: float = math.nan  # required: parse_rule rejects a missing margin
    type: str = "noninferiority"

    def _bound(self) -> float:
        return -self.margin


@dataclass(frozen=True)
class Threshold:
    """The model's mean lies beyond ``value`` on the good side of the metric."""

    model: str
    value: float
    task: str | None = None
    type: str = "threshold"

    def refs(self) -> list[Key]:
        return [(self.task, self.model)]

    def evaluate(self, data: Mapping[Key, Sample]) -> Outcome:
        a = _sample(data, self.task, self.model)
        m, lo, hi = a.ci()
        if a.higher_is_better:
            verdict = decide_above(lo, hi, self.value)
        else:  # mirror: "mean < value" is "-mean > -value"
            verdict = decide_above(-hi, -lo, -self.value)
        return Outcome(verdict, m, lo, hi, {"rule": describe(self), "verdict": verdict, "statistic": "mean",
                                            "bound": self.value, "models": {self.model: a.summary()}})


@dataclass(frozen=True)
class Tolerance:
    """A measured error is within ``tol`` (closed-form claims)."""

    tol: float
    task: str | None = None
    model: str | None = None
    type: str = "tolerance"

    def refs(self) -> list[Key]:
        return [(self.task, self.model)]

    def evaluate(self, data: Mapping[Key, Sample]) -> Outcome:
        a = _sample(data, self.task, self.model)
        m, lo, hi = a.ci()
        verdict = decide_within(lo, hi, self.tol)
        label = self.model or "measurement"
        return Outcome(verdict, m, lo, hi, {"rule": describe(self), "verdict": verdict, "statistic": "mean error",
                                            "bound": self.tol, "models": {label: a.summary()}})


@dataclass(frozen=True)
class All:
    rules: tuple[Any, ...]
    type: str = "all"

    def refs(self) -> list[Key]:
        return [k for r in self.rules for k in r.refs()]

    def evaluate(self, data: Mapping[Key, Sample]) -> Outcome:
        parts = [r.evaluate(data) for r in self.rules]
        verdicts = [p.verdict for p in parts]
        if self.type == "all":
            verdict = (SUPPORTED if all(v == SUPPORTED for v in verdicts)
                       else CONTRADICTED if CONTRADICTED in verdicts else INCONCLUSIVE)
        else:
            verdict = (SUPPORTED if SUPPORTED in verdicts
                       else CONTRADICTED if all(v == CONTRADICTED for v in verdicts) else INCONCLUSIVE)
        return Outcome(verdict, None, None, None,
                       {"rule": describe(self), "verdict": verdict,
                        "parts": [{**p.details, "observed": p.observed, "lo": p.lo, "hi": p.hi} for p in parts]})


@dataclass(frozen=True)
class Any_(All):
    type: str = "any"


Rule = Union[Difference, NonInferiority, Threshold, Tolerance, All, Any_]
RULES: dict[str, type] = {"difference": Difference, "noninferiority": NonInferiority, "threshold": Threshold,
                          "tolerance": Tolerance, "all": All, "any": Any_}
_REQUIRED = {"difference": ("model", "baseline"), "noninferiority": ("model", "baseline", "margin"),
             "threshold": ("model", "value"), "tolerance": ("tol",), "all": ("rules",), "any": ("rules",)}


def parse_rule(data: Any, where: str = "[rule]") -> Rule:
    """A rule from its TOML table, strictly: ``type`` names it, unknown keys are errors."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a table with a `type` ({', '.join(RULES)}), got {data!r}")
    if "type" not in data:
        raise ConfigError(f"{where} needs a `type`: one of {', '.join(RULES)}")
    kind = data["type"]
    if not isinstance(kind, str) or kind not in RULES:
        raise unknown_name(f"rule type in {where}", str(kind), RULES)
    cls = RULES[kind]
    names = [f.name for f in dataclasses.fields(cls)]
    check_keys(data, names, f"{where} (type {kind!r})")
    missing = [k for k in _REQUIRED[kind] if k not in data]
    if missing:
        raise ConfigError(f"{where} (type {kind!r}) needs {', '.join(map(repr, missing))}; "
                          f"keys: {', '.join(names)}")
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key == "type":
            continue
        if key == "rules":
            if not isinstance(value, list) or not value:
                raise ConfigError(f"{where}.rules must be a non-empty list of rule tables")
            kwargs[key] = tuple(parse_rule(r, f"{where}.rules[{i}]") for i, r in enumerate(value))
        elif key in ("task", "model", "baseline"):
            if not isinstance(value, str) or not value:
                raise ConfigError(f"{where}.{key} must be a non-empty string (a label in the suite), got {value!r}")
            kwargs[key] = value
        else:  # margin, value, tol
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError(f"{where}.{key} must be a finite number, got {value!r}")
            kwargs[key] = float(value)
    for key in ("margin", "tol"):
        if key in kwargs and kwargs[key] < 0:
            raise ConfigError(f"{where}.{key} must be >= 0, got {kwargs[key]}")
    if kind in ("difference", "noninferiority") and kwargs["model"] == kwargs["baseline"]:
        raise ConfigError(f"{where}: model and baseline are both {kwargs['model']!r}")
    return cls(**kwargs)


def rule_to_dict(rule: Rule) -> dict[str, Any]:
    """The plain (TOML/JSON) form of a parsed rule, defaults filled in: part of the card's hash."""
    out: dict[str, Any] = {"type": rule.type}
    for f in dataclasses.fields(rule):
        if f.name == "type":
            continue
        v = getattr(rule, f.name)
        out[f.name] = [rule_to_dict(r) for r in v] if f.name == "rules" else v
    return out


def describe(rule: Rule) -> str:
    """One line: the rule as it decides."""
    on = f" on {rule.task}" if getattr(rule, "task", None) else ""
    if isinstance(rule, All):
        return f" {rule.type.upper()} ".join(f"({describe(r)})" for r in rule.rules)
    if isinstance(rule, NonInferiority):
        return f"{rule.model} − {rule.baseline}{on} > −{rule.margin:g} (non-inferior)"
    if isinstance(rule, Difference):
        return f"{rule.model} − {rule.baseline}{on} > {rule.margin:g}"
    if isinstance(rule, Threshold):
        return f"{rule.model}{on} beyond {rule.value:g}"
    return f"error{' of ' + rule.model if rule.model else ''}{on} ≤ {rule.tol:g}"


def evaluate(rule: Rule, data: Mapping[Key, Sample]) -> Outcome:
    """Apply a rule to per-seed samples keyed by (task label, model label)."""
    return rule.evaluate(data)
