"""Tversky neural networks: the differentiable Tversky contrast model, the Tversky projection
layer (a drop-in for ``nn.Linear``) and the channel mixer built from it."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...errors import ConfigError
from ...registry import Paper, register
from .._common import check_hidden_options, check_last_dim, init_linear, wide_dtype

PAPER = Paper(
    "Tversky Neural Networks: Psychologically Plausible Deep Learning with Differentiable Tversky Similarity",
    2025,
    "2506.11035",
)
INTERSECTIONS = ("product", "min", "max", "mean", "gmean", "softmin")
DIFFERENCES = ("ignorematch", "substractmatch")
PROTOTYPE_INITS = ("uniform", "symmetric")


def salience(proj: Tensor) -> Tensor:
    r"""Eq. 2: ``f(A) = sum_k (a . f_k) 1[a . f_k > 0]`` from the projections ``proj[..., k] = a . f_k``."""
    return F.relu(proj).sum(-1)


def _present(proj: Tensor) -> Tensor:
    return (proj > 0).to(proj.dtype)


def _safe_sqrt(u: Tensor) -> Tensor:
    """sqrt(u) where u > 0, else 0, with a finite gradient everywhere (no 0 * inf = nan)."""
    pos = u > 0
    return torch.where(pos, torch.where(pos, u, torch.ones_like(u)).sqrt(), torch.zeros_like(u))


def intersection_measure(u: Tensor, v: Tensor, reduction: str = "product") -> Tensor:
    r"""Eq. 3: ``f(A ∩ B) = sum_k Psi(a . f_k, b . f_k) 1[a . f_k > 0 and b . f_k > 0]``.

    ``u`` (N, K) holds ``a_n . f_k``, ``v`` (P, K) holds ``b_p . f_k``; the result is (N, P).
    ``Psi`` is ``reduction``: product, min, max, mean, gmean (sqrt of the product) or softmin
    (``-log(exp(-x) + exp(-y))``). product, mean and gmean are matrix products (O(N P K) work,
    O(N P) memory); min, max and softmin need the (N, P, K) tensor of pairs.
    """
    if reduction == "product":
        return F.relu(u) @ F.relu(v).T
    if reduction == "mean":
        return 0.5 * (F.relu(u) @ _present(v).T + _present(u) @ F.relu(v).T)
    if reduction == "gmean":
        return _safe_sqrt(u) @ _safe_sqrt(v).T
    uu, vv = u[:, None, :], v[None, :, :]
    if reduction == "min":  # min(relu(x), relu(y)) is 0 unless both are present
        return torch.minimum(F.relu(uu), F.relu(vv)).sum(-1)
    both = _present(uu) * _present(vv)
    if reduction == "max":
        return (torch.maximum(uu, vv) * both).sum(-1)
    if reduction == "softmin":
        return (-torch.logaddexp(-uu, -vv) * both).sum(-1)
    raise ConfigError(f"tversky: unknown intersection {reduction!r}; choose one of {', '.join(INTERSECTIONS)}")


def difference_measure(u: Tensor, v: Tensor, reduction: str = "ignorematch") -> Tensor:
    r"""``f(A - B)`` for ``u`` (N, K) = ``a_n . f_k`` and ``v`` (P, K) = ``b_p . f_k``; result (N, P).

    ``"ignorematch"`` (Eq. 4): ``sum_k (a . f_k) 1[a . f_k > 0 and b . f_k <= 0]`` (a matrix product).
    ``"substractmatch"`` (Eq. 5): ``sum_k (a . f_k - b . f_k) 1[a . f_k > 0, b . f_k > 0, a . f_k > b . f_k]``
    (needs the (N, P, K) tensor of pairs).
    """
    if reduction == "ignorematch":
        return F.relu(u) @ (1.0 - _present(v)).T
    if reduction == "substractmatch":
        # for both present, relu(a.f - b.f) is the excess; where b.f <= 0 the mask drops it,
        # where a.f <= 0 < b.f, relu(0 - b.f) = 0.
        return (F.relu(F.relu(u)[:, None, :] - v[None, :, :]) * _present(v)[None, :, :]).sum(-1)
    raise ConfigError(f"tversky: unknown difference {reduction!r}; choose one of {', '.join(DIFFERENCES)}")


def tversky_contrast(
    u: Tensor,
    v: Tensor,
    *,
    alpha: Tensor | float,
    beta: Tensor | float,
    theta: Tensor | float,
    intersection: str = "product",
    difference: str = "ignorematch",
) -> Tensor:
    r"""The contrast model ``S(a, b) = theta f(A ∩ B) - alpha f(A - B) - beta f(B - A)``
    for every pair: ``u`` (N, K) = ``a_n . f_k``, ``v`` (P, K) = ``b_p . f_k``; result (N, P)."""
    common = intersection_measure(u, v, intersection)
    a_only = difference_measure(u, v, difference)
    b_only = difference_measure(v, u, difference).T
    return theta * common - alpha * a_only - beta * b_only


def tversky_contrast_reference(
    u: Tensor,
    v: Tensor,
    *,
    alpha: Tensor | float,
    beta: Tensor | float,
    theta: Tensor | float,
    intersection: str = "product",
    difference: str = "ignorematch",
) -> Tensor:
    r"""The plain form of ``tversky_contrast``: Eq. 3-5 feature by feature over the (N, P, K)
    tensor of pairs, as written (the fast form turns the product, mean, gmean and ignorematch
    terms into matrix products; tested equal, values and gradients)::

        f(A ∩ B) = Σ_k Ψ(a.f_k, b.f_k) 1[f_k ∈ A, f_k ∈ B],      f_k ∈ A  <=>  a.f_k > 0
        f(A - B) = Σ_k a.f_k 1[f_k ∈ A, f_k ∉ B]                          (ignorematch)
                 = Σ_k (a.f_k - b.f_k) 1[f_k ∈ A, f_k ∈ B, a.f_k > b.f_k]  (substractmatch)
    """
    _check_choice("intersection", intersection, INTERSECTIONS)
    _check_choice("difference", difference, DIFFERENCES)
    a, b = u[:, None, :], v[None, :, :]  # a.f_k and b.f_k for every (n, p, k)
    a_in, b_in = a > 0, b > 0
    both = a_in & b_in
    ap, bp = torch.where(both, a, 1.0), torch.where(both, b, 1.0)  # Ψ where it counts; finite elsewhere
    psi = {
        "product": lambda: ap * bp,
        "min": lambda: torch.minimum(ap, bp),
        "max": lambda: torch.maximum(ap, bp),
        "mean": lambda: (ap + bp) / 2,
        "gmean": lambda: torch.sqrt(ap * bp),
        "softmin": lambda: -torch.logaddexp(-ap, -bp),
    }[intersection]()
    zero = torch.zeros((), dtype=u.dtype, device=u.device)
    common = torch.where(both, psi, zero).sum(-1)
    if difference == "ignorematch":
        a_only = torch.where(a_in & ~b_in, a, zero).sum(-1)
        b_only = torch.where(b_in & ~a_in, b, zero).sum(-1)
    else:
        a_only = torch.where(both & (a > b), a - b, zero).sum(-1)
        b_only = torch.where(both & (b > a), b - a, zero).sum(-1)
    return theta * common - alpha * a_only - beta * b_only


def _check_choice(what: str, value: str, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ConfigError(f"tversky: unknown {what} {value!r}; choose one of {', '.join(valid)}")


class TverskyProjection(nn.Module):
    r"""Tversky projection layer: the similarity of the input to each of ``out_features`` learned
    prototypes under a learned feature bank (the paper's drop-in replacement for ``nn.Linear``).

    Paper: Doumbouya, Jurafsky & Manning, "Tversky Neural Networks: Psychologically Plausible
    Deep Learning with Differentiable Tversky Similarity", 2025, arXiv:2506.11035.

    Objects are vectors and, dually, sets of features from the bank ``Ω = {f_k}_{k=1..K}``
    (``features``, (K, in)): ``A = {f_k : a . f_k > 0}``. With prototypes ``Π = {π_i}``
    (``prototypes``, (out, in))::

        y_i = S(a, π_i) = θ f(A ∩ Π_i) - α f(A - Π_i) - β f(Π_i - A)                     (contrast model)
        f(A)       = sum_k (a . f_k) 1[a . f_k > 0]                                       (Eq. 2, salience)
        f(A ∩ B)   = sum_k Ψ(a . f_k, b . f_k) 1[a . f_k > 0 ∧ b . f_k > 0]                 (Eq. 3)
        f(A - B)   = sum_k (a . f_k) 1[a . f_k > 0 ∧ b . f_k <= 0]          "ignorematch"   (Eq. 4)
                   = sum_k (a . f_k - b . f_k) 1[a.f_k > 0 ∧ b.f_k > 0 ∧ a.f_k > b.f_k]  "substractmatch" (Eq. 5)

    ``Ψ`` (``intersection``) is one of product (default), min, max, mean, gmean, softmin.
    Defaults are the paper's library defaults: ``intersection="product"``,
    ``difference="ignorematch"``, learnable scalars ``θ = 1, α = β = 0.5`` at init.

    Shape: ``(*, in_features) -> (*, out_features)``. Vectorized, no loop over prototypes or
    features: with product / mean / gmean and ignorematch every term is a matrix product of the
    projections ``x Ωᵀ`` (N, K) and ``Π Ωᵀ`` (out, K), or of their indicators; min, max,
    softmin and substractmatch build an (N, out, K) tensor (memory and time N·out·K: much
    slower at mixer sizes). The indicators have zero gradient, as in the paper (the layer is
    piecewise differentiable, like ReLU).

    Pitfall: with U(0, 1) init and ignorematch a single layer fits XOR from only about half of
    the seeds (measured 13/20, K = 4, 300 Adam steps); with substractmatch, the paper's best XOR
    setting, 20/20.

    Initialization: ``init="uniform"`` (default, the paper's best on XOR): features and
    prototypes i.i.d. U(0, 1). ``init="symmetric"`` (for zero-mean, unit-variance inputs such as
    normalized activations): features i.i.d. U(-sqrt(3/in), sqrt(3/in)) (variance 1/in) and
    prototypes i.i.d. U(-sqrt(3), sqrt(3)) (variance 1, like the inputs they are compared with),
    so that ``a . f_k`` and ``π . f_k`` have unit variance and both signs: each feature is
    present in about half of the inputs and half of the prototypes. ``θ, α, β`` start at the
    given values (nn.Parameters, learned).

    Differences from the paper: for min/max/mean/gmean/softmin we apply
    ``Ψ`` per feature as in Eq. 3 (the authors' library applies it to the two per-object sums
    instead), and substractmatch is Eq. 5 alone (the library adds the ignorematch term to it).
    The paper's optional input/prototype normalization (which it reports hurts XOR) and the
    ratio model are not implemented. Statistics are computed in float32 or wider; the output
    has the input dtype.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        n_features: int,
        alpha: float = 0.5,
        beta: float = 0.5,
        theta: float = 1.0,
        intersection: str = "product",
        difference: str = "ignorematch",
        init: str = "uniform",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        for name, value in (("in_features", in_features), ("out_features", out_features), ("n_features", n_features)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"TverskyProjection: {name} must be an integer >= 1, got {value!r}")
        _check_choice("intersection", intersection, INTERSECTIONS)
        _check_choice("difference", difference, DIFFERENCES)
        _check_choice("init", init, PROTOTYPE_INITS)
        factory = {"device": device, "dtype": dtype}
        self.in_features, self.out_features, self.n_features = in_features, out_features, n_features
        self.intersection, self.difference, self.init = intersection, difference, init
        self.features = nn.Parameter(torch.empty(n_features, in_features, **factory))  # Ω
        self.prototypes = nn.Parameter(torch.empty(out_features, in_features, **factory))  # Π
        self.theta = nn.Parameter(torch.empty((), **factory))
        self.alpha = nn.Parameter(torch.empty((), **factory))
        self.beta = nn.Parameter(torch.empty((), **factory))
        self._scalars = (float(theta), float(alpha), float(beta))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            if self.init == "uniform":
                nn.init.uniform_(self.features, 0.0, 1.0)
                nn.init.uniform_(self.prototypes, 0.0, 1.0)
            else:  # unit-variance projections a . f_k and π . f_k for unit-variance a
                bound = math.sqrt(3.0 / self.in_features)
                nn.init.uniform_(self.features, -bound, bound)
                nn.init.uniform_(self.prototypes, -math.sqrt(3.0), math.sqrt(3.0))
            for p, value in zip((self.theta, self.alpha, self.beta), self._scalars):
                p.fill_(value)

    def similarity(self, u: Tensor, v: Tensor) -> Tensor:
        """The contrast model over projections ``u`` (N, K), ``v`` (P, K) -> (N, P)."""
        ct = u.dtype
        return tversky_contrast(
            u, v, alpha=self.alpha.to(ct), beta=self.beta.to(ct), theta=self.theta.to(ct),
            intersection=self.intersection, difference=self.difference,
        )

    def forward(self, x: Tensor) -> Tensor:
        check_last_dim(self, x, self.in_features, "in_features")
        ct = wide_dtype(x.dtype)
        omega = self.features.to(ct)
        u = x.reshape(-1, self.in_features).to(ct) @ omega.T  # (N, K): a . f_k
        v = self.prototypes.to(ct) @ omega.T  # (P, K): π_i . f_k
        y = self.similarity(u, v)
        return y.reshape(*x.shape[:-1], self.out_features).to(x.dtype)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, n_features={self.n_features}, "
                f"intersection={self.intersection!r}, difference={self.difference!r}")


@register("channel", "tversky", paper=PAPER)
class TverskyMLP(nn.Module):
    r"""Channel mixer: a Tversky projection of the input onto ``hidden`` learned prototypes,
    then a linear map back to d_model.

    Paper: Doumbouya, Jurafsky & Manning, "Tversky Neural Networks: Psychologically Plausible
    Deep Learning with Differentiable Tversky Similarity", 2025, arXiv:2506.11035 (the Tversky
    projection layer, used in place of the MLP's first linear map).

    Equation (``TverskyProjection`` with feature bank ``Ω`` (K, D) and prototypes ``Π`` (hidden, D))::

        h_i(x) = S(x, π_i) / sqrt(K)
               = [θ f(X ∩ Π_i) - α f(X - Π_i) - β f(Π_i - X)] / sqrt(K),   i = 1..hidden
        y      = W_out h(x) + b_out

    With the defaults (product, ignorematch) and ``u_k = x . f_k``, ``v_ik = π_i . f_k``::

        h_i = sum_k [θ relu(u_k) relu(v_ik) - α relu(u_k) 1[v_ik <= 0] - β 1[u_k <= 0] relu(v_ik)] / sqrt(K)

    i.e. K ReLU "feature detectors" ``relu(x . f_k)`` read out through prototype-dependent
    weights, plus a gating term: the nonlinearity of the block.

    Shape: ``(..., D) -> (..., D)``, position-wise.

    Why a linear map back (and not a second Tversky projection): the block's output is added to
    the residual stream, so it should be zero-mean and of a controlled scale at init; a linear
    map with the fan-in init gives both, while similarity scores to d_model prototypes carry a
    common offset (the salience terms) and a scale set by the feature bank. The nonlinearity is
    already in the first projection (one Tversky layer fits XOR), and the linear readout keeps
    the parameter count in the MLP's range: ``(K + 2 hidden) D + D + 3`` against the
    MLP's ``2 hidden D + hidden + D``. Defaults ``hidden = D``, ``K = 6 D`` give ``8 D^2 + D + 3``,
    the expansion-4 MLP's ``8 D^2 + 5 D``; at that budget many features and few prototypes
    trained better than ``hidden = 2 D, K = 4 D`` (tinyshakespeare, D = 32, 2 layers, 1200
    steps, seeds 0 / 1: 3.16 / 3.13 bpc against 3.20 / 3.21; the MLP 3.05 / 3.03). On digits
    at D = 32 a second Tversky projection as the output map trained to the same accuracy with
    ~45% more parameters.

    Scale: ``1/sqrt(K)`` is a fixed constant (equivalent to rescaling θ, α, β by it): the sum
    runs over K features, and without it the hidden activations grow like sqrt(K); with it
    they have O(1) spread at init for any K (measured std over inputs 1.2 at D = 64; the block's
    output then has std 0.7 per unit, against 0.19 for the GELU MLP). Keeping
    θ, α, β themselves O(1) keeps their AdamW steps proportionate.

    Initialization: ``TverskyProjection(init="symmetric")`` (features U(-sqrt(3/D), sqrt(3/D)),
    prototypes U(-sqrt(3), sqrt(3)), so ``x . f_k`` and ``π . f_k`` are unit-variance for the
    normalized inputs the backbone feeds), ``θ = 1, α = β = 0.5`` (the paper's library); the
    output map as ``nn.Linear``: U(-1/sqrt(hidden), 1/sqrt(hidden)).

    Differences from the paper: the paper uses Tversky projections as classification heads and
    attention / LM-head projections (GPT-2, ResNet-50), not as an MLP replacement; the
    ``1/sqrt(K)`` scale and the symmetric init are ours (the paper's U(0, 1) init suits
    nonnegative inputs such as XOR's; U(0, 1) prototypes and features have positive dot products
    throughout, so every prototype would contain every feature).
    See ``TverskyProjection`` for the measures.

    Options: ``hidden`` (number of prototypes) or ``expansion`` (default 1), ``n_features``
    (K, default 6 D), ``alpha``, ``beta``, ``theta`` (initial values), ``intersection``,
    ``difference``, ``bias`` (of the output map), ``dropout`` (on the output), ``device``, ``dtype``.
    """

    def __init__(
        self,
        d_model: int,
        *,
        hidden: int | None = None,
        expansion: float = 1.0,
        n_features: int | None = None,
        alpha: float = 0.5,
        beta: float = 0.5,
        theta: float = 1.0,
        intersection: str = "product",
        difference: str = "ignorematch",
        bias: bool = True,
        dropout: float = 0.0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        check_hidden_options("tversky", hidden, expansion, dropout)
        if n_features is not None and (isinstance(n_features, bool) or not isinstance(n_features, int) or n_features < 1):
            raise ConfigError(f"tversky: n_features must be an integer >= 1 (or None for 6 * d_model), got {n_features!r}")
        factory = {"device": device, "dtype": dtype}
        self.d_model = int(d_model)
        self.hidden = int(hidden) if hidden is not None else max(1, round(expansion * d_model))
        self.n_features = int(n_features) if n_features is not None else 6 * self.d_model
        self.proj = TverskyProjection(
            self.d_model, self.hidden, n_features=self.n_features, alpha=alpha, beta=beta, theta=theta,
            intersection=intersection, difference=difference, init="symmetric", **factory,
        )
        self.scale = self.n_features ** -0.5
        self.out = nn.Linear(self.hidden, self.d_model, bias=bias, **factory)
        self.dropout = nn.Dropout(dropout)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.proj.reset_parameters()
        init_linear(self.out)

    def forward(self, x: Tensor) -> Tensor:
        check_last_dim(self, x)
        return self.dropout(self.out(self.proj(x) * self.scale))

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, hidden={self.hidden}, n_features={self.n_features}"
