"""Generators of bad input: a small valid suite (and card) and strategies that break it in one place.

Each strategy draws ``(data, mentions)``: the broken document and the texts the error must show
verbatim (the unknown key or name, the key whose value is wrong). Every break is bad by
construction: an unknown key is not a valid key there, a wrong type does not fit the field's
annotation, an out-of-range number is outside what the field allows, an unknown name is not
registered. The valid base is checked to run (``test_the_valid_base_suite_runs``), so each refusal
comes from the break.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import typing
from typing import Any

from hypothesis import strategies as st

from layerlab.arena.suite import TaskEntry
from layerlab.registry import get as get_block
from layerlab.registry import names as block_names
from layerlab.spec import DTYPES, OPTIMIZERS, SCHEDULES, ModelSpec, OptimSpec, ProbeSpec, TrainSpec

BASE_SUITE: dict[str, Any] = {
    "name": "fz",
    "seeds": [0],
    "lr": [0.01],
    "train": {"steps": 2, "batch_size": 8, "eval_every": 0, "log_every": 1},
    "tasks": [{"name": "digits"}, {"name": "parity", "params": {"length": 8, "n_eval": 16, "extrapolate": [2]}}],
    "models": [{"label": "mlp", "backbone": "classifier", "channel": "mlp", "d_model": 8, "n_layers": 1},
               {"label": "attention", "backbone": "sequence", "mixer": "attention", "d_model": 8, "n_layers": 1,
                "mixer_options": {"n_heads": 2}}],
}
DIGITS, PARITY = 0, 1  # task indices
MLP, ATTENTION = 0, 1  # model indices


def base_suite() -> dict[str, Any]:
    return copy.deepcopy(BASE_SUITE)


def card_with_suite(suite: dict[str, Any]) -> dict[str, Any]:
    """A claim card (threshold on digits/mlp) around an inline suite."""
    return {"paper": "1706.02515", "claim": "a [b]claim[/b] to refuse", "where": "Table 1", "kind": "comparative",
            "deviations": "tiny", "suite": suite,
            "rule": {"type": "threshold", "task": "digits", "model": "mlp", "value": 0.0}}


# ---- text the user typed: keys and names, brackets included ---------------------------------
# No quotes or backslashes (Python's repr in messages would escape them) and no control characters:
# what is generated must appear verbatim in the one error line.
_ALPHABET = st.sampled_from(list("abcdefghijklmnopqrstuvwxyzABCXYZ0123456789_-.[]/{}<>:=!@#%&*+ éßΩ中"))
words = st.text(_ALPHABET, min_size=1, max_size=16).filter(lambda s: s.strip() == s and s != "")
# some of every batch is markup-like, the text rich would have eaten
markup = st.sampled_from(["[[models]]", "[b]x[/b]", "[/]", "[red]", "[link=x]y[/link]", "[bold red]k[/]",
                          "[[tasks]]", "[x", "x]", "[]", "[/x]"])
user_text = st.one_of(markup, words, st.builds(lambda a, b: f"{a}[{b}]", words, words))


# ---- where keys live, and what they are ------------------------------------------------------
def hints(cls: type) -> dict[str, Any]:
    h = typing.get_type_hints(cls)
    return {f.name: h[f.name] for f in dataclasses.fields(cls) if f.init}


def _task_hints(name: str) -> dict[str, Any]:
    from layerlab.tasks import get_task_class

    return hints(get_task_class(name))


def _option_hints(kind: str, name: str) -> dict[str, Any]:
    cls = get_block(kind, name).cls
    h = typing.get_type_hints(cls.__init__)
    return {k: v for k, v in h.items() if k not in ("return", "d_model", "device", "dtype")}


SUITE_TOP = {"name": str, "description": str, "seeds": list[int], "lr": list[float], "train": dict,
             "optim": dict, "tasks": list[dict], "models": list[dict], "budget_tolerance": float,
             "baseline": str, "probes": dict}
MODEL_KEYS = {**hints(ModelSpec), "label": str, "train": dict, "optim": dict}

# location (a path into the suite) -> {key: annotation}; the keys valid there
LOCATIONS: dict[tuple, dict[str, Any]] = {
    (): SUITE_TOP,
    ("train",): hints(TrainSpec),
    ("optim",): {k: v for k, v in hints(OptimSpec).items() if k != "lr"},
    ("probes",): hints(ProbeSpec),
    ("tasks", DIGITS): hints(TaskEntry),
    ("tasks", PARITY): hints(TaskEntry),
    ("tasks", DIGITS, "params"): _task_hints("digits"),
    ("tasks", PARITY, "params"): _task_hints("parity"),
    ("tasks", PARITY, "train"): hints(TrainSpec),
    ("tasks", DIGITS, "optim"): {k: v for k, v in hints(OptimSpec).items() if k != "lr"},
    ("models", MLP): {k: v for k, v in MODEL_KEYS.items()
                      if k not in ("mixer", "mixer_options", "positions", "init", "init_scale")},
    ("models", ATTENTION): {k: v for k, v in MODEL_KEYS.items() if k not in ("init", "init_scale")},
    ("models", MLP, "train"): hints(TrainSpec),
    ("models", ATTENTION, "optim"): {k: v for k, v in hints(OptimSpec).items() if k != "lr"},
    ("models", ATTENTION, "mixer_options"): _option_hints("mixer", "attention"),
    ("models", MLP, "channel_options"): _option_hints("channel", "mlp"),
}
# keys whose value is only accepted with a companion change (stride names a probe): not fuzzed for type
_SKIP_TYPE = {("probes",): ("options", "stride")}


def at(doc: dict[str, Any], path: tuple) -> dict[str, Any]:
    """The table at `path`, created (empty) where it is missing."""
    node: Any = doc
    for i, part in enumerate(path):
        if isinstance(part, int):
            node = node[part]
        else:
            node = node.setdefault(part, {})
    return node


# ---- values of the wrong type -----------------------------------------------------------------
scalars = st.one_of(st.integers(-10**6, 10**6), st.floats(allow_nan=True, allow_infinity=True), st.booleans(),
                    words)
values = st.one_of(scalars, st.lists(scalars, max_size=3),
                   st.dictionaries(words, scalars, min_size=1, max_size=2))


def fits(value: Any, hint: Any) -> bool:
    """Does `value` (from TOML) fit annotation `hint`? (what a strict loader should accept)"""
    origin = typing.get_origin(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, __import__("types").UnionType):
        return any(fits(value, a) for a in typing.get_args(hint) if a is not type(None))
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin in (list, tuple):
        (arg, *_) = typing.get_args(hint) or (Any,)
        return isinstance(value, list) and all(fits(v, arg) for v in value)
    if hint is dict or origin is dict or dataclasses.is_dataclass(hint):
        return isinstance(value, dict)
    if hint in (list,):
        return isinstance(value, list)
    return True  # a type TOML cannot express (torch.dtype): anything may be accepted


# ---- the breaks -------------------------------------------------------------------------------
@st.composite
def unknown_key(draw, base=base_suite) -> tuple[dict, tuple[str, ...]]:
    doc = base()
    path = draw(st.sampled_from(sorted(LOCATIONS, key=str)))
    key = draw(user_text.filter(lambda k: k not in LOCATIONS[path]))
    at(doc, path)[key] = draw(scalars)
    return doc, (key,)


@st.composite
def wrong_type(draw, base=base_suite) -> tuple[dict, tuple[str, ...]]:
    doc = base()
    path = draw(st.sampled_from(sorted(LOCATIONS, key=str)))
    keys = [k for k in LOCATIONS[path] if k not in _SKIP_TYPE.get(path, ())]
    key = draw(st.sampled_from(sorted(keys)))
    hint = LOCATIONS[path][key]
    value = draw(values.filter(lambda v: not fits(v, hint)))
    at(doc, path)[key] = value
    return doc, (key,)


@st.composite
def missing_table(draw, base=base_suite) -> tuple[dict, tuple[str, ...]]:
    doc = base()
    what = draw(st.sampled_from(["tasks", "models", "task name", "empty tasks", "empty models"]))
    if what == "tasks":
        del doc["tasks"]
        return doc, ("[[tasks]]",)
    if what == "empty tasks":
        doc["tasks"] = []
        return doc, ("[[tasks]]",)
    if what in ("models", "empty models"):  # the parity task has no default model
        if what == "models":
            del doc["models"]
        else:
            doc["models"] = []
        return doc, ("[[models]]", "parity")
    i = draw(st.sampled_from([DIGITS, PARITY]))
    del doc["tasks"][i]["name"]
    return doc, ("name",)


nonpositive_int = st.integers(-10**9, 0)
negative_int = st.integers(-10**9, -1)
not_finite = st.sampled_from([math.nan, math.inf, -math.inf])
negative_float = st.floats(max_value=-1e-300, allow_infinity=True, allow_nan=False)

# (path, key, invalid values)
OUT_OF_RANGE: list[tuple[tuple, str, st.SearchStrategy]] = [
    (("train",), "steps", nonpositive_int),
    (("train",), "log_every", nonpositive_int),
    (("train",), "eval_every", negative_int),
    (("train",), "eval_batch_size", nonpositive_int),
    (("train",), "checkpoint_every", negative_int),
    (("train",), "time_budget_s", st.one_of(not_finite, st.floats(max_value=0, allow_nan=False))),
    (("train",), "target", not_finite),
    (("tasks", PARITY, "train"), "batch_size", nonpositive_int),  # parity draws fresh examples
    (("optim",), "weight_decay", st.one_of(not_finite, negative_float)),
    (("optim",), "eps", st.one_of(not_finite, st.floats(max_value=0, allow_nan=False))),
    (("optim",), "momentum", st.one_of(not_finite, negative_float)),
    (("optim",), "warmup_steps", negative_int),
    (("optim",), "min_lr_ratio", st.one_of(not_finite, negative_float, st.floats(1.0001, 1e300))),
    (("optim",), "grad_clip", st.one_of(not_finite, negative_float)),
    (("optim",), "betas", st.one_of(
        st.lists(st.floats(0, 0.99), min_size=0, max_size=1), st.lists(st.floats(0, 0.99), min_size=3, max_size=4),
        st.tuples(st.floats(0, 0.99), st.one_of(not_finite, negative_float, st.floats(1.0, 1e300))).map(list))),
    ((), "seeds", st.one_of(st.just([]), st.lists(negative_int, min_size=1, max_size=2),
                            st.integers(0, 5).map(lambda s: [s, s]), st.just([2**63]))),
    ((), "lr", st.one_of(st.just([]), st.lists(st.one_of(not_finite, st.floats(max_value=0, allow_nan=False)),
                                               min_size=1, max_size=2), st.just([0.01, 0.01]))),
    ((), "budget_tolerance", st.one_of(not_finite, st.floats(max_value=0, allow_nan=False), st.floats(1.0001, 1e300))),
    (("tasks", DIGITS), "budget", nonpositive_int),
    (("tasks", PARITY), "seeds", st.lists(negative_int, min_size=1, max_size=2)),
    (("tasks", DIGITS), "lr", st.lists(st.floats(max_value=0, allow_nan=False), min_size=1, max_size=2)),
    (("models", MLP), "d_model", nonpositive_int),
    (("models", ATTENTION), "n_layers", nonpositive_int),
    (("probes",), "points", nonpositive_int),
    (("probes",), "every", nonpositive_int),
    (("probes",), "batch_size", nonpositive_int),
    (("tasks", PARITY, "params"), "length", nonpositive_int),
    (("tasks", PARITY, "params"), "n_eval", nonpositive_int),
    (("tasks", PARITY, "params"), "extrapolate", st.lists(st.integers(-5, 1), min_size=1, max_size=2)),
    (("tasks", DIGITS, "params"), "data_seed", st.one_of(negative_int, st.integers(2**32, 2**62))),
    (("models", ATTENTION, "mixer_options"), "n_heads", st.sampled_from([0, -1, 3, 5, 7])),  # 3, 5, 7: not a divisor
    (("models", ATTENTION, "mixer_options"), "dropout", st.one_of(not_finite, negative_float, st.floats(1, 1e300))),
    (("models", MLP, "channel_options"), "expansion", st.one_of(not_finite, st.floats(max_value=0, allow_nan=False))),
]


@st.composite
def out_of_range(draw, base=base_suite) -> tuple[dict, tuple[str, ...]]:
    doc = base()
    path, key, bad = draw(st.sampled_from(OUT_OF_RANGE))
    at(doc, path)[key] = draw(bad)
    if path == ("probes",):
        at(doc, path)["names"] = ["weights"]
    return doc, (key,)


def _unknown(valid) -> st.SearchStrategy:
    valid = set(valid)
    return user_text.filter(lambda n: n not in valid)


# (path, key, valid names); the drawn name must be shown
NAMES: list[tuple[tuple, str, Any]] = [
    (("tasks", DIGITS), "name", lambda: __import__("layerlab.tasks", fromlist=["x"]).task_names()),
    (("models", MLP), "channel", lambda: block_names("channel")),
    (("models", ATTENTION), "mixer", lambda: block_names("mixer")),
    (("models", ATTENTION), "norm", lambda: block_names("norm")),
    (("models", MLP), "backbone", lambda: ("sequence", "classifier", "deep_linear")),
    (("models", ATTENTION), "norm_place", lambda: ("pre", "post", "peri")),
    (("models", ATTENTION), "positions", lambda: ("learned", "none")),
    (("optim",), "name", lambda: OPTIMIZERS),
    (("optim",), "schedule", lambda: SCHEDULES),
    (("train",), "dtype", lambda: DTYPES),
    (("probes",), "schedule", lambda: ("log", "every")),
    (("models", MLP, "channel_options"), "activation", lambda: block_names("activation")),
    ((), "baseline", lambda: ("mlp", "attention")),
]


@st.composite
def unknown_name(draw, base=base_suite) -> tuple[dict, tuple[str, ...]]:
    doc = base()
    kind = draw(st.sampled_from(["field", "probe", "task models"]))
    if kind == "probe":
        from layerlab.lens.probes import probe_names

        name = draw(_unknown(probe_names()))
        doc["probes"] = {"names": [name]}
        return doc, (name,)
    if kind == "task models":
        name = draw(_unknown(("mlp", "attention")))
        doc["tasks"][PARITY]["models"] = [name]
        return doc, (name,)
    path, key, valid = draw(st.sampled_from(NAMES))
    name = draw(_unknown(valid()))
    at(doc, path)[key] = name
    return doc, (name,)


def bad_suite(base=base_suite) -> st.SearchStrategy:
    return st.one_of(unknown_key(base), wrong_type(base), missing_table(base), out_of_range(base), unknown_name(base))
