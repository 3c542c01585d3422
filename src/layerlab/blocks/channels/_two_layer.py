"""What the KAN family's channel mixers share: two layers ``d_model -> hidden -> d_model`` and
dropout after them (KAN, GR-KAN, AF-KAN, S-KAN differ only in their layer)."""
from __future__ import annotations

from torch import Tensor, nn

from .._common import check_last_dim


class TwoLayerChannel(nn.Module):
    """A subclass sets ``d_model``, ``hidden``, ``layer1``, ``layer2`` and ``dropout``. Layers with
    several forms take the ``mode`` given to ``forward``, unchanged."""

    d_model: int
    hidden: int

    def reset_parameters(self) -> None:
        self.layer1.reset_parameters()
        self.layer2.reset_parameters()

    def forward(self, x: Tensor, *mode: str) -> Tensor:
        check_last_dim(self, x)
        return self.dropout(self.layer2(self.layer1(x, *mode), *mode))

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, hidden={self.hidden}"
