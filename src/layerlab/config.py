"""One strict config system: dataclasses built from plain dicts.

``from_dict(Cls, mapping)`` rejects unknown keys, naming the key, the closest valid key and
every valid key, so a typo in a suite file fails before any training starts.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from typing import Any, TypeVar

from .errors import ConfigError, close_matches

C = TypeVar("C")


def check_keys(given: typing.Iterable[str], valid: typing.Iterable[str], where: str) -> None:
    """Raise ConfigError if `given` has a key outside `valid`."""
    valid = list(valid)
    for key in given:
        if key not in valid:
            hint = close_matches(key, valid, n=1)
            did = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise ConfigError(
                f"unknown key {key!r} in {where}{did}; valid keys: {', '.join(valid)}"
            )


def _coerce(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint) and isinstance(value, dict):
        return from_dict(hint, value, where)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: {value!r} is not a valid {hint}")
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (arg, *_) = typing.get_args(hint) or (Any,)
        return tuple(_coerce(v, arg, where) for v in value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, str, bool):
        if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
            raise ConfigError(f"{where}: expected {hint.__name__}, got {value!r}")
    if origin is dict and not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a table/dict, got {value!r}")
    return value


def from_dict(cls: type[C], data: dict[str, Any] | None, where: str | None = None) -> C:
    """Build dataclass `cls` from `data`, strictly."""
    where = where or cls.__name__
    data = dict(data or {})
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    check_keys(data, fields, where)
    hints = typing.get_type_hints(cls)
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}") for k, v in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ConfigError(f"{where}: {e}") from None


def to_dict(obj: Any) -> Any:
    """Plain JSON-able form of a (nested) dataclass."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in sorted(obj.items())}
    return obj


def canonical_json(obj: Any) -> str:
    return json.dumps(to_dict(obj), sort_keys=True, separators=(",", ":"))


def config_hash(obj: Any, length: int = 16) -> str:
    """Identity of a config: sha256 of its canonical JSON."""
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:length]


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Recursive dict merge; `override` wins."""
    out = dict(base)
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


def check_option_types(options: dict[str, Any], fn: Any, where: str) -> None:
    """Each of `options` of the type `fn` (a class or function) declares for that keyword, or of the
    type of its default where there is no usable annotation: a wrong type (``n_heads = "4"``) is a
    ConfigError naming the option, not an exception from deep inside the constructor."""
    import inspect

    target = fn.__init__ if inspect.isclass(fn) else fn
    try:
        hints = typing.get_type_hints(target)
    except Exception:  # unresolvable annotations: fall back on the defaults
        hints = {}
    try:
        params = inspect.signature(target).parameters
    except (TypeError, ValueError):
        return
    for key, value in options.items():
        if key not in params:
            continue  # unknown options are the caller's check
        hint = hints.get(key)
        if hint is None:
            default = params[key].default
            if default is inspect.Parameter.empty or default is None:
                continue
            hint = type(default) if not isinstance(default, (list, tuple)) else list
        _coerce(value, hint, f"{where}.{key}")
