import json
from dataclasses import dataclass, field

import pytest

from layerlab.config import config_hash, from_dict, merge
from layerlab.errors import ConfigError
from layerlab.spec import OptimSpec, RunSpec, TaskSpec, TrainSpec


@dataclass(frozen=True)
class Inner:
    a: int = 1
    b: float = 2.0


@dataclass(frozen=True)
class Outer:
    inner: Inner = field(default_factory=Inner)
    names: tuple[str, ...] = ()
    opt: float | None = None


def test_from_dict_builds_nested_and_coerces():
    o = from_dict(Outer, {"inner": {"a": 3, "b": 1}, "names": ["x", "y"], "opt": 2})
    assert o == Outer(Inner(3, 1.0), ("x", "y"), 2.0)
    assert isinstance(o.inner.b, float)


def test_unknown_key_names_key_suggestion_and_valid_keys():
    with pytest.raises(ConfigError) as e:
        from_dict(Outer, {"inner": {"aa": 1}})
    msg = str(e.value)
    assert "'aa'" in msg and "did you mean 'a'" in msg and "valid keys: a, b" in msg


def test_wrong_type_is_rejected():
    with pytest.raises(ConfigError, match="expected int"):
        from_dict(Inner, {"a": "three"})
    with pytest.raises(ConfigError, match="expected int"):
        from_dict(Inner, {"a": True})


def test_hash_is_stable_and_sensitive():
    s1 = RunSpec(task=TaskSpec("mqar", {"pairs": 4}))
    s2 = RunSpec.from_dict({"task": {"name": "mqar", "params": {"pairs": 4}}})
    # the id is the hash of the spec as stored (its JSON)
    assert s1.run_id == s2.run_id == config_hash(json.loads(s1.to_json()))
    s3 = RunSpec(task=TaskSpec("mqar", {"pairs": 5}))
    assert s3.run_id != s1.run_id
    assert RunSpec(task=s1.task, seed=1).run_id != s1.run_id


def test_spec_json_round_trip():
    s = RunSpec(task=TaskSpec("parity", {"length": 8}), optim=OptimSpec(lr=3e-3, betas=(0.9, 0.98)),
                train=TrainSpec(steps=7))
    import json

    assert RunSpec.from_dict(json.loads(s.to_json())) == s


def test_spec_validation_messages():
    with pytest.raises(ConfigError, match="did you mean 'adamw'"):
        OptimSpec(name="adamww")
    with pytest.raises(ConfigError, match="steps must be >= 1"):
        TrainSpec(steps=0)


def test_merge_is_recursive():
    assert merge({"a": {"x": 1, "y": 2}, "b": 1}, {"a": {"y": 3}}) == {"a": {"x": 1, "y": 3}, "b": 1}
