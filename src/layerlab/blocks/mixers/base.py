"""The base class of sequence mixers: (B, L, D) -> (B, L, D), causal, with named forms."""
from __future__ import annotations

from typing import ClassVar

from torch import Tensor, nn

from ...errors import ConfigError, ShapeError


class Mixer(nn.Module):
    """A causal sequence mixer ``(B, L, D) -> (B, L, D)`` with one or more forms of its forward.

    ``modes`` names the forms; the first is the default (the fast form) and ``"reference"`` is
    always present: the equation written out plainly, against which the fast form is tested.
    ``forward(x, mode=None)`` checks the input and the mode, then calls ``_forward(x, mode)``.
    Output position ``t`` depends only on input positions ``<= t``.
    """

    modes: ClassVar[tuple[str, ...]] = ("reference",)

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

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, modes={self.modes}"
