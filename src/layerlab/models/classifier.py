"""The vector classifier backbone: input projection, residual channel-mixer sub-layers, head."""
from __future__ import annotations

import math
from typing import Any

from torch import Tensor, nn

from ..errors import ConfigError, ShapeError
from ..registry import build
from .sequence import EMBED_STD, Residual, final_norm, norm_factory



class Classifier(nn.Module):
    r"""Classifier of feature vectors: logits = head(final_norm(layers(W_in x + b_in))).

    Parts:
        - input projection ``Linear(in_features, d_model)``, weight normal with std
          ``1 / sqrt(in_features)`` (variance preserving for unit-variance features), bias zero;
        - ``spec.n_layers`` ``Residual`` sub-layers (the sequence backbone's, same placements)
          around ``build("channel", spec.channel, d_model, **spec.channel_options)``; the blocks
          keep their own initialization;
        - a final norm for "pre" and "peri" (identity for "post");
        - a linear head ``d_model -> n_classes``, weight normal std 0.02, bias zero.

    Shape: ``(B, F) -> (B, n_classes)``. ``spec.mixer`` and ``spec.positions`` are unused.
    """

    def __init__(self, spec: Any, *, in_features: int, n_classes: int) -> None:
        super().__init__()
        if in_features < 1 or n_classes < 1:
            raise ConfigError(f"Classifier needs in_features, n_classes >= 1; got {in_features}, {n_classes}")
        d = spec.d_model
        self.spec = spec
        self.in_features = int(in_features)
        self.proj = nn.Linear(in_features, d)
        make_norm = norm_factory(spec, d)
        self.layers = nn.ModuleList(
            Residual(build("channel", spec.channel, d, **spec.channel_options), place=spec.norm_place,
                     make_norm=make_norm)
            for _ in range(spec.n_layers)
        )
        self.norm = final_norm(spec, d)
        self.head = nn.Linear(d, n_classes)
        self._init_own_parameters()

    def _init_own_parameters(self) -> None:
        """Initialize the projection and the head only: the blocks own their initialization."""
        nn.init.normal_(self.proj.weight, std=1.0 / math.sqrt(self.in_features))
        nn.init.zeros_(self.proj.bias)
        nn.init.normal_(self.head.weight, std=EMBED_STD)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 2 or x.shape[1] != self.in_features:
            raise ShapeError(
                f"Classifier expects input of shape (B, F) with F = in_features = "
                f"{self.in_features}; got {tuple(x.shape)}"
            )
        h = self.proj(x)
        for layer in self.layers:
            h = layer(h)
        return self.head(self.norm(h))
