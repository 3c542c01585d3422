"""Scalable neural network kernels (SNNK): a feed-forward layer f(Wx + b) computed as
phi(x)^T psi(W, b) with random-feature maps, and the channel mixer built from it."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...errors import ConfigError
from ...registry import Paper, register
from .._common import WideBuffers, check_hidden_options, check_last_dim, init_linear, wide_dtype

PAPER = Paper("Scalable Neural Network Kernels", 2023, "2310.13225")
ACTIVATIONS = ("exp", "sin", "cos", "arccos")


def phi(x: Tensor, omega: Tensor, activation: str) -> Tensor:
    r"""The input-side random features ``phi(x)``: ``(..., d) -> (..., m')``, ``omega`` (m, d).

    exp:       ``exp(Ω x - |x|^2 / 2) / sqrt(m)``                        (m' = m, positive random features)
    sin, cos:  ``exp(|x|^2 / 2) [cos(Ω x), sin(Ω x)] / sqrt(m)``          (m' = 2m)
    arccos:    ``relu(Ω x) / sqrt(m)``                                    (m' = m, ReLU-SNNK)
    """
    m = omega.shape[0]
    proj = x @ omega.T
    if activation == "exp":
        return torch.exp(proj - 0.5 * x.pow(2).sum(-1, keepdim=True)) / math.sqrt(m)
    if activation in ("sin", "cos"):
        radial = torch.exp(0.5 * x.pow(2).sum(-1, keepdim=True)) / math.sqrt(m)
        return radial * torch.cat([torch.cos(proj), torch.sin(proj)], dim=-1)
    if activation == "arccos":
        return F.relu(proj) / math.sqrt(m)
    raise ConfigError(f"snnk: unknown activation {activation!r}; choose one of {', '.join(ACTIVATIONS)}")


def psi(weight: Tensor, bias: Tensor | None, omega: Tensor, activation: str) -> Tensor:
    r"""The parameter-side random features ``psi(w_i, b_i)`` of every row of ``weight`` (H, d):
    result (H, m'), so that ``phi(x) @ psi(W, b).T`` estimates ``f(W x + b)``.

    exp:       ``exp(Ω w - |w|^2 / 2 + b) / sqrt(m)``
    sin:       ``exp(Ω w - |w|^2 / 2) / sqrt(m) ⊗ [sin b, cos b]``   (pairs with [cos, sin] of phi)
    cos:       ``exp(Ω w - |w|^2 / 2) / sqrt(m) ⊗ [cos b, -sin b]``
    arccos:    ``relu(Ω w) / sqrt(m)`` (the bias is added after the kernel, not inside it)
    """
    m = omega.shape[0]
    proj = weight @ omega.T  # (H, m)
    if activation == "arccos":
        return F.relu(proj) / math.sqrt(m)
    gauss = proj - 0.5 * weight.pow(2).sum(-1, keepdim=True)
    if activation == "exp":
        return torch.exp(gauss if bias is None else gauss + bias[:, None]) / math.sqrt(m)
    if activation in ("sin", "cos"):
        lognormal = torch.exp(gauss) / math.sqrt(m)
        b = torch.zeros(weight.shape[0], 1, dtype=weight.dtype, device=weight.device) if bias is None else bias[:, None]
        if activation == "sin":  # sin(z + b) = sin z cos b + cos z sin b
            return torch.cat([lognormal * torch.sin(b), lognormal * torch.cos(b)], dim=-1)
        return torch.cat([lognormal * torch.cos(b), -lognormal * torch.sin(b)], dim=-1)  # cos(z + b)
    raise ConfigError(f"snnk: unknown activation {activation!r}; choose one of {', '.join(ACTIVATIONS)}")


def exact(x: Tensor, weight: Tensor, bias: Tensor | None, activation: str) -> Tensor:
    """What the estimator's expectation is: ``f(W x + b)``; for arccos the arc-cosine kernel
    ``|x||w| (sin t + (pi - t) cos t) / (2 pi)`` (t the angle of x and w) plus b."""
    if activation == "arccos":
        nx = x.norm(dim=-1, keepdim=True)
        nw = weight.norm(dim=-1)
        cos = ((x @ weight.T) / (nx * nw)).clamp(-1.0, 1.0)
        t = torch.arccos(cos)
        k = nx * nw * (torch.sin(t) + (math.pi - t) * cos) / (2 * math.pi)
        return k if bias is None else k + bias
    z = x @ weight.T if bias is None else x @ weight.T + bias
    return {"exp": torch.exp, "sin": torch.sin, "cos": torch.cos}[activation](z)


def _check_activation(activation: str) -> None:
    if activation not in ACTIVATIONS:
        raise ConfigError(f"snnk: unknown activation {activation!r}; choose one of {', '.join(ACTIVATIONS)}")


def draw_omega(m: int, d: int, generator: torch.Generator | None = None) -> Tensor:
    """Gaussian projections ω_j ~ N(0, I_d), shape (m, d), float32, on the generator's device."""
    device = generator.device if generator is not None else None
    return torch.randn(m, d, generator=generator, device=device, dtype=torch.float32)


class SNNKLinear(WideBuffers):
    r"""Scalable neural network kernel layer: the feed-forward layer ``f(W x + b)`` replaced by
    the random-feature product ``phi(x)^T psi(W, b)``, whose expectation over the random
    projections is ``f(W x + b)``.

    Paper: Sehanobish, Choromanski, Zhao, Dubey & Likhosherstov, "Scalable Neural Network
    Kernels", 2023 (ICLR 2024), arXiv:2310.13225 (SNNK layers; universal random features, URFs).

    Equation: ``y_i = phi(x)^T psi(w_i, b_i)`` with ``ω_1..ω_m ~ N(0, I_d)`` i.i.d. (buffer
    ``omega``, (m, d)). Everything follows from the Gaussian identity, valid for complex
    ``a, c`` by analytic continuation::

        E_ω[exp(a ω^T x - a^2 |x|^2 / 2) exp(c ω^T w - c^2 |w|^2 / 2)] = exp(a c x^T w)

    * ``"exp"`` (a = c = 1, positive random features): ``E = exp(w^T x)``::

          phi(x) = exp(Ω x - |x|^2/2) / sqrt(m),   psi(w, b) = exp(Ω w - |w|^2/2 + b) / sqrt(m)

    * ``"sin"`` / ``"cos"`` (the URF with a = i on x, c = 1 on w: the Fourier transform of sin /
      cos sits on ξ = ±1/(2π), and ``Re``/``Im`` of ``exp(i x^T w)`` give cos / sin; the bias
      enters through ``sin(z + b) = sin z cos b + cos z sin b``)::

          phi(x) = exp(|x|^2/2) [cos(Ω x), sin(Ω x)] / sqrt(m)               (2m features)
          psi(w, b) = exp(Ω w - |w|^2/2) / sqrt(m) ⊗ [sin b, cos b]         (sin)
                                                     ⊗ [cos b, -sin b]        (cos)

    * ``"arccos"`` (the paper's ReLU-SNNK): ``phi(x) = relu(Ω x)/sqrt(m)``, ``psi(w) = relu(Ω w)/sqrt(m)``,
      ``y = phi(x)^T psi(w) + b``; its expectation is the arc-cosine kernel
      ``|x||w| (sin t + (π - t) cos t) / (2π)`` (t the angle between x and w), not ``relu(w^T x)``:
      the paper's example of an SNNK beyond functions of ``w^T x``.

    Each estimate is a mean of m i.i.d. terms: unbiased, with mean squared error ``σ^2(x, w)/m``;
    for exp ``σ^2 = exp(2 w^T x)(exp(|x + w|^2) - 1)``, for sin/cos ``σ^2 <= exp(|x|^2 + |w|^2)``:
    accurate only for ``|x|, |w| = O(1)``, which is why the channel mixer normalizes its input.

    Shape: ``(*, in_features) -> (*, out_features)``.

    Initialization: ``W, b`` as ``nn.Linear`` (U(-1/sqrt(in), 1/sqrt(in))); ``omega`` drawn once
    at construction from ``generator`` (torch's default generator if None) in float32, then cast
    to ``dtype`` (the same draw for every dtype); a buffer, saved in the ``state_dict``.

    Differences from the paper: the sin/cos maps are the real part of the paper's complex URF
    for the two-point Fourier transform (unbiased, no imaginary noise); the general URF for
    activations with a continuous Fourier transform (sampling ξ) and orthogonal random features
    are not implemented; ``W`` stays the trainable parameter (the paper's adapters instead
    train ``psi(W)`` directly, which makes the layer linear in its parameters).
    Statistics in float32 or wider; the output has the input dtype.
    """

    dtype_buffers = ("omega",)  # follows the module's dtype, as documented above

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        n_random_features: int = 256,
        activation: str = "sin",
        bias: bool = True,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        for name, value in (("in_features", in_features), ("out_features", out_features),
                            ("n_random_features", n_random_features)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"SNNKLinear: {name} must be an integer >= 1, got {value!r}")
        _check_activation(activation)
        factory = {"device": device, "dtype": dtype}
        self.in_features, self.out_features = in_features, out_features
        self.n_random_features, self.activation = n_random_features, activation
        self.weight = nn.Parameter(torch.empty(out_features, in_features, **factory))
        self.bias = nn.Parameter(torch.empty(out_features, **factory)) if bias else None
        omega = draw_omega(n_random_features, in_features, generator)
        self.register_buffer("omega", omega.to(device=self.weight.device, dtype=self.weight.dtype))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Re-initialize ``W`` and ``b``; the random projections are kept."""
        bound = self.in_features ** -0.5
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    @property
    def n_phi(self) -> int:
        """Length m' of the feature vectors: 2m for sin/cos, m otherwise."""
        return 2 * self.n_random_features if self.activation in ("sin", "cos") else self.n_random_features

    def phi(self, x: Tensor) -> Tensor:
        """``phi(x)``, (..., in_features) -> (..., m'), in float32 or wider."""
        ct = wide_dtype(x.dtype)
        return phi(x.to(ct), self.omega.to(ct), self.activation)

    def psi(self, dtype: torch.dtype | None = None) -> Tensor:
        """``psi(w_i, b_i)`` of every output unit, (out_features, m'), in float32 or wider."""
        ct = wide_dtype(dtype or self.weight.dtype)
        b = None if self.bias is None else self.bias.to(ct)
        return psi(self.weight.to(ct), b, self.omega.to(ct), self.activation)

    def post_bias(self, dtype: torch.dtype) -> Tensor | None:
        """The bias added after the kernel (arccos only; the others carry it inside psi)."""
        if self.activation != "arccos" or self.bias is None:
            return None
        return self.bias.to(dtype)

    def forward(self, x: Tensor) -> Tensor:
        check_last_dim(self, x, self.in_features, "in_features")
        features = self.phi(x)
        y = features @ self.psi(features.dtype).T
        b = self.post_bias(y.dtype)
        return (y if b is None else y + b).to(x.dtype)

    def exact(self, x: Tensor) -> Tensor:
        """The layer the estimator approximates: ``f(W x + b)`` (arccos: the arc-cosine kernel + b)."""
        return exact(x, self.weight, self.bias, self.activation)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"n_random_features={self.n_random_features}, activation={self.activation!r}")


@register("channel", "snnk", paper=PAPER)
class SNNKMLP(nn.Module):
    r"""Channel mixer: the MLP whose hidden layer ``f(W_1 x + b_1)`` is computed by an SNNK layer.

    Paper: Sehanobish et al., "Scalable Neural Network Kernels", 2023 (ICLR 2024),
    arXiv:2310.13225 (SNNK layers replacing feed-forward layers; bundling).

    Equation::

        x~ = r x / |x|                                   (projection onto the sphere of radius r)
        h  = phi(x~)^T psi(W_1, b_1)   ≈  f(W_1 x~ + b_1)  (SNNKLinear, f = ``activation``)
        y  = W_2 h + b_2

    Shape: ``(..., D) -> (..., D)``, position-wise.

    Bias and output map: ``b_1`` goes into ``psi`` (for exp as ``exp(b)``, for sin/cos through
    the angle-sum identity), so ``h`` estimates ``f(W_1 x~ + b_1)`` exactly in expectation;
    arccos adds it after the kernel. The output map ``W_2, b_2`` stays an ordinary linear layer,
    as in the MLP: the paper replaces feed-forward layers ``f(Wx + b)``, and the output map has
    no nonlinearity to approximate. Parameters: exactly the MLP's ``2 D hidden + hidden + D``
    (``omega`` is a buffer, not trained).

    Why normalize: the estimator's variance grows like ``exp(|x|^2 + |w|^2)``, and the backbone's
    normalized inputs have ``|x|^2 ≈ D``. On the sphere of radius ``r = 1`` (default), with
    ``|w_i|^2 ≈ 1/3`` at init, the RMS error of ``h`` is at most ``sqrt(e^{4/3} / m)`` (0.17 at
    m = 128; measured 0.10 at D = 32), for any input scale and any norm placement (projecting
    onto a sphere is the normalization option of the authors' code). Pitfall: with the
    fan-in init the pre-activations ``w_i . x~`` are small (std ~ ``1/sqrt(3D)``), so at init the
    estimation noise is as large as the signal; the block is then in effect a trained linear
    readout ``(W_2 psi^T) phi(x~)`` of 2m random Fourier features of ``x~`` (the paper's
    "disentangled" view) rather than a close copy of a sine MLP. Larger ``radius`` gives a
    sharper kernel ``exp(r^2 cos angle)`` and a noisier estimate.

    Compute (the paper's bundling): the random features do not depend on the parameters, so the
    block is ``y = (W_2 psi(W_1, b_1)^T) phi(x~) + b_2``; ``forward`` multiplies in whichever
    order costs fewer multiply-adds for the number of rows (precomputing the (D, m') matrix
    when the batch is large); both orders give the same result (tested).

    Initialization: ``W_1, b_1, W_2, b_2`` as ``nn.Linear`` (U(-1/sqrt(fan_in), 1/sqrt(fan_in)));
    ``omega`` (m, D) i.i.d. N(0, 1) from ``generator`` (default torch generator if None).

    Differences from the paper: the paper uses SNNKs mostly as adapters and to linearize
    pooler / MLP layers of pretrained models, training ``psi`` directly; here ``W_1`` is trained
    through ``psi`` so the block keeps the MLP's parametrization and parameter count. The
    input normalization and its radius are our choice.

    Options: ``hidden`` / ``expansion`` (default 4, as the MLP), ``n_random_features``
    (m, default ``hidden``; sin/cos use 2m features), ``activation`` (``"sin"`` default,
    ``"cos"``, ``"exp"``, ``"arccos"``), ``radius`` (r, default 1), ``bias``, ``dropout`` (on the
    output), ``generator``, ``device``, ``dtype``.
    """

    def __init__(
        self,
        d_model: int,
        *,
        hidden: int | None = None,
        expansion: float = 4.0,
        n_random_features: int | None = None,
        activation: str = "sin",
        radius: float = 1.0,
        bias: bool = True,
        dropout: float = 0.0,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        check_hidden_options("snnk", hidden, expansion, dropout)
        _check_activation(activation)
        if n_random_features is not None and (
            isinstance(n_random_features, bool) or not isinstance(n_random_features, int) or n_random_features < 1
        ):
            raise ConfigError(
                f"snnk: n_random_features must be an integer >= 1 (or None for m = hidden), got {n_random_features!r}"
            )
        if not (isinstance(radius, (int, float)) and math.isfinite(radius) and radius > 0):
            raise ConfigError(f"snnk: radius must be a finite number > 0 (e.g. 1.0), got {radius!r}")
        factory = {"device": device, "dtype": dtype}
        self.d_model = int(d_model)
        self.hidden = int(hidden) if hidden is not None else max(1, round(expansion * d_model))
        m = int(n_random_features) if n_random_features is not None else self.hidden
        self.radius = float(radius)
        self.fc1 = SNNKLinear(self.d_model, self.hidden, n_random_features=m, activation=activation, bias=bias,
                              generator=generator, **factory)
        self.fc2 = nn.Linear(self.hidden, self.d_model, bias=bias, **factory)
        self.dropout = nn.Dropout(dropout)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.fc1.reset_parameters()
        init_linear(self.fc2)

    def normalize(self, x: Tensor) -> Tensor:
        """``r x / |x|`` in float32 or wider."""
        x = x.to(wide_dtype(x.dtype))
        return self.radius * x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)

    def hidden_layer(self, x: Tensor) -> Tensor:
        """``h = phi(x~)^T psi(W_1, b_1) (+ b_1 for arccos)``, (..., D) -> (..., hidden), float32 or wider."""
        features = self.fc1.phi(self.normalize(x))
        h = features @ self.fc1.psi(features.dtype).T
        b = self.fc1.post_bias(h.dtype)
        return h if b is None else h + b

    def forward(self, x: Tensor, *, bundled: bool | None = None) -> Tensor:
        """``bundled``: True multiplies ``phi`` by the precomputed ``W_2 psi^T`` (D, m'), False
        goes through the hidden layer; None (default) picks the cheaper for the row count."""
        check_last_dim(self, x)
        features = self.fc1.phi(self.normalize(x))  # (..., m')
        ct = features.dtype
        psi_ = self.fc1.psi(ct)  # (hidden, m')
        w2 = self.fc2.weight.to(ct)  # (D, hidden)
        n_rows, m_, h, d = features[..., 0].numel(), psi_.shape[1], self.hidden, self.d_model
        if bundled is None:
            bundled = m_ * h * d + n_rows * m_ * d < n_rows * h * (m_ + d)
        b1 = self.fc1.post_bias(ct)
        if bundled:
            y = features @ (w2 @ psi_).T
            if b1 is not None:
                y = y + w2 @ b1
        else:
            hid = features @ psi_.T
            y = (hid if b1 is None else hid + b1) @ w2.T
        if self.fc2.bias is not None:
            y = y + self.fc2.bias.to(ct)
        return self.dropout(y.to(x.dtype))

    def extra_repr(self) -> str:
        return (f"d_model={self.d_model}, hidden={self.hidden}, n_random_features={self.fc1.n_random_features}, "
                f"activation={self.fc1.activation!r}, radius={self.radius}")
