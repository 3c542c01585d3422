"""What a training method is: a set of hooks the one Trainer calls, and how several compose.

A method is a class registered as ``@layerlab.register("method", name, paper=Paper(...))`` and
built with its options as ``cls(**options)`` (``build_method``). It overrides only the hooks it
needs; the Trainer calls a hook only for the methods that override it, so a method costs nothing
where it does nothing.

The hooks, in the order the Trainer calls them (``layerlab.train.trainer``):

once, before training (and before a checkpoint is loaded):
    1. ``setup(model, run)``: transform the model (in place) and read the run's facts
       (``RunContext``: seed, steps, device, dtype, the task's loss, input kind);
    2. ``make_optimizer(model, default)``: provide the optimizer (``default()`` builds the run's
       own); at most one method of a run may provide one.
at every step ``t`` (0-based optimizer step):
    3. ``transform_batch(batch, t) -> batch``: the inputs and targets the model sees;
    4. ``transform_loss(loss, outputs, batch, t) -> loss``: add to (or recompute) the scalar loss
       from the model's outputs and the transformed batch; the run records this loss;
    5. after ``backward`` and the run's gradient clipping: ``transform_gradients(model, t)``,
       in place on ``p.grad``;
    6. ``after_step(model, t)``: after the optimizer step.

Composition: where several methods override one hook, they apply in the order the run lists
them (``methods = [A, B]``: ``B.transform_batch(A.transform_batch(batch))``, and at step 5 A
transforms the clipped gradient first, then B transforms A's result).

Randomness: a method draws only from ``self.generator`` (a ``torch.Generator`` on the run's
device, seeded from the run's seed, the method's place in the list and its name), never from the
global RNG; ``state_dict``/``load_state_dict`` carry it (and any other state) through the run's
checkpoint, so a resumed run continues the same random stream.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..registry import BLOCKS, MethodEntry, Paper

METHOD_SEP = " · "  # a suite row with a methods dimension (layerlab.arena): "<model label> · <methods label>"
HOOKS = ("setup", "make_optimizer", "transform_batch", "transform_loss", "transform_gradients", "after_step")


@dataclass(frozen=True)
class RunContext:
    """The facts of a run a method may read (the Trainer fills it)."""

    seed: int
    steps: int  # the run's total optimizer steps
    device: torch.device
    dtype: torch.dtype
    loss: Callable[[Tensor, Any], Tensor]  # the task's loss(outputs, batch): a scalar
    input_kind: str  # "tokens" or "vector"
    n_outputs: int


class Method:
    """Base of every training method: each hook does nothing; override the ones you need."""

    registry_name: ClassVar[str] = "method"
    paper: ClassVar[Paper | None] = None

    generator: torch.Generator
    run: RunContext

    def attach(self, run: RunContext, index: int) -> None:
        """Called by ``MethodStack.setup`` before ``setup``: the run and this method's own generator."""
        self.run = run
        self.generator = torch.Generator(device=run.device).manual_seed(method_seed(run.seed, index, self.registry_name))

    # ---- hooks (no-ops) ----------------------------------------------------------------
    def setup(self, model: nn.Module, run: RunContext) -> None:
        pass

    def make_optimizer(self, model: nn.Module, default: Callable[[], torch.optim.Optimizer]) -> torch.optim.Optimizer:
        return default()

    def transform_batch(self, batch: Any, step: int) -> Any:
        return batch

    def transform_loss(self, loss: Tensor, outputs: Tensor, batch: Any, step: int) -> Tensor:
        return loss

    def transform_gradients(self, model: nn.Module, step: int) -> None:
        pass

    def after_step(self, model: nn.Module, step: int) -> None:
        pass

    # ---- state -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.generator.set_state(state["generator"])

    def overrides(self, hook: str) -> bool:
        return getattr(type(self), hook) is not getattr(Method, hook)


def method_seed(seed: int, index: int, name: str) -> int:
    """A method's generator seed: from the run's seed, its place in the run's list and its name."""
    digest = hashlib.sha256(f"method/{seed}/{index}/{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


# ---- the registry ---------------------------------------------------------------------------
METHODS = BLOCKS["method"]


def method_names() -> list[str]:
    return METHODS.names()


def method_entry(name: str) -> MethodEntry:
    return METHODS.entry(name)


def check_method(name: str, options: Mapping[str, Any], where: str = "method") -> MethodEntry:
    """The entry of `name` with `options` checked: an unknown name or option is a ConfigError
    with suggestions."""
    from ..errors import close_matches

    entry = method_entry(name)
    valid = entry.options
    unknown = sorted(set(options) - set(valid))
    if unknown:
        hints = [h for k in unknown for h in close_matches(k, valid, n=1)]
        did = f" (did you mean {', '.join(map(repr, hints))}?)" if hints else ""
        raise ConfigError(
            f"{where}: method {name!r} got unknown option(s) {', '.join(map(repr, unknown))}{did}; "
            f"valid options: {', '.join(f'{k}={v!r}' for k, v in valid.items()) or '(none)'}")
    return entry


def build_method(name: str, **options: Any) -> Method:
    """A registered method built with its options: ``build_method("gradient_noise", eta=0.3)``."""
    entry = check_method(name, options)
    try:
        return entry.cls(**options)
    except TypeError as e:
        raise ConfigError(f"method {name!r}: {e}") from None


def check_methods(methods: Sequence[Any], where: str = "run") -> None:
    """Check ``(name, options)`` pairs (or objects with ``.name`` and ``.options``) before anything
    trains: names, options, the values the method itself checks, and at most one optimizer."""
    providers = []
    for i, m in enumerate(methods):
        name, options = (m.name, m.options) if hasattr(m, "name") else m
        built = build_method_at(name, options, f"{where} methods[{i}]")
        if built.overrides("make_optimizer"):
            providers.append(name)
    if len(providers) > 1:
        raise ConfigError(f"{where}: methods {providers} each provide the optimizer; a run takes at most one")


def build_method_at(name: str, options: Mapping[str, Any], where: str) -> Method:
    check_method(name, options, where)
    try:
        return method_entry(name).cls(**options)
    except (TypeError, ConfigError) as e:
        raise ConfigError(f"{where}: method {name!r}: {e}") from None


# ---- composition ----------------------------------------------------------------------------
class MethodStack:
    """The methods of one run, in the run's order; calls each hook of the methods that override it."""

    def __init__(self, methods: Sequence[Method] = ()) -> None:
        self.methods = list(methods)
        for hook in HOOKS:
            setattr(self, f"_{hook}", [m for m in self.methods if m.overrides(hook)])
        if len(self._make_optimizer) > 1:
            names = [m.registry_name for m in self._make_optimizer]
            raise ConfigError(f"methods {names} each provide the optimizer; a run takes at most one")
        self.has_batch = bool(self._transform_batch)
        self.has_loss = bool(self._transform_loss)
        self.has_gradients = bool(self._transform_gradients)
        self.has_after_step = bool(self._after_step)

    @classmethod
    def build(cls, specs: Sequence[Any]) -> "MethodStack":
        """From ``MethodSpec``s (``.name``, ``.options``) or ``(name, options)`` pairs."""
        built = []
        for i, s in enumerate(specs):
            name, options = (s.name, s.options) if hasattr(s, "name") else s
            built.append(build_method_at(name, dict(options), f"methods[{i}]"))
        return cls(built)

    def __len__(self) -> int:
        return len(self.methods)

    def setup(self, model: nn.Module, run: RunContext) -> None:
        for i, m in enumerate(self.methods):
            m.attach(run, i)
            m.setup(model, run)

    def make_optimizer(self, model: nn.Module, default: Callable[[], torch.optim.Optimizer]) -> torch.optim.Optimizer:
        return self._make_optimizer[0].make_optimizer(model, default) if self._make_optimizer else default()

    def transform_batch(self, batch: Any, step: int) -> Any:
        for m in self._transform_batch:
            batch = m.transform_batch(batch, step)
        return batch

    def transform_loss(self, loss: Tensor, outputs: Tensor, batch: Any, step: int) -> Tensor:
        for m in self._transform_loss:
            loss = m.transform_loss(loss, outputs, batch, step)
        return loss

    def transform_gradients(self, model: nn.Module, step: int) -> None:
        for m in self._transform_gradients:
            m.transform_gradients(model, step)

    def after_step(self, model: nn.Module, step: int) -> None:
        for m in self._after_step:
            m.after_step(model, step)

    def state_dict(self) -> list[dict[str, Any]]:
        return [m.state_dict() for m in self.methods]

    def load_state_dict(self, states: Sequence[Mapping[str, Any]]) -> None:
        if len(states) != len(self.methods):
            raise ConfigError(f"checkpoint holds the state of {len(states)} methods, the run has {len(self.methods)}")
        for m, s in zip(self.methods, states):
            m.load_state_dict(s)
