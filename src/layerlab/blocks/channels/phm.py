"""Parameterized hypercomplex multiplication (PHM): a linear map whose weight is a sum of n
Kronecker products, and the GELU MLP built from two such maps."""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...errors import ConfigError
from ...registry import Paper, register
from .._common import check_hidden_options, check_last_dim, wide_dtype

PHM_MODES = ("auto", "factored", "kron")


def _check_n(n: Any) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"phm: n (the number of hypercomplex components) must be an integer >= 1, got {n!r}")
    return n


class PHMLinear(nn.Module):
    r"""Linear layer with a parameterized hypercomplex multiplication (PHM) weight.

    Paper: Zhang et al., "Beyond Fully-Connected Layers with Quaternions: Parameterization of
    Hypercomplex Multiplications with 1/n Parameters", 2021, arXiv:2102.08597 (Sec. 3.2, Eq. 3.1-3.2);
    the convolutional family is Grassucci et al., "PHNNs: Lightweight Neural Networks via
    Parameterized Hypercomplex Convolutions", 2021, arXiv:2110.04176.

    Equation, with ``k = out_features`` and ``d = in_features``::

        y = H x + b,     H = sum_{i=1}^{n} A_i ⊗ S_i,
        A_i in R^{n x n}  (``A``, shape (n, n, n): the learned multiplication rule),
        S_i in R^{k/n x d/n}  (``S``, shape (n, k/n, d/n)).

    ``H`` has ``n^3 + k d / n`` free parameters instead of ``k d`` (plus ``k`` for the bias), i.e.
    about 1/n of a dense layer. For n = 1 it is a dense layer (``H = A_1 S_1``).

    Shape: ``(..., in_features) -> (..., out_features)``.

    Forms (``forward(x, mode=...)``):
        ``"kron"``: the reference form ``F.linear(x, self.weight(), b)`` with ``H`` built
        explicitly (n Kronecker products summed: ``n k d`` multiply-adds per call, independent of
        the batch) and one dense GEMM of ``N k d`` for N rows.
        ``"factored"``: never builds ``H``. With ``x`` reshaped into n blocks ``X`` (n, d/n),
        block ``p`` of ``y`` is ``Y_p = sum_i sum_q A_i[p, q] S_i X_q``; contracting in the cheaper
        order this costs ``N (k d + n^2 min(k, d))`` multiply-adds and holds an intermediate
        n times the size of the smaller of input and output per row.
        ``"auto"`` (default): the form with fewer multiply-adds, i.e. ``"factored"`` only when
        ``N n min(k, d) < k d`` (few rows: single-token inference of a large layer).
        The trade: the factored form saves the ``k d`` weight buffer and the per-call ``n k d``
        construction, but the per-row work is not smaller than the dense GEMM (the 1/n saving is in
        parameters, not in FLOPs), it adds ``n^2 min(k, d)`` per row, and it runs as batched
        small contractions that are less efficient than one GEMM. At the arena's batch sizes
        ``"auto"`` picks ``"kron"``.

    Initialization (derivation): each entry of ``H`` is
    ``H[(p,a),(q,b)] = sum_i A_i[p,q] S_i[a,b]``. We draw ``S`` i.i.d. U(-1/sqrt(d), 1/sqrt(d))
    (variance ``1/(3d)``, the dense layer's ``nn.Linear`` default) and, for every block ``(p, q)``,
    the vector ``(A_1[p,q], ..., A_n[p,q])`` uniformly on the unit sphere of R^n. Then, given
    ``A``, ``Var(H[(p,a),(q,b)]) = sum_i A_i[p,q]^2 Var(S) = 1/(3d)`` exactly: ``H`` has the
    entry variance of a fan-in scaled dense layer for every draw of ``A`` (an i.i.d. normal
    ``A`` with variance 1/n matches only in expectation: with n^3 = 64 values of ``A`` its
    empirical std would scatter by ~9%). Bias U(-1/sqrt(d), 1/sqrt(d)) as ``nn.Linear``.

    Deviations: the paper does not state an initialization; the one above is ours.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        n: int = 4,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        n = _check_n(n)
        for name, width in (("in_features", in_features), ("out_features", out_features)):
            if width < 1 or width % n:
                raise ConfigError(
                    f"PHMLinear: {name} = {width} must be a positive multiple of n = {n}; "
                    f"choose {name} divisible by n (e.g. {max(n, n * round(width / n))}) or an n dividing it"
                )
        factory = {"device": device, "dtype": dtype}
        self.in_features, self.out_features, self.n = int(in_features), int(out_features), n
        self.A = nn.Parameter(torch.empty(n, n, n, **factory))
        self.S = nn.Parameter(torch.empty(n, out_features // n, in_features // n, **factory))
        self.bias = nn.Parameter(torch.empty(out_features, **factory)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = self.in_features ** -0.5
        with torch.no_grad():
            a = torch.randn(self.n, self.n, self.n, device=self.A.device,
                            dtype=wide_dtype(self.A.dtype))
            self.A.copy_(a / a.norm(dim=0, keepdim=True))  # (A_1[p,q], ..., A_n[p,q]) on the unit sphere
            nn.init.uniform_(self.S, -bound, bound)
            if self.bias is not None:
                nn.init.uniform_(self.bias, -bound, bound)

    def weight(self) -> Tensor:
        """The explicit weight ``H = sum_i kron(A_i, S_i)``, shape (out_features, in_features)."""
        k, d = self.out_features, self.in_features
        # kron(A_i, S_i)[(p,a),(q,b)] = A_i[p,q] S_i[a,b]; summing over i is one contraction.
        return torch.einsum("ipq,iab->paqb", self.A, self.S).reshape(k, d)

    def _factored(self, x: Tensor) -> Tensor:
        n, k, d = self.n, self.out_features, self.in_features
        X = x.reshape(*x.shape[:-1], n, d // n)
        if d <= k:  # mix the n blocks of x by A first: the intermediate has n d values per row
            U = torch.einsum("ipq,...qb->...ipb", self.A, X)
            Y = torch.einsum("...ipb,iab->...pa", U, self.S)
        else:  # apply the S_i first: the intermediate has n k values per row
            Z = torch.einsum("...qb,iab->...iqa", X, self.S)
            Y = torch.einsum("ipq,...iqa->...pa", self.A, Z)
        y = Y.reshape(*x.shape[:-1], k)
        return y + self.bias if self.bias is not None else y

    def forward(self, x: Tensor, mode: str = "auto") -> Tensor:
        check_last_dim(self, x, self.in_features, "in_features")
        if mode not in PHM_MODES:
            raise ConfigError(f"PHMLinear: mode must be one of {PHM_MODES}, got {mode!r}")
        if mode == "auto":
            rows = x.numel() // self.in_features
            small = min(self.in_features, self.out_features)
            mode = "factored" if rows * self.n * small < self.in_features * self.out_features else "kron"
        if mode == "factored":
            return self._factored(x)
        return F.linear(x, self.weight(), self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, n={self.n}, bias={self.bias is not None}"


@register(
    "channel",
    "phm",
    paper=Paper(
        "Beyond Fully-Connected Layers with Quaternions: Parameterization of Hypercomplex "
        "Multiplications with 1/n Parameters",
        2021,
        "2102.08597",
    ),
)
class PHMMLP(nn.Module):
    r"""The GELU MLP with both linear maps replaced by PHM layers (``PHMLinear``).

    Paper: Zhang et al., "Beyond Fully-Connected Layers with Quaternions: Parameterization of
    Hypercomplex Multiplications with 1/n Parameters", 2021, arXiv:2102.08597 (the PHM-Transformer
    replaces the feed-forward layers' weights by PHM layers, Sec. 4); Grassucci et al., "PHNNs",
    2021, arXiv:2110.04176.

    Equation::

        PHM-MLP(x) = H_2 GELU(H_1 x + b_1) + b_2,   H_j = sum_{i=1}^{n} A^{(j)}_i ⊗ S^{(j)}_i

    with ``H_1: d_model -> hidden`` (``fc1``) and ``H_2: hidden -> d_model`` (``fc2``).
    ``hidden = round(expansion * d_model)`` rounded up to a multiple of ``n``, unless ``hidden``
    is given (it must then be a multiple of ``n``).

    Shape: ``(..., D) -> (..., D)``; ``D`` must be a multiple of ``n`` (``width_multiple = n``).

    Parameters: ``2 n^3 + 2 D hidden / n`` (+ biases): about 1/n of the dense MLP's.

    Initialization: see ``PHMLinear``: each effective weight ``H_j`` has the entry variance
    ``1/(3 fan_in)`` of the dense MLP's ``nn.Linear`` default; biases U(-1/sqrt(fan_in), 1/sqrt(fan_in)).

    Options: ``n`` (components, default 4), ``hidden``, ``expansion`` (default 4), ``bias``,
    ``dropout`` (on the block's output), ``device``, ``dtype``. ``forward(x, mode=...)``
    passes ``mode`` ("auto", "factored", "kron") to both PHM layers.
    """

    @classmethod
    def width_multiple(cls, *, n: int = 4, **_: Any) -> int:
        """d_model splits into n hypercomplex components."""
        return int(n)

    def __init__(
        self,
        d_model: int,
        *,
        n: int = 4,
        hidden: int | None = None,
        expansion: float = 4.0,
        bias: bool = True,
        dropout: float = 0.0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        n = _check_n(n)
        check_hidden_options("phm", hidden, expansion, dropout)
        if d_model % n:
            raise ConfigError(
                f"phm: d_model = {d_model} is not divisible by n = {n}; choose d_model a multiple of n "
                f"(e.g. {n * max(1, round(d_model / n))}) or an n that divides d_model"
            )
        if hidden is not None and int(hidden) % n:
            raise ConfigError(f"phm: hidden = {hidden} must be a multiple of n = {n}; "
                              f"choose e.g. hidden = {n * math.ceil(int(hidden) / n)} or leave it None")
        self.d_model, self.n = int(d_model), n
        self.hidden = int(hidden) if hidden is not None else n * math.ceil(max(1, round(expansion * d_model)) / n)
        factory = {"device": device, "dtype": dtype}
        self.fc1 = PHMLinear(d_model, self.hidden, n=n, bias=bias, **factory)
        self.fc2 = PHMLinear(self.hidden, d_model, n=n, bias=bias, **factory)
        self.dropout = nn.Dropout(dropout)

    def reset_parameters(self) -> None:
        self.fc1.reset_parameters()
        self.fc2.reset_parameters()

    def forward(self, x: Tensor, mode: str = "auto") -> Tensor:
        check_last_dim(self, x)
        return self.dropout(self.fc2(F.gelu(self.fc1(x, mode)), mode))

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, hidden={self.hidden}, n={self.n}"
