"""The deep linear network: y = W_L ... W_1 x, the testbed with closed-form learning dynamics."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..errors import ConfigError, ShapeError, unknown_name

INITS = ("small", "orthogonal", "balanced")


def semi_orthogonal(rows: int, cols: int, *, generator: torch.Generator | None = None) -> Tensor:
    """A Haar-random (rows x cols) float64 matrix with orthonormal columns (rows >= cols) or
    orthonormal rows (rows < cols): Q of the QR of a Gaussian, signs fixed by diag(R)."""
    tall = max(rows, cols), min(rows, cols)
    g = torch.randn(*tall, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(g, mode="reduced")
    q = q * torch.sign(torch.diagonal(r)).where(torch.diagonal(r) != 0, torch.ones(()))
    return q if rows >= cols else q.T


def balanced_factors(
    target: Tensor, depth: int, width: int, *, generator: torch.Generator | None = None
) -> list[Tensor]:
    r"""Factors ``[W_1, ..., W_L]`` with ``W_L ... W_1 = target`` that are balanced:
    ``W_{l+1}^T W_{l+1} = W_l W_l^T`` for ``l = 1 .. L-1``.

    With ``target = U S V^T`` (thin SVD, rank ``r = min(out, in)``) and random ``Q_l`` (width x r)
    with orthonormal columns::

        W_1 = Q_1 S^{1/L} V^T,   W_l = Q_l S^{1/L} Q_{l-1}^T,   W_L = U S^{1/L} Q_{L-1}^T

    so the product telescopes to ``U S V^T`` (``Q^T Q = I``) and both sides of the balancedness
    condition equal ``Q_l S^{2/L} Q_l^T``. Needs ``width >= r`` when ``depth > 1``
    (Arora et al. 2018, arXiv:1810.02281, Procedure 1, with random orthogonal embeddings in
    place of zero-padded identities). Computed in float64.
    """
    target = target.to(torch.float64)
    out_features, in_features = target.shape
    r = min(out_features, in_features)
    if depth > 1 and width < r:
        raise ConfigError(
            f"balanced init needs width >= min(in_features, out_features) = {r}, got width={width}; "
            "widen the network or use init = 'small' or 'orthogonal'"
        )
    U, S, Vh = torch.linalg.svd(target, full_matrices=False)
    if depth == 1:
        return [U @ torch.diag(S) @ Vh]
    s = torch.diag(S ** (1.0 / depth))
    Q = [semi_orthogonal(width, r, generator=generator) for _ in range(depth - 1)]
    factors = [Q[0] @ s @ Vh]
    factors += [Q[l] @ s @ Q[l - 1].T for l in range(1, depth - 1)]
    factors.append(U @ s @ Q[-1].T)
    return factors


class DeepLinear(nn.Module):
    r"""Deep linear network, no biases, no nonlinearity::

        y = W_L W_{L-1} ... W_1 x

    Paper: Saxe, McClelland & Ganguli, "Exact solutions to the nonlinear dynamics of learning in
    deep linear neural networks", 2013, arXiv:1312.6120.

    Shapes: ``W_1: (width, in)``, ``W_l: (width, width)``, ``W_L: (out, width)``; ``depth = 1`` is
    the single matrix ``W_1: (out, in)`` (``width`` unused). Forward ``(..., in) -> (..., out)``,
    applied layer by layer; ``product()`` returns ``W_L ... W_1`` (out x in).

    Initialization (``init``):
        - ``"small"``: entries i.i.d. ``N(0, init_scale^2)``.
        - ``"orthogonal"``: each ``W_l`` Haar-random (semi-)orthogonal, scale 1
          (``W^T W = I`` if tall or square, ``W W^T = I`` if wide), via QR of a Gaussian
          (Saxe et al. 2013, Sec. 3).
        - ``"balanced"``: a target product ``A`` with entries i.i.d. ``N(0, init_scale^2)`` is
          factored by ``balanced_factors`` so that ``W_L ... W_1 = A`` and
          ``W_{l+1}^T W_{l+1} = W_l W_l^T`` (Arora, Cohen, Golowich & Hu 2018, arXiv:1810.02281;
          balancedness as in Arora, Cohen & Hazan 2018, arXiv:1802.06509). Needs
          ``width >= min(in, out)``.

    Random draws use ``generator`` (default: torch's global RNG), in float64, then cast to ``dtype``.
    """

    def __init__(
        self,
        *,
        in_features: int,
        out_features: int,
        width: int,
        depth: int,
        init: str = "orthogonal",
        init_scale: float = 1e-3,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if min(in_features, out_features, width, depth) < 1:
            raise ConfigError(
                f"DeepLinear needs in_features, out_features, width, depth >= 1; got "
                f"{in_features}, {out_features}, {width}, {depth}"
            )
        if init not in INITS:
            raise unknown_name("deep linear init", init, INITS)
        if init in ("small", "balanced") and not init_scale > 0:
            raise ConfigError(f"init_scale must be > 0 for init {init!r}, got {init_scale}")
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.width, self.depth = int(width), int(depth)
        self.init, self.init_scale = init, float(init_scale)
        dims = [in_features] + [width] * (depth - 1) + [out_features]
        self.shapes = [(dims[l + 1], dims[l]) for l in range(depth)]
        matrices = self._draw(generator)
        dtype = dtype or torch.get_default_dtype()
        self.weights = nn.ParameterList(nn.Parameter(w.to(device=device, dtype=dtype)) for w in matrices)

    def _draw(self, generator: torch.Generator | None) -> list[Tensor]:
        if self.init == "small":
            return [self.init_scale * torch.randn(*s, generator=generator, dtype=torch.float64)
                    for s in self.shapes]
        if self.init == "orthogonal":
            return [semi_orthogonal(*s, generator=generator) for s in self.shapes]
        target = self.init_scale * torch.randn(
            self.out_features, self.in_features, generator=generator, dtype=torch.float64
        )
        return balanced_factors(target, self.depth, self.width, generator=generator)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() < 1 or x.shape[-1] != self.in_features:
            raise ShapeError(
                f"DeepLinear expects input of shape (..., in_features) with in_features = "
                f"{self.in_features}; got {tuple(x.shape)}"
            )
        for w in self.weights:
            x = x @ w.T
        return x

    def product(self) -> Tensor:
        """The end-to-end matrix W_L ... W_1, shape (out_features, in_features)."""
        p = self.weights[0]
        for w in self.weights[1:]:
            p = w @ p
        return p

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, width={self.width}, "
                f"depth={self.depth}, init={self.init!r}, init_scale={self.init_scale}")
