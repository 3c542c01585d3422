r"""Infinite-width NNGP and NTK of deep fully-connected networks, kernel regression, and the mean
prediction of gradient descent on the squared loss.

Papers:

- Lee, Bahri, Novak, Schoenholz, Pennington & Sohl-Dickstein, "Deep Neural Networks as Gaussian
  Processes", 2018, arXiv:1711.00165: as the widths grow, the pre-activations of layer ``l`` are a
  Gaussian process with covariance ``Σ^l``, obtained layer by layer,
  ``Σ^{l+1}(x, x') = σ_w² E_{(u,v)~N(0, Σ^l)}[φ(u) φ(v)] + σ_b²``.
- Jacot, Gabriel & Hongler, "Neural Tangent Kernel: Convergence and Generalization in Neural
  Networks", 2018, arXiv:1806.07572 (Theorem 1), and Arora, Du, Hu, Li, Salakhutdinov & Wang,
  "On Exact Computation with an Infinitely Wide Neural Net", 2019, arXiv:1904.11955 (Eq. 4 ff.):
  the NTK follows the same recursion, ``Θ^{l+1} = Θ^l Σ̇^{l+1} + Σ^{l+1}`` with
  ``Σ̇^{l+1}(x, x') = σ_w² E[φ'(u) φ'(v)]``.
- Lee, Xiao, Schoenholz, Bahri, Novak, Sohl-Dickstein & Pennington, "Wide Neural Networks of
  Any Depth Evolve as Linear Models Under Gradient Descent", 2019, arXiv:1902.06720 (Eqs. 9-10,
  15-16): the linearized network trained by gradient flow on the squared loss predicts
  ``f_t(x) = f_0(x) + Θ(x, X) Θ^{-1} (I − e^{−η Θ t}) (Y − f_0(X))``; averaged over
  initializations (``E f_0 = 0``) the mean is ``μ_t(x) = Θ(x, X) Θ^{-1} (I − e^{−η Θ t}) Y``.
- Williams, "Computing with Infinite Networks", NIPS 1997 (no arXiv id): for ``φ = erf``,
  ``E[erf(u) erf(v)] = (2/π) arcsin(2Σ₁₂ / √((1 + 2Σ₁₁)(1 + 2Σ₂₂)))``; its derivative kernel,
  from ``erf'(z) = (2/√π) e^{−z²}`` and ``E[e^{−u²−v²}] = det(I + 2Σ)^{−1/2}``, is
  ``E[erf'(u) erf'(v)] = (4/π) / √((1 + 2Σ₁₁)(1 + 2Σ₂₂) − 4Σ₁₂²)``.
- ReLU: Cho & Saul's arc-cosine kernels (``theory.kernels``),
  ``E[relu(u) relu(v)] = k_1/2 = (1/2π) √(Σ₁₁Σ₂₂) (sin θ + (π − θ) cos θ)`` and
  ``E[relu'(u) relu'(v)] = k_0/2 = (π − θ)/2π`` with ``cos θ = Σ₁₂/√(Σ₁₁Σ₂₂)``.

The network (``FullyConnected``), NTK parameterization as neural-tangents' ``stax.Dense``
(``parameterization="ntk"``: ``W_ij ~ N(0, 1)``, ``b_i ~ N(0, 1)``,
``z_i = σ_w/√N Σ_j W_ij x_j + σ_b b_i``), ``depth`` dense layers with ``φ`` between them::

    z^1 = (σ_w¹/√d) W^1 x + σ_b¹ b^1,   z^{l+1} = (σ_w^{l+1}/√n_l) W^{l+1} φ(z^l) + σ_b^{l+1} b^{l+1},
    f(x) = z^L  (L = depth; depth 1 is the linear model).

Its kernels, with every weight and bias trained:
``Σ^1 = Θ^1 = (σ_w¹)² xᵀx'/d + (σ_b¹)²``; for ``l = 1..L−1``
``Σ^{l+1} = (σ_w^{l+1})² E[φ(u)φ(v)] + (σ_b^{l+1})²``,
``Σ̇^{l+1} = (σ_w^{l+1})² E[φ'(u)φ'(v)]``, ``Θ^{l+1} = Θ^l Σ̇^{l+1} + Σ^{l+1}``; the NNGP is
``Σ^L`` and the NTK ``Θ^L``. Arora et al.'s ReLU network is ``σ_w² = 2``, ``σ_b = 0``; the
2-layer network of ``theory.kernels.TwoLayerReLU`` (no ``1/√d``, unit readout) is
``σ_w = (√d, 1)``, ``σ_b = (1 or 0, 0)``.

Angles of the first hidden layer come from the inputs themselves (``kernels._norms_angle`` on
``[σ_w x/√d, σ_b]``, accurate near ``θ = 0``); deeper layers take ``θ = arccos`` of the clamped
correlation, which loses about half the digits where two inputs are nearly parallel.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ...errors import ConfigError, ShapeError
from .kernels import _arccos_from, _norms_angle, _pair

ACTIVATIONS = ("relu", "erf")


# ---- the Gaussian expectations of one layer ------------------------------------------------
def _relu_from_angle(n1: Tensor, n2: Tensor, theta: Tensor) -> tuple[Tensor, Tensor]:
    return 0.5 * _arccos_from(n1, n2, theta, 1), 0.5 * _arccos_from(n1, n2, theta, 0)


def relu_expectations(s11: Tensor, s12: Tensor, s22: Tensor) -> tuple[Tensor, Tensor]:
    r"""``(E[relu(u) relu(v)], E[relu'(u) relu'(v)])`` for ``(u, v) ~ N(0, [[s11, s12], [s12, s22]])``.

    Args:
        s11: (N1, 1) variances of ``u``; s22: (1, N2) variances of ``v``; s12: (N1, N2) covariances.

    Returns:
        Two (N1, N2) tensors: ``k_1/2`` and ``k_0/2`` of Cho & Saul at correlation ``s12/√(s11 s22)``.
    """
    n1, n2 = s11.clamp_min(0).sqrt(), s22.clamp_min(0).sqrt()
    tiny = torch.finfo(s12.dtype).tiny
    cos = (s12 / (n1 * n2).clamp_min(tiny)).clamp(-1.0, 1.0)
    return _relu_from_angle(n1, n2, torch.arccos(cos))


def erf_expectations(s11: Tensor, s12: Tensor, s22: Tensor) -> tuple[Tensor, Tensor]:
    r"""``(E[erf(u) erf(v)], E[erf'(u) erf'(v)])`` for ``(u, v) ~ N(0, [[s11, s12], [s12, s22]])``.

    ``(2/π) arcsin(2 s12 / √((1 + 2 s11)(1 + 2 s22)))`` (Williams 1997) and
    ``(4/π) / √((1 + 2 s11)(1 + 2 s22) − 4 s12²)``; shapes as in ``relu_expectations``.
    """
    a = (1.0 + 2.0 * s11) * (1.0 + 2.0 * s22)
    k = (2.0 / math.pi) * torch.arcsin((2.0 * s12 / a.sqrt()).clamp(-1.0, 1.0))
    kdot = (4.0 / math.pi) / (a - 4.0 * s12 * s12).clamp_min(torch.finfo(s12.dtype).tiny).sqrt()
    return k, kdot


_EXPECTATIONS = {"relu": relu_expectations, "erf": erf_expectations}


# ---- the recursion -------------------------------------------------------------------------
def _per_layer(value: float | Sequence[float], depth: int, name: str) -> list[float]:
    if isinstance(value, (int, float)):
        out = [float(value)] * depth
    else:
        out = [float(v) for v in value]
        if len(out) != depth:
            raise ConfigError(f"{name}: give one number or one per layer (depth = {depth}), got {len(out)}")
    if not all(math.isfinite(v) and v >= 0 for v in out):
        raise ConfigError(f"{name}: standard deviations must be finite and >= 0, got {out}")
    return out


def _check(depth: int, activation: str) -> None:
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ConfigError(f"depth must be an int >= 1 (number of dense layers), got {depth!r}")
    if activation not in ACTIVATIONS:
        raise ConfigError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")


def nngp_ntk(
    x1: Tensor,
    x2: Tensor | None = None,
    *,
    depth: int,
    activation: str = "relu",
    w_std: float | Sequence[float] = 1.0,
    b_std: float | Sequence[float] = 0.0,
) -> tuple[Tensor, Tensor]:
    r"""Infinite-width NNGP ``Σ^L(x1, x2)`` and NTK ``Θ^L(x1, x2)`` of ``FullyConnected``.

    Args:
        x1: (N1, d) inputs; x2: (N2, d) inputs or ``None`` (= ``x1``).
        depth: ``L``, the number of dense layers (``L − 1`` hidden layers; 1: the linear model).
        activation: ``"relu"`` or ``"erf"``.
        w_std, b_std: ``σ_w``, ``σ_b``: one number for every layer or one per layer (``depth``).

    Returns:
        ``(nngp, ntk)``, each (N1, N2) in the inputs' dtype; ``nngp`` is the covariance of the
        outputs at initialization, ``ntk`` the limit of ``lens.ntk.empirical(FullyConnected(...))``.
    """
    _check(depth, activation)
    x1, x2 = _pair(x1, x2, "nngp_ntk")
    ws, bs = _per_layer(w_std, depth, "w_std"), _per_layer(b_std, depth, "b_std")
    d = x1.shape[1]
    # layer 1 as the inner product of augmented inputs [σ_w x/√d, σ_b]
    one1 = torch.full_like(x1[:, :1], bs[0])
    a1 = torch.cat([x1 * (ws[0] / math.sqrt(d)), one1], 1)
    a2 = torch.cat([x2 * (ws[0] / math.sqrt(d)), torch.full_like(x2[:, :1], bs[0])], 1)
    sigma = a1 @ a2.T
    s11 = a1.square().sum(1, keepdim=True)
    s22 = a2.square().sum(1, keepdim=True).T
    theta = sigma
    expect = _EXPECTATIONS[activation]
    for layer in range(1, depth):
        w2, b2 = ws[layer] ** 2, bs[layer] ** 2
        if layer == 1 and activation == "relu":
            n1, n2, angle = _norms_angle(a1, a2)
            k, kdot = _relu_from_angle(n1, n2, angle)
        else:
            k, kdot = expect(s11, sigma, s22)
        k11, _ = expect(s11, s11, s11)
        k22, _ = expect(s22, s22, s22)
        sigma = w2 * k + b2
        theta = theta * (w2 * kdot) + sigma
        s11, s22 = w2 * k11 + b2, w2 * k22 + b2
    return sigma, theta


def nngp(x1: Tensor, x2: Tensor | None = None, **kwargs) -> Tensor:
    """The NNGP kernel ``Σ^L`` of ``nngp_ntk`` (same arguments)."""
    return nngp_ntk(x1, x2, **kwargs)[0]


def ntk(x1: Tensor, x2: Tensor | None = None, **kwargs) -> Tensor:
    """The NTK ``Θ^L`` of ``nngp_ntk`` (same arguments)."""
    return nngp_ntk(x1, x2, **kwargs)[1]


# ---- predictions ---------------------------------------------------------------------------
def _targets(y: Tensor, n: int, who: str) -> tuple[Tensor, bool]:
    if y.ndim not in (1, 2) or y.shape[0] != n:
        raise ShapeError(f"{who}: targets must be (N,) or (N, O) with N = {n} training points, "
                         f"got shape {tuple(y.shape)}")
    return (y.unsqueeze(1), True) if y.ndim == 1 else (y, False)


def _kernels(k_test_train: Tensor, k_train_train: Tensor, who: str) -> int:
    n = k_train_train.shape[0]
    if k_train_train.ndim != 2 or k_train_train.shape[1] != n:
        raise ShapeError(f"{who}: k_train_train must be square (N, N), got {tuple(k_train_train.shape)}")
    if k_test_train.ndim != 2 or k_test_train.shape[1] != n:
        raise ShapeError(f"{who}: k_test_train must be (M, N) with N = {n}, got {tuple(k_test_train.shape)}")
    return n


def kernel_regression(k_test_train: Tensor, k_train_train: Tensor, y_train: Tensor,
                      ridge: float = 0.0) -> Tensor:
    r"""Kernel (ridge) regression ``K(x, X) (K(X, X) + δ I)^{-1} Y``.

    With the NNGP kernel and ``δ = σ_ε²`` it is the Gaussian-process posterior mean (Lee et al.
    2018, Eq. 4); with the NTK and ``δ = 0`` it is where gradient flow on the squared loss ends
    (``gradient_descent_mse`` at ``t → ∞``, mean over initializations).

    Args:
        k_test_train: (M, N) kernel between test and training inputs.
        k_train_train: (N, N) kernel of the training inputs.
        y_train: (N,) or (N, O) targets.
        ridge: ``δ``; ``K + δ I`` must be invertible.

    Returns:
        (M,) or (M, O) predictions, like ``y_train``.
    """
    n = _kernels(k_test_train, k_train_train, "kernel_regression")
    y, flat = _targets(y_train, n, "kernel_regression")
    if not math.isfinite(ridge):
        raise ConfigError(f"kernel_regression: ridge must be finite, got {ridge}")
    a = k_train_train + ridge * torch.eye(n, dtype=k_train_train.dtype, device=k_train_train.device)
    try:
        coef = torch.linalg.solve(a, y)
    except RuntimeError as e:  # singular
        raise ConfigError(f"kernel_regression: K + ridge·I is singular ({e}); use ridge > 0") from None
    out = k_test_train @ coef
    return out.squeeze(1) if flat else out


def gradient_descent_mse(
    k_test_train: Tensor,
    k_train_train: Tensor,
    y_train: Tensor,
    t: float,
    lr: float = 1.0,
    *,
    f0_test: Tensor | None = None,
    f0_train: Tensor | None = None,
    discrete: bool = False,
) -> Tensor:
    r"""Prediction at time ``t`` of the linearized network trained on the squared loss.

    The loss is the mean ``L = (1/2N) Σ_i ‖f(x_i) − y_i‖²`` (as ``layerlab`` trains), so gradient
    flow ``θ̇ = −η ∇L`` moves the training outputs as ``ḟ(X) = −(η/N) Θ (f(X) − Y)`` with the
    frozen NTK ``Θ = Θ(X, X)`` (Lee et al. 2019 absorb the ``1/N`` into ``Θ``). Then::

        f_t(x) = f_0(x) + Θ(x, X) Θ^{-1} (I − e^{−ηΘt/N}) (Y − f_0(X))

    and with ``f_0 = None`` (the mean over initializations, ``E f_0 = 0``)
    ``μ_t(x) = Θ(x, X) Θ^{-1} (I − e^{−ηΘt/N}) Y``. ``discrete=True`` gives ``t`` steps of
    gradient descent of the linear model instead, ``(I − ηΘ/N)^t`` in place of ``e^{−ηΘt/N}``;
    that is exact for a model linear in its parameters. ``Θ^{-1}(I − e^{−ηΘt/N})`` is evaluated
    on the eigenvalues ``λ`` of ``Θ`` as ``−expm1(−ηλt/N)/λ`` (``ηt/N`` at ``λ = 0``), so a
    singular ``Θ`` is fine at finite ``t``; ``t → ∞`` gives ``kernel_regression(.., ridge=0)``.

    Args:
        k_test_train: (M, N) NTK ``Θ(x, X)``; k_train_train: (N, N) NTK ``Θ(X, X)``.
        y_train: (N,) or (N, O) targets.
        t: training time (``discrete``: number of steps), ``>= 0``; ``math.inf`` allowed.
        lr: ``η > 0``.
        f0_test, f0_train: the network's outputs at initialization on the test and training
            inputs, shaped like the predictions and ``y_train``; both or neither.
        discrete: gradient descent (``t`` integer steps) instead of gradient flow.

    Returns:
        (M,) or (M, O) predictions, like ``y_train``.
    """
    n = _kernels(k_test_train, k_train_train, "gradient_descent_mse")
    y, flat = _targets(y_train, n, "gradient_descent_mse")
    if not (t >= 0) or not lr > 0 or not math.isfinite(lr):
        raise ConfigError(f"gradient_descent_mse: need t >= 0 and finite lr > 0, got t={t}, lr={lr}")
    if discrete and math.isfinite(t) and t != int(t):
        raise ConfigError(f"gradient_descent_mse: discrete=True counts steps; t must be an integer, got {t}")
    if (f0_test is None) != (f0_train is None):
        raise ConfigError("gradient_descent_mse: give both f0_test and f0_train, or neither (mean predictor)")
    residual = y
    if f0_train is not None:
        f0y, _ = _targets(f0_train, n, "gradient_descent_mse f0_train")
        residual = y - f0y
    lam, u = torch.linalg.eigh(k_train_train)
    a = lr * lam / n  # the rate of each mode
    if math.isinf(t):
        g = 1.0 / lam
    elif discrete:
        one_minus = torch.where(a < 1, -torch.expm1(t * torch.log1p(-a.clamp(max=1 - 1e-16))),
                                1.0 - (1.0 - a) ** t)
        g = torch.where(lam.abs() > 0, one_minus / torch.where(lam == 0, 1.0, lam), lr * t / n)
    else:
        g = torch.where(lam.abs() > 0, -torch.expm1(-a * t) / torch.where(lam == 0, 1.0, lam), lr * t / n)
    out = k_test_train @ (u @ (g.unsqueeze(1) * (u.T @ residual)))
    if f0_test is not None:
        out = out + (f0_test.unsqueeze(1) if f0_test.ndim == 1 else f0_test)
    return out.squeeze(1) if flat else out


# ---- the finite network --------------------------------------------------------------------
class FullyConnected(nn.Module):
    r"""``depth`` dense layers in the NTK parameterization (see the module docstring).

    ``z^{l+1} = (σ_w^{l+1}/√n_l) W^{l+1} φ(z^l) + σ_b^{l+1} b^{l+1}`` with ``W``, ``b`` standard
    normal (``layers[l].weight`` and ``biases``); a layer with ``σ_b = 0`` has no bias parameter. Hidden width ``width`` for every
    hidden layer; ``lens.ntk.empirical`` of this module converges to ``ntk(...)`` with the same
    ``depth``, ``activation``, ``w_std``, ``b_std`` as the width grows, and the covariance of its
    outputs over initializations to ``nngp(...)``.

    Shape: ``(*, in_features) -> (*, out_features)``. Initialization draws from ``generator``
    (a CPU ``torch.Generator``; ``None``: a fresh one seeded 0) in float64, then casts to ``dtype``.
    """

    def __init__(
        self,
        in_features: int,
        width: int,
        depth: int,
        activation: str = "relu",
        *,
        w_std: float | Sequence[float] = 1.0,
        b_std: float | Sequence[float] = 0.0,
        out_features: int = 1,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        _check(depth, activation)
        if int(in_features) < 1 or int(width) < 1 or int(out_features) < 1:
            raise ConfigError(f"FullyConnected: in_features, width and out_features must be >= 1, "
                              f"got {in_features}, {width}, {out_features}")
        self.in_features, self.width, self.depth = int(in_features), int(width), depth
        self.out_features, self.activation = int(out_features), activation
        self.w_std = _per_layer(w_std, depth, "w_std")
        self.b_std = _per_layer(b_std, depth, "b_std")
        generator = generator or torch.Generator().manual_seed(0)
        dtype = dtype or torch.get_default_dtype()

        def draw(*shape: int) -> nn.Parameter:
            t = torch.randn(*shape, generator=generator, dtype=torch.float64)
            return nn.Parameter(t.to(device=device, dtype=dtype))

        sizes = [self.in_features] + [self.width] * (depth - 1) + [self.out_features]
        # nn.Linear (no bias) holds W, applied to the scaled input (σ_w/√n) h: the same function, and
        # lens.ntk's "structured" method can take the weight blocks from layer inputs and output grads
        self.layers = nn.ModuleList()
        for i in range(depth):
            lin = nn.utils.skip_init(nn.Linear, sizes[i], sizes[i + 1], bias=False, device=device, dtype=dtype)
            lin.weight = draw(sizes[i + 1], sizes[i])
            self.layers.append(lin)
        self.biases = nn.ParameterList([draw(sizes[i + 1]) for i in range(depth) if self.b_std[i] > 0])

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.in_features:
            raise ShapeError(f"FullyConnected: expected inputs (*, {self.in_features}), got shape {tuple(x.shape)}")
        phi = torch.relu if self.activation == "relu" else torch.erf
        h, biases = x, iter(self.biases)
        for layer, lin in enumerate(self.layers):
            if layer > 0:
                h = phi(h)
            h = lin(h * (self.w_std[layer] / math.sqrt(lin.in_features)))
            if self.b_std[layer] > 0:
                h = h + self.b_std[layer] * next(biases)
        return h

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, width={self.width}, depth={self.depth}, "
                f"activation={self.activation!r}, w_std={self.w_std}, b_std={self.b_std}")
