"""The base class of sequence mixers: (B, L, D) -> (B, L, D), causal, with named forms."""
from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from ...errors import ConfigError, ShapeError


State = tuple[Tensor, ...]


def state_numel(state: State) -> int:
    """Real scalars held by a recurrent state: a complex element counts as two."""
    return sum(t.numel() * (2 if t.is_complex() else 1) for t in state)


class Mixer(nn.Module):
    """A causal sequence mixer ``(B, L, D) -> (B, L, D)`` with one or more forms of its forward.

    ``modes`` names the forms; the first is the default (the fast form) and ``"reference"`` is
    always present: the equation written out plainly, against which the fast form is tested.
    ``forward(x, mode=None)`` checks the input and the mode, then calls ``_forward(x, mode)``.
    Output position ``t`` depends only on input positions ``<= t``.

    A recurrent mixer (``recurrent = True``) also runs token by token for inference:
    ``state = init_state(B)``, then ``y_t, state = step(x_t, state)`` with ``x_t, y_t`` of shape
    ``(B, D)``; running ``step`` over a sequence equals ``forward``. The state is a tuple of
    tensors of fixed size (it does not grow with length), and ``state_size`` is measured from
    the tensors ``init_state`` returns, never written by hand.
    """

    modes: ClassVar[tuple[str, ...]] = ("reference",)
    # names of the block's own parameters (relative to the block) that weight decay must skip,
    # e.g. a state-space model's eigenvalue parameters; the optimizer finds this attribute on
    # any module (see layerlab.train.optim)
    no_weight_decay: ClassVar[tuple[str, ...]] = ()

    def __init__(self, d_model: int) -> None:
        super().__init__()
        if int(d_model) < 1:
            raise ConfigError(f"{type(self).__name__}: d_model must be >= 1, got {d_model}")
        self.d_model = int(d_model)

    def forward(self, x: Tensor, mode: str | None = None) -> Tensor:
        if x.dim() != 3 or x.shape[-1] != self.d_model:
            raise ShapeError(
                f"{type(self).__name__} expects input of shape (B, L, D) with D = d_model = "
                f"{self.d_model}; got {tuple(x.shape)}"
            )
        mode = self.modes[0] if mode is None else mode
        if mode not in self.modes:
            raise ConfigError(
                f"{type(self).__name__} has no mode {mode!r}; modes: {', '.join(self.modes)} "
                f"(default {self.modes[0]!r})"
            )
        return self._forward(x, mode)

    def _forward(self, x: Tensor, mode: str) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    # --- token-by-token inference (recurrent mixers) ------------------------------------
    recurrent: ClassVar[bool] = False

    def init_state(self, batch_size: int, *, device: torch.device | str | None = None,
                   dtype: torch.dtype | None = None) -> State:
        """The state before the first token: a tuple of tensors with leading dim ``batch_size``.
        ``device``/``dtype`` default to the mixer's parameters'."""
        raise NotImplementedError(f"{type(self).__name__} has no recurrent state (it is not a recurrent mixer)")

    def step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        """One token: ``x_t`` (B, D) and the state after ``t - 1`` tokens -> ``(y_t (B, D), state)``."""
        if not self.recurrent:
            raise NotImplementedError(f"{type(self).__name__} has no step(): it is not a recurrent mixer")
        if x_t.dim() != 2 or x_t.shape[-1] != self.d_model:
            raise ShapeError(
                f"{type(self).__name__}.step expects x_t of shape (B, D) with D = d_model = "
                f"{self.d_model}; got {tuple(x_t.shape)}"
            )
        return self._step(x_t, tuple(state))

    def _step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:  # pragma: no cover - abstract
        raise NotImplementedError

    def step_loop(self, x: Tensor) -> Tensor:
        """The token-by-token form of a recurrent mixer: ``state = init_state(B)``, then
        ``y_t, state = _step(x_t, state)`` for ``t = 0 .. L-1``; ``x`` (B, L, D) -> (B, L, D).
        A recurrence's ``"reference"`` mode is this loop, so the reference reads like the
        paper's equation for one token (written once, in ``_step``)."""
        state = self.init_state(x.shape[0], device=x.device, dtype=x.dtype)
        ys = []
        for t in range(x.shape[1]):
            y_t, state = self._step(x[:, t], state)
            ys.append(y_t)
        return torch.stack(ys, dim=1)

    @property
    def state_size(self) -> int:
        """Real scalars of recurrent state per sequence, measured from ``init_state(1)``."""
        return state_numel(self.init_state(1))

    def _factory(self, device: torch.device | str | None, dtype: torch.dtype | None) -> dict:
        """``device``/``dtype`` for new tensors, defaulting to those of the first parameter."""
        p = next(self.parameters(), None)
        return {"device": device if device is not None else (p.device if p is not None else None),
                "dtype": dtype if dtype is not None else (p.dtype if p is not None else None)}

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, modes={self.modes}"


class MultiHeadMixer(Mixer):
    """A mixer whose ``d_model`` splits evenly into ``n_heads`` heads (its widths are multiples
    of the head count; the registry passes the constructor's default when none is given)."""

    @classmethod
    def width_multiple(cls, *, n_heads: int, **_: object) -> int:
        return int(n_heads)
