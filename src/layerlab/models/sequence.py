"""The sequence backbone: embeddings, N blocks of (mixer, channel mixer) residual sub-layers, head.

The residual sub-layer is written once, in ``Residual``; the norm placement is its argument.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import ConfigError, ShapeError, unknown_name
from ..registry import build


NORM_PLACES = ("pre", "post", "peri")
EMBED_STD = 1.0  # nn.Embedding's default; with GPT-2's 0.02 MQAR's recall transition came much later
HEAD_STD = 0.02


class Residual(nn.Module):
    r"""A residual sub-layer around a block ``f``, with the norm placed by ``place``::

        "pre":  x <- x + f(norm_in(x))                 (Pre-LN)
        "post": x <- norm_post(x + f(x))               (Post-LN; Vaswani et al. 2017)
        "peri": x <- x + norm_out(f(norm_in(x)))       (Peri-LN; Kim et al. 2025, arXiv:2502.02732)

    Peri-LN: "Peri-LN: Revisiting Normalization Layer in the Transformer Architecture", 2025,
    arXiv:2502.02732 (v1 was titled "... Revisiting Layer Normalization ..."). Only the norms a
    placement uses exist as submodules, built by calling ``make_norm()`` (each call a fresh norm).
    Keyword arguments of ``forward`` go to ``f`` (e.g. a mixer's ``mode``).
    """

    def __init__(self, f: nn.Module, *, place: str, make_norm: Callable[[], nn.Module]) -> None:
        super().__init__()
        if place not in NORM_PLACES:
            raise unknown_name("norm placement", place, NORM_PLACES)
        self.place = place
        self.f = f
        self.norm_in = make_norm() if place in ("pre", "peri") else None
        self.norm_out = make_norm() if place == "peri" else None
        self.norm_post = make_norm() if place == "post" else None

    def forward(self, x: Tensor, **f_kwargs: Any) -> Tensor:
        if self.place == "pre":
            return x + self.f(self.norm_in(x), **f_kwargs)
        if self.place == "post":
            return self.norm_post(x + self.f(x, **f_kwargs))
        return x + self.norm_out(self.f(self.norm_in(x), **f_kwargs))

    def extra_repr(self) -> str:
        return f"place={self.place!r}"


def norm_factory(spec: Any, d_model: int) -> Callable[[], nn.Module]:
    """A function building a fresh ``spec.norm`` of width ``d_model`` each call."""
    return lambda: build("norm", spec.norm, d_model, **spec.norm_options)


def final_norm(spec: Any, d_model: int) -> nn.Module:
    """The norm before the head: needed after pre/peri sub-layers, whose residual stream is
    unnormalized; with post the stream leaves the last sub-layer normalized already."""
    return norm_factory(spec, d_model)() if spec.norm_place in ("pre", "peri") else nn.Identity()


class Block(nn.Module):
    """One layer: a residual sequence-mixer sub-layer, then a residual channel-mixer sub-layer."""

    def __init__(self, spec: Any) -> None:
        super().__init__()
        d = spec.d_model
        make_norm = norm_factory(spec, d)
        mixer = build("mixer", spec.mixer, d, **spec.mixer_options)
        channel = build("channel", spec.channel, d, **spec.channel_options)
        self.mixer = Residual(mixer, place=spec.norm_place, make_norm=make_norm)
        self.channel = Residual(channel, place=spec.norm_place, make_norm=make_norm)

    def forward(self, x: Tensor, mode: str | None = None) -> Tensor:
        return self.channel(self.mixer(x, mode=mode))


class SequenceModel(nn.Module):
    r"""Token sequence model: logits = head(final_norm(blocks(E[tokens] + P[positions]))).

    Parts:
        - token embedding ``E`` (vocab_size x d_model), normal std 1 (PyTorch's default);
        - learned positions ``P`` (max_length x d_model), normal std 1, if
          ``spec.positions == "learned"`` (``"none"``: no positional input; the mixer must supply
          order, and inputs longer than ``max_length`` are then allowed);
        - ``spec.n_layers`` ``Block`` s, each ``Residual(mixer)`` then ``Residual(channel)`` with
          norm placement ``spec.norm_place``; blocks come from ``layerlab.build`` and keep their
          own initialization (this class never re-initializes them);
        - a final norm for "pre" and "peri" (identity for "post", whose stream is normalized);
        - a linear head ``d_model -> n_outputs``, weight normal std 0.02, bias zero.

    Shape: tokens ``(B, L)`` integer, ``L <= max_length`` with learned positions
    -> logits ``(B, L, n_outputs)``. Causal when the mixer is.

    ``forward(tokens, mode=None)`` passes ``mode`` to every mixer (None: each mixer's default).

    Not done here: weight tying, depth-scaled init of output projections, embedding norms.
    """

    def __init__(self, spec: Any, *, vocab_size: int, n_outputs: int, max_length: int) -> None:
        super().__init__()
        if vocab_size < 1 or n_outputs < 1 or max_length < 1:
            raise ConfigError(
                f"SequenceModel needs vocab_size, n_outputs, max_length >= 1; got "
                f"{vocab_size}, {n_outputs}, {max_length}"
            )
        d = spec.d_model
        self.spec = spec
        self.max_length = int(max_length)
        self.embed = nn.Embedding(vocab_size, d)
        self.pos = nn.Embedding(max_length, d) if spec.positions == "learned" else None
        self.blocks = nn.ModuleList(Block(spec) for _ in range(spec.n_layers))
        self.norm = final_norm(spec, d)
        self.head = nn.Linear(d, n_outputs)
        self._init_own_parameters()

    def _init_own_parameters(self) -> None:
        """Initialize the embeddings and the head only: the blocks own their initialization."""
        nn.init.normal_(self.embed.weight, std=EMBED_STD)
        if self.pos is not None:
            nn.init.normal_(self.pos.weight, std=EMBED_STD)
        nn.init.normal_(self.head.weight, std=HEAD_STD)
        nn.init.zeros_(self.head.bias)

    def forward(self, tokens: Tensor, mode: str | None = None) -> Tensor:
        if tokens.dim() != 2 or tokens.dtype.is_floating_point or tokens.dtype.is_complex:
            raise ShapeError(
                f"SequenceModel expects integer tokens of shape (B, L); got {tuple(tokens.shape)} "
                f"{tokens.dtype}"
            )
        L = tokens.shape[1]
        x = self.embed(tokens)
        if self.pos is not None:
            if L > self.max_length:
                raise ShapeError(
                    f"input length {L} exceeds max_length {self.max_length} of the learned "
                    f"positions; use shorter inputs or positions = 'none'"
                )
            x = x + self.pos(torch.arange(L, device=tokens.device))
        for block in self.blocks:
            x = block(x, mode=mode)
        return self.head(self.norm(x))
