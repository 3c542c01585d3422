r"""DataMUX for an MLP classifier: N inputs multiplexed into one forward pass, then demultiplexed.

Paper: Murahari, Jimenez, Yang & Narasimhan, "DataMUX: Data Multiplexing for Neural Networks",
NeurIPS 2022, arXiv:2202.09318.

The paper (abstract and Section 3, checked against the abstract, the project page and the authors'
code ``models/multiplexing.py``): a *multiplexing* layer applies a fixed transformation
``phi^i`` to each of N inputs and combines them into one representation of the size of a single
input,

    x^{1:N} = (1/N) sum_{i=1}^{N} phi^i(x^i)          (Gaussian Hadamard: phi^i(x) = x * v^i)
    x^{1:N} = (1/sqrt(N)) sum_{i=1}^{N} Q^i x^i       (random orthogonal Q^i, the code's "random_ortho")

which the base network processes once; a *demultiplexing* layer turns the network's output ``h``
back into N representations, ``h^i = demux^i(h)`` (the "MLP demux": one small MLP per index), each
read out by the shared classifier. Mux and demux are trained end to end with the base network.
In the Transformer the transformation acts on token embeddings; here it acts on the MLP's first
hidden layer, ``phi^i(W_in x^i)``, the learned embedding of a vector input.

This model (widths as ``claims/measures/_digits_mlp.relu_mlp``)::

    h^i_0 = W_in x^i + b_in                                   (shared embedding)
    h     = mux(h^1_0, ..., h^N_0)                            (fixed phi^i, averaged)
    h     = ReLU(... ReLU(W_2 ReLU(h) + b_2) ...)             (base network: depth - 1 hidden Linear)
    y^i   = W_out ReLU(D_i h + c_i) + b_out                   (demux head i, shared classifier)

``v^i`` are Gaussian vectors rescaled to norm ``sqrt(width)``, ``Q^i`` Haar-random orthogonal
matrices, both buffers drawn from ``torch.Generator().manual_seed(seed)``. With ``n = 1`` the
multiplexer and the demultiplexer are the identity: the model *is* the plain ReLU MLP (tested).

Shape: ``forward``: ``(B, N, in_features) -> (B, N, n_classes)``; ``predict``: ``(M, in_features)
-> (M, n_classes)``, consecutive groups of N examples multiplexed together (the last group filled
up with the first examples). One forward pass serves N examples: the base network's cost per
example falls by N, the embedding and the demux heads still run once per example.

Differences from the paper: the demux head is ``ReLU(D_i h + c_i)`` (the paper's MLP demux adds a
GELU and LayerNorm and a shared dense layer before the classifier); no retrieval warm-up (a
Transformer-only pre-training objective).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..errors import ConfigError, ShapeError

MUXES = ("hadamard", "orthogonal")


class DataMux(nn.Module):
    """An MLP classifier that multiplexes ``n`` inputs into one forward pass (see the module docstring)."""

    def __init__(self, in_features: int, n_classes: int, *, n: int = 2, width: int = 256, depth: int = 2,
                 mux: str = "hadamard", seed: int = 0, device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__()
        if n < 1 or width < 1 or depth < 1 or in_features < 1 or n_classes < 1:
            raise ConfigError(f"DataMux: n, width, depth, in_features, n_classes must be >= 1; got "
                              f"{n}, {width}, {depth}, {in_features}, {n_classes}")
        if mux not in MUXES:
            raise ConfigError(f"DataMux: unknown mux {mux!r}; use one of {', '.join(MUXES)}")
        factory = {"device": device, "dtype": dtype}
        self.n, self.width, self.mux, self.in_features = int(n), int(width), mux, int(in_features)
        self.embed = nn.Linear(in_features, width, **factory)
        body: list[nn.Module] = [nn.ReLU()]
        for _ in range(depth - 1):
            body += [nn.Linear(width, width, **factory), nn.ReLU()]
        self.backbone = nn.Sequential(*body)
        self.demux = nn.ModuleList(nn.Sequential(nn.Linear(width, width, **factory), nn.ReLU())
                                   for _ in range(self.n if self.n > 1 else 0))
        self.head = nn.Linear(width, n_classes, **factory)
        gen = torch.Generator().manual_seed(int(seed))
        if mux == "hadamard":
            v = torch.randn(self.n, width, generator=gen, dtype=torch.float64)
            phi = v / v.norm(dim=1, keepdim=True) * math.sqrt(width)
        else:
            q, r = torch.linalg.qr(torch.randn(self.n, width, width, generator=gen, dtype=torch.float64))
            phi = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1)).unsqueeze(-2)  # Haar measure
        self.register_buffer("phi", phi.to(device=device, dtype=dtype or torch.get_default_dtype()))

    def multiplex(self, h: Tensor) -> Tensor:
        """``(B, N, width) -> (B, width)``: the fixed transforms, averaged (identity for N = 1)."""
        if self.n == 1:
            return h[:, 0]
        if self.mux == "hadamard":
            return (h * self.phi).mean(1)
        return torch.einsum("nij,bnj->bi", self.phi, h) / math.sqrt(self.n)

    def demultiplex(self, h: Tensor) -> Tensor:
        """``(B, width) -> (B, N, width)``: one head per index (identity for N = 1)."""
        if self.n == 1:
            return h[:, None]
        return torch.stack([head(h) for head in self.demux], dim=1)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 3 or x.shape[1] != self.n or x.shape[2] != self.in_features:
            raise ShapeError(f"DataMux expects input of shape (B, N, F) with N = n = {self.n} and "
                             f"F = in_features = {self.in_features}; got {tuple(x.shape)}")
        h = self.backbone(self.multiplex(self.embed(x)))
        return self.head(self.demultiplex(h))

    def predict(self, x: Tensor) -> Tensor:
        """``(M, F) -> (M, n_classes)``: consecutive groups of N examples share a forward pass."""
        if x.dim() != 2:
            raise ShapeError(f"DataMux.predict expects input of shape (M, F); got {tuple(x.shape)}")
        m = x.shape[0]
        fill = (-m) % self.n
        if fill:
            x = torch.cat([x, x[torch.arange(fill, device=x.device) % m]])
        return self.forward(x.reshape(-1, self.n, x.shape[1])).reshape(-1, self.head.out_features)[:m]
