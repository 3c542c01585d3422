r"""Krylov methods for a symmetric operator known only by its products: extreme eigenvalues by
Lanczos, the trace by Hutchinson and Hutch++, the spectral density by stochastic Lanczos
quadrature.

An operator is anything with ``dim`` (``P``), ``device`` and ``matmat(V) -> A V`` for ``V`` of
shape ``(P, m)`` (optionally ``dtype``: the precision of its products); a dense symmetric matrix
becomes one with `DenseOperator`, and every function here also takes the matrix itself. The
Hessian of a loss is one (`layerlab.lens.hessian.HessianOperator`), and the tests check these
methods on dense matrices against ``torch.linalg.eigvalsh`` and the exact trace.

Papers and the quantities taken from them
-----------------------------------------
* Lanczos, "An iteration method for the solution of the eigenvalue problem of linear differential
  and integral operators", J. Res. NBS 45, 1950 (no arXiv). From a unit :math:`q_1`,
  :math:`\beta_j q_{j+1} = A q_j - \alpha_j q_j - \beta_{j-1} q_{j-1}`,
  :math:`\alpha_j = q_j^\top A q_j`, giving :math:`Q_m^\top A Q_m = T_m` tridiagonal; the
  eigenvalues of :math:`T_m` (Ritz values) approach the extreme eigenvalues of ``A``. The Krylov
  basis is fully reorthogonalized (classical Gram–Schmidt, twice); a Ritz pair
  :math:`(\theta_i, Q_m s_i)` has residual norm :math:`\beta_m |e_m^\top s_i|`, the stopping test
  (confirmed by an explicit :math:`\|Ay - \theta y\|`). A Krylov space of one start vector holds
  one vector per eigenspace, so for ``k >= 2`` the search is continued from random vectors
  orthogonal to the basis until repeated eigenvalues are found (see `lanczos`).
* The error of a Ritz value (Parlett, "The Symmetric Eigenvalue Problem", SIAM 1998: the residual
  bound and the gap theorem): for a unit :math:`y` with :math:`r = Ay - \theta y` some eigenvalue
  :math:`\lambda` has :math:`|\theta - \lambda| \le \|r\|`, and
  :math:`|\theta - \lambda| \le \|r\|^2 / \delta` where :math:`\delta` is the distance from
  :math:`\theta` to the rest of the spectrum. An eigenvalue is therefore known long before its
  eigenvector: a residual of 1e-8 gives the value to about 1e-16 when the gap is of order one.
* Hutchinson, "A stochastic estimator of the trace of the influence matrix for Laplacian
  smoothing splines", Comm. Stat. Simul. Comput. 18(3), 1989 (no arXiv).
  :math:`\operatorname{tr} A \approx \frac1m \sum_i z_i^\top A z_i` with Rademacher :math:`z_i`;
  :math:`\operatorname{Var}(z^\top A z) = 2\sum_{i\ne j} A_{ij}^2`.
* Meyer, Musco, Musco & Woodruff, "Hutch++: Optimal Stochastic Trace Estimation", SOSA 2021,
  arXiv:2010.09649, Algorithm 1. With ``m`` products: ``S`` (P × m/3) Rademacher,
  ``Q = orth(A S)``, then
  :math:`\operatorname{tr}(Q^\top A Q) + \frac{3}{m}\operatorname{tr}(G^\top (I-QQ^\top) A
  (I-QQ^\top) G)` with ``G`` (P × m/3) Rademacher (here the residual gets the
  ``m - 2⌊m/3⌋`` products left over). Its standard error is that of the residual Hutchinson
  part (sample std / √g over its ``g`` probes): given ``Q`` the estimate is unbiased, since
  :math:`\operatorname{tr}(Q^\top AQ) + \operatorname{tr}((I-QQ^\top)A(I-QQ^\top))
  = \operatorname{tr} A` for any orthonormal ``Q``.
* Ghorbani, Krishnan & Xiao, "An Investigation into Neural Net Optimization via Hessian Eigenvalue
  Density", ICML 2019, arXiv:1901.10159 (stochastic Lanczos quadrature; also Golub & Welsch 1969,
  Ubaru, Chen & Saad 2017). The spectral density
  :math:`\phi(t) = \frac1P \sum_{i=1}^P \delta(t - \lambda_i)` is approximated, for each probe
  :math:`v` (unit norm), by the Gauss quadrature of :math:`v^\top f(A) v`: nodes
  :math:`\theta_k` = eigenvalues of the Lanczos :math:`T_m` started at :math:`v`, weights
  :math:`\tau_k = (e_1^\top s_k)^2`; averaged over probes. The rule is exact for polynomials of
  degree :math:`\le 2m-1`, so :math:`\sum_k \tau_k \theta_k^p = v^\top A^p v`, whose mean over
  probes uniform on the sphere (or normalized Rademacher) is :math:`\operatorname{tr}(A^p)/P`.
  The paper draws Gaussian probes; here they are Rademacher (as in Ubaru et al. and PyHessian):
  also unbiased, and with a smaller variance (no diagonal term). Smoothing uses
  :math:`g_\sigma(t) = e^{-t^2/2\sigma^2}/(\sigma\sqrt{2\pi})`.

Precision: the Krylov vectors are as precise as the products by default (float64 for a float64
operator, float32 otherwise); Ritz values, quadrature nodes and weights are float64.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor

from ..errors import ConfigError, ShapeError, unknown_name

__all__ = [
    "LinearOperator",
    "DenseOperator",
    "LanczosResult",
    "SpectralDensity",
    "lanczos",
    "top_eigenvalues",
    "trace",
    "density",
]

WHICH = ("largest", "smallest", "magnitude")
TRACE_METHODS = ("hutchinson", "hutch++")
DEFAULT_SEED = 0


class LinearOperator(Protocol):
    """A symmetric ``P x P`` operator given by its products ``matmat(V) = A V`` (``V``: (P, m))."""

    dim: int
    device: torch.device

    def matmat(self, V: Tensor) -> Tensor: ...


class DenseOperator:
    """A dense symmetric matrix ``A`` (P, P) as a `LinearOperator` (products in its dtype)."""

    def __init__(self, A: Tensor) -> None:
        if A.dim() != 2 or A.shape[0] != A.shape[1] or A.shape[0] == 0:
            raise ShapeError(f"a dense operator must be a non-empty square matrix, got shape {tuple(A.shape)}")
        if not A.is_floating_point():
            raise ShapeError(f"a dense operator must be floating point, got {A.dtype}")
        if not torch.allclose(A, A.T, rtol=0, atol=100 * torch.finfo(A.dtype).eps * float(A.abs().max())):
            raise ShapeError("the matrix is not symmetric; Lanczos and these trace estimates need A = Aᵀ "
                             "(pass (A + A.T) / 2 for its symmetric part)")
        self.A, self.dim, self.device, self.dtype = A, A.shape[0], A.device, A.dtype

    def matmat(self, V: Tensor) -> Tensor:
        return self.A @ V.to(self.dtype)


def _as_operator(op: LinearOperator | Tensor) -> LinearOperator:
    return DenseOperator(op) if isinstance(op, Tensor) else op


# ----------------------------------------------------------------------------------------------
# Random vectors and working precision


def _default_generator(generator: torch.Generator | None) -> torch.Generator:
    if generator is None:
        return torch.Generator().manual_seed(DEFAULT_SEED)
    return generator


def _randn(gen: torch.Generator, shape: tuple[int, ...], device: torch.device,
           dtype: torch.dtype = torch.float64) -> Tensor:
    # drawn in float32 (6x faster than float64 on CPU; a start vector needs no more precision),
    # used in `dtype`
    return torch.randn(shape, generator=gen, device=gen.device, dtype=torch.float32).to(device, dtype)


def _rademacher(gen: torch.Generator, shape: tuple[int, ...], device: torch.device,
                dtype: torch.dtype = torch.float64) -> Tensor:
    bits = torch.randint(0, 2, shape, generator=gen, device=gen.device, dtype=torch.int8)
    return bits.to(device=device, dtype=dtype).mul_(2).sub_(1)


def _apply_as(op: LinearOperator, V: Tensor) -> Tensor:
    """``A V`` in the dtype of ``V`` (the estimator's working precision)."""
    return op.matmat(V).to(V.dtype)


def _coarser(op: LinearOperator, dtype: torch.dtype = torch.float64) -> torch.dtype:
    """The less precise of the operator's dtype and the Krylov vectors' `dtype`."""
    op_dtype = getattr(op, "dtype", torch.float64)
    return op_dtype if torch.finfo(op_dtype).eps > torch.finfo(dtype).eps else dtype


def _krylov_dtype(op: LinearOperator, dtype: torch.dtype | None) -> torch.dtype:
    """`dtype`, or by default as precise as the products: float64 for a float64 operator, else
    float32 (a float64 basis would not make a float32 operator's eigenvalues more accurate)."""
    if dtype is None:
        return torch.float64 if getattr(op, "dtype", torch.float64) == torch.float64 else torch.float32
    if dtype not in (torch.float32, torch.float64):
        raise ConfigError(f"krylov_dtype must be torch.float32, torch.float64 or None (as precise as the "
                          f"products), got {dtype}")
    return dtype


def _breakdown(op: LinearOperator, dtype: torch.dtype = torch.float64) -> float:
    """Relative size of a Lanczos residual below which the Krylov space counts as invariant."""
    return 100 * torch.finfo(_coarser(op, dtype)).eps


# ----------------------------------------------------------------------------------------------
# Lanczos tridiagonalization (the plain recurrence; columns of V0 run side by side)


def _orthogonalize(W: Tensor, basis: Tensor) -> Tensor:
    """Remove from each column ``W[:, c]`` its components along the rows of ``basis[c]``
    (``basis``: (n, j, P), orthonormal rows); twice, which is enough in floating point."""
    for _ in range(2):
        coef = torch.einsum("njp,pn->nj", basis, W)
        W = W - torch.einsum("njp,nj->pn", basis, coef)
    return W


def _tridiagonal(alpha: Tensor, beta: Tensor) -> Tensor:
    """(..., m) diagonals and (..., m-1) off-diagonals -> (..., m, m) symmetric tridiagonal."""
    return (torch.diag_embed(alpha) + torch.diag_embed(beta, offset=1)
            + torch.diag_embed(beta, offset=-1))


def _lanczos(op: LinearOperator, V0: Tensor, steps: int) -> tuple[Tensor, Tensor]:
    """``steps`` Lanczos iterations from each column of ``V0`` (P, n), side by side.

    Returns the diagonals ``alpha`` (n, steps) and off-diagonals ``beta`` (n, steps - 1) of each
    column's tridiagonal ``T``, float64 (the basis is kept in ``V0``'s dtype). A column whose
    Krylov space becomes invariant (``beta ~ 0``) is padded with zeros: a decoupled zero block,
    whose quadrature weights (first eigenvector components) are 0, so the Gauss rule of the
    invariant part is unchanged.
    """
    P, n = V0.shape
    tol = _breakdown(op, V0.dtype)
    Q = V0.new_zeros(n, steps, P)
    alpha = V0.new_zeros(n, steps)
    beta = V0.new_zeros(n, steps)
    q = V0 / V0.norm(dim=0)
    q_prev = torch.zeros_like(q)
    b_prev = V0.new_zeros(n)
    scale = V0.new_zeros(n)
    for j in range(steps):
        Q[:, j] = q.T
        w = _apply_as(op, q)
        a = (q * w).sum(0)
        w = _orthogonalize(w - a * q - b_prev * q_prev, Q[:, : j + 1])
        b = w.norm(dim=0)
        scale = torch.maximum(scale, a.abs() + b + b_prev)
        b = torch.where(b <= tol * scale, torch.zeros_like(b), b)
        alpha[:, j], beta[:, j] = a, b
        q_prev, b_prev = q, b
        q = torch.where(b > 0, w / torch.where(b > 0, b, torch.ones_like(b)), torch.zeros_like(w))
    return alpha.to(torch.float64), beta[:, :-1].to(torch.float64)


# ----------------------------------------------------------------------------------------------
# Extreme eigenvalues: Lanczos with full reorthogonalization, Rayleigh–Ritz on the whole basis


def _orthogonalize_vector(w: Tensor, basis: Tensor) -> tuple[Tensor, Tensor]:
    """`w` (P,) without its components along the orthonormal rows of `basis` (m, P), and the
    coefficients ``basis @ w`` that were removed (m,).

    Classical Gram–Schmidt, repeated once when the first pass cancelled more than half of the
    norm (Kahan–Parlett's "twice is enough" test): the Lanczos vector is nearly orthogonal to the
    basis already, so the second pass, which would read the basis again, is usually skipped."""
    before = w.norm()
    coef = basis @ w
    w = torch.addmv(w, basis.T, coef, alpha=-1)
    if w.norm() < 0.5 ** 0.5 * before:
        again = basis @ w
        w = torch.addmv(w, basis.T, again, alpha=-1)
        coef = coef + again
    return w, coef


def _order(theta: Tensor, which: str) -> Tensor:
    if which == "largest":
        return torch.argsort(theta, descending=True)
    if which == "smallest":
        return torch.argsort(theta)
    return torch.argsort(theta.abs(), descending=True)


def _key(theta: Tensor, which: str) -> Tensor:
    """Larger key = wanted first."""
    return {"largest": theta, "smallest": -theta, "magnitude": theta.abs()}[which]


def _grown(buffer: Tensor, limit: int) -> Tensor:
    """`buffer` with twice the rows (at most `limit`), its rows copied."""
    out = torch.empty(min(2 * buffer.shape[0], limit), *buffer.shape[1:], dtype=buffer.dtype, device=buffer.device)
    out[: buffer.shape[0]] = buffer
    return out


def _ritz_residuals(Q: Tensor, AQ: Tensor, theta: Tensor, S: Tensor) -> Tensor:
    """``||A y_i - θ_i y_i||`` for the Ritz pairs ``(θ_i, y_i = Q^T s_i)``, from the kept
    products ``AQ`` (no new product); float64 (n,)."""
    S = S.to(Q.dtype)
    R = AQ.T @ S - (Q.T @ S) * theta.to(Q.dtype)
    return R.norm(dim=0).to(torch.float64)


def _value_error(theta: Tensor, S: Tensor, idx: Tensor, Q: Tensor, AQ: Tensor, tol: float,
                 size: float) -> tuple[float, float]:
    """(largest relative residual, largest relative eigenvalue error bound) of the Ritz pairs
    ``idx``: ``min(r_i, r_i² / δ_i) / size`` with ``δ_i`` the gap from ``θ_i`` to the nearest
    Ritz value on either side, less that value's own residual (each interval ``θ_j ± r_j`` holds
    an eigenvalue). Ritz values within ``tol·size`` of ``θ_i`` count as copies of its eigenvalue
    and are skipped. The Ritz values stand in for the unknown rest of the spectrum, as in every
    a-posteriori Lanczos estimate."""
    order = torch.argsort(theta)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(len(order), device=order.device)
    sorted_theta = theta[order]
    neighbours: dict[int, list[int]] = {}
    for i in idx.tolist():
        near = []
        for step in (-1, 1):
            j = int(rank[i]) + step
            while 0 <= j < len(order) and abs(float(sorted_theta[j] - theta[i])) <= tol * size:
                j += step
            if 0 <= j < len(order):
                near.append(int(order[j]))
        neighbours[i] = near
    cols = sorted(set(idx.tolist()) | {j for near in neighbours.values() for j in near})
    r = dict(zip(cols, _ritz_residuals(Q, AQ, theta[cols], S[:, cols]).tolist()))
    worst_r, worst = 0.0, 0.0
    for i, near in neighbours.items():
        gap = min((abs(float(theta[j] - theta[i])) - r[j] for j in near), default=math.inf)
        bound = r[i] if gap <= 0 else min(r[i], r[i] ** 2 / gap)
        worst_r, worst = max(worst_r, r[i] / size), max(worst, bound / size)
    return worst_r, worst


@dataclass
class LanczosResult:
    """What one `lanczos` run found: Ritz ``values`` (k,) and unit ``vectors`` (P, k), float64.

    ``residual``: the largest relative Ritz residual ``||A y - θ y|| / max|θ|`` of the wanted
    pairs (how well the vectors have converged). ``value_error``: the largest bound, relative to
    ``max|θ|``, on the distance of a wanted Ritz value to an eigenvalue, ``min(r, r²/gap)``
    (Parlett's residual and gap theorems, gaps from the Ritz values): how well the values have
    converged, at most ``residual`` and usually far below it. ``products``: operator products
    taken. ``converged``: the stopping rule was met (``residual <= tol`` and, for ``k >= 2``, a
    further sequence orthogonal to everything explored left the values unchanged, so repeated
    eigenvalues are counted); a run that stops at ``max_iter`` has ``converged = False`` even
    when its values are exact, and then ``value_error`` says whether they are.
    ``tol``: the tolerance in force."""

    values: Tensor
    vectors: Tensor
    residual: float
    products: int
    converged: bool
    tol: float
    value_error: float = math.inf


def lanczos(
    op: LinearOperator | Tensor,
    k: int = 1,
    *,
    which: str = "largest",
    max_iter: int = 100,
    tol: float | None = None,
    generator: torch.Generator | None = None,
    start_vector: Tensor | None = None,
    krylov_dtype: torch.dtype | None = None,
) -> LanczosResult:
    """The ``k`` extreme eigenpairs of a symmetric operator by Lanczos with full
    reorthogonalization, Rayleigh–Ritz on the whole basis, and restarts.

    ``which``: ``"largest"`` (algebraic, descending), ``"smallest"`` (algebraic, ascending) or
    ``"magnitude"`` (descending ``|λ|``). The basis ``Q`` and the products ``AQ`` are kept, so the
    Ritz pairs come from the projected matrix ``Q A Q^T`` of everything explored (float64), and a
    residual ``||A y - θ y||`` can be computed exactly. A Lanczos sequence from a random start
    ends when its wanted Ritz pairs have converged (``beta_m |e_m^T s_i| <= tol·max|θ|``, then
    checked explicitly) or when it breaks down (invariant subspace). Single-vector Krylov spaces
    hold one vector of each eigenspace, so a repeated eigenvalue is seen once; for ``k >= 2`` a
    new sequence is therefore started from a random vector orthogonal to the basis (Lanczos on
    the deflated operator ``(I - QQ^T) A (I - QQ^T)``, which holds every missed copy), run until
    its own best Ritz pair has converged, and the search stops once such a sequence leaves the
    wanted values unchanged. ``k = 1`` needs no such check (a copy does not change the top value).
    At most ``min(max_iter, P)`` products; default ``tol = max(1e-10, 100 eps)`` of the coarser
    of the products' and the basis' dtypes. Random starts from ``generator`` (default: seed 0).

    ``start_vector`` (optional) starts the first sequence there instead of at a random vector
    (plus a 1e-3 random part, so no eigendirection is missed): a warm start from the previous top
    eigenvector when the operator changes little between calls, as along a training run.

    ``krylov_dtype``: the dtype of ``Q`` and ``AQ``; by default as precise as the products
    (float64 for a float64 operator, float32 otherwise). float32 halves the memory of the basis and
    the traffic of its reorthogonalization, which on a small model costs as much as the products;
    the residuals it can certify are about 1e-6 relative.

    Returns a `LanczosResult` (no warning; see `top_eigenvalues`).
    """
    op = _as_operator(op)
    if which not in WHICH:
        raise unknown_name("eigenvalue order", which, WHICH)
    if not 1 <= k <= op.dim:
        raise ConfigError(f"k={k} eigenvalues requested of a {op.dim}-dimensional operator; "
                          f"k must lie in 1..{op.dim}")
    if max_iter < k:
        raise ConfigError(f"max_iter={max_iter} is smaller than k={k}; raise max_iter")
    krylov_dtype = _krylov_dtype(op, krylov_dtype)
    if tol is None:
        tol = max(1e-10, 100 * torch.finfo(_coarser(op, krylov_dtype)).eps)
    gen = _default_generator(generator)
    P, steps, brk = op.dim, min(max_iter, op.dim), _breakdown(op, krylov_dtype)
    kd = dict(dtype=krylov_dtype, device=op.device)
    f64 = dict(dtype=torch.float64, device=op.device)
    # the Krylov basis grows as needed: max_iter x P rows up front would cost more to allocate
    # than the few products a well-separated top eigenvalue takes, and a block above the
    # allocator's mmap threshold (32 MB in glibc) comes back as fresh pages on every call, each
    # first write a page fault (2 ms per float64 row at P = 273k, as long as the product it holds)
    rows = steps if steps <= 16 else 8  # a capped run (a probe's budget) gets its basis at once
    Q, AQ = torch.empty(rows, P, **kd), torch.empty(rows, P, **kd)
    M = torch.zeros(steps, steps, **f64)
    alpha, beta = torch.zeros(steps, **f64), torch.zeros(steps, **f64)
    if start_vector is not None:
        if start_vector.shape != (P,):
            raise ShapeError(f"start_vector must have shape ({P},) (one entry per coordinate of the "
                             f"operator), got {tuple(start_vector.shape)}")
        q = start_vector.to(**kd)
        q = torch.add(q / q.norm(), _randn(gen, (P,), op.device, krylov_dtype), alpha=1e-3 / math.sqrt(P))
    else:
        q = _randn(gen, (P,), op.device, krylov_dtype)
    q = q / q.norm()
    start, b_prev, scale = 0, 0.0, 0.0
    reference: Tensor | None = None  # wanted values when the previous sequence ended
    converged, m = False, 0
    for j in range(steps):
        m = j + 1
        if j == Q.shape[0]:
            Q, AQ = _grown(Q, steps), _grown(AQ, steps)
        Q[j] = q
        AQ[j] = aq = _apply_as(op, q[:, None])[:, 0]
        a = float(torch.dot(q, aq))
        w = torch.add(aq, q, alpha=-a)
        if j > start:
            w.sub_(Q[j - 1], alpha=b_prev)
        # The new column of Q^T A Q (symmetric: also its new row) is what Gram–Schmidt removes
        # from w, plus the a q and b_prev q_prev removed above: one read of the basis for both.
        w, row = _orthogonalize_vector(w, Q[:m])
        row = row.to(torch.float64)
        row[j] += a
        if j > start:
            row[j - 1] += b_prev
        M[j, :m], M[:m, j] = row, row
        alpha[j] = M[j, j]
        b = float(w.norm())
        scale = max(scale, float(aq.norm()))
        broken = b <= brk * scale
        theta, S = torch.linalg.eigh(M[:m, :m])
        size = float(theta.abs().max()) or torch.finfo(torch.float64).tiny
        if m == P:  # the basis spans everything: the Ritz values are the eigenvalues
            converged = True
            break
        # Cheap test (the Lanczos relation of the current sequence), then the explicit residual.
        if reference is None:
            cheap = m >= k and (broken or float((b * S[-1, _order(theta, which)[:k]].abs()).max())
                                <= tol * size)
        else:
            t_own, s_own = torch.linalg.eigh(_tridiagonal(alpha[start:m], beta[start: m - 1]))
            best = _order(t_own, which)[0]
            cheap = broken or b * float(s_own[-1, best].abs()) <= tol * size
        ended = broken
        if cheap:
            idx = _order(theta, which)[:k]
            residual = float(_ritz_residuals(Q[:m], AQ[:m], theta[idx], S[:, idx]).max()) / size
            if residual <= tol:
                wanted = torch.sort(_key(theta, which), descending=True).values[:k]
                if k == 1 or (reference is not None
                              and float((wanted - reference).abs().max()) <= tol * size):
                    converged = True
                    break
                reference, ended = wanted, True
        if ended:  # start a new sequence orthogonal to everything explored
            r = _orthogonalize_vector(_randn(gen, (P,), op.device, krylov_dtype), Q[:m])[0]
            q, start, b_prev = r / r.norm(), m, 0.0
        else:
            beta[j], b_prev = b, b
            q = w / b
    theta, S = torch.linalg.eigh(M[:m, :m])
    idx = _order(theta, which)[:k]
    size = float(theta.abs().max()) or torch.finfo(torch.float64).tiny
    if m == P:
        residual = value_error = 0.0
    else:
        residual, value_error = _value_error(theta, S, idx, Q[:m], AQ[:m], tol, size)
    vectors = (Q[:m].T @ S[:, idx].to(krylov_dtype)).to(torch.float64)
    return LanczosResult(theta[idx], vectors / vectors.norm(dim=0), residual, m, converged, tol, value_error)


def top_eigenvalues(
    op: LinearOperator | Tensor,
    k: int = 1,
    *,
    return_vectors: bool = False,
    stacklevel: int = 1,
    **options: Any,
) -> Tensor | tuple[Tensor, Tensor]:
    """`lanczos`'s values (and with ``return_vectors`` its vectors), warning (RuntimeWarning)
    when what is returned has not converged: the values, when their error bound
    ``value_error`` exceeds ``tol``; with ``return_vectors`` also the vectors, when the relative
    residual does. A run that stops at ``max_iter`` with values known to ``tol`` does not warn.
    ``stacklevel``: the warning points at the caller this many frames up (1: the direct caller)."""
    result = lanczos(op, k, **options)
    if result.value_error > result.tol:
        warnings.warn(
            f"Lanczos did not converge in {result.products} products: the Ritz values are within "
            f"{result.value_error:.1e} (relative) of eigenvalues by the bound min(r, r²/gap), above "
            f"tol={result.tol:.1e}; raise max_iter or tol",
            RuntimeWarning,
            stacklevel=stacklevel + 1,
        )
    elif return_vectors and result.residual > result.tol:
        warnings.warn(
            f"Lanczos eigenvectors did not converge in {result.products} products: relative Ritz "
            f"residual {result.residual:.1e} > tol={result.tol:.1e} (the eigenvalues did, to "
            f"{result.value_error:.1e}); raise max_iter or tol",
            RuntimeWarning,
            stacklevel=stacklevel + 1,
        )
    return (result.values, result.vectors) if return_vectors else result.values


# ----------------------------------------------------------------------------------------------
# Trace


def trace(
    op: LinearOperator | Tensor,
    *,
    n_samples: int = 60,
    method: str = "hutch++",
    generator: torch.Generator | None = None,
) -> tuple[float, float]:
    """``(estimate, standard_error)`` of ``tr A`` from ``n_samples`` products.

    ``"hutchinson"``: mean of ``z^T A z`` over ``n_samples`` Rademacher ``z``; standard error
    = sample std / sqrt(n_samples). ``"hutch++"`` (Meyer et al. 2021, Algorithm 1):
    ``⌊n/3⌋`` products sketch ``Q = orth(A S)``, ``⌊n/3⌋`` give ``tr(Q^T A Q)`` exactly, and
    the remaining ``g = n - 2⌊n/3⌋`` Rademacher probes projected off ``Q`` estimate the residual
    trace; its standard error is that of the residual part (sample std / sqrt(g)). Probes from
    ``generator`` (default: seed 0), in the products' precision.
    """
    op = _as_operator(op)
    if method not in TRACE_METHODS:
        raise unknown_name("trace method", method, TRACE_METHODS)
    gen = _default_generator(generator)
    P, dt = op.dim, _krylov_dtype(op, None)  # as precise as the products
    if method == "hutchinson":
        if n_samples < 2:
            raise ConfigError(f"hutchinson needs n_samples >= 2 for a standard error, "
                              f"got {n_samples}")
        Z = _rademacher(gen, (P, n_samples), op.device, dt)
        samples = (Z * _apply_as(op, Z)).sum(0)
        return float(samples.mean()), float(samples.std() / math.sqrt(n_samples))
    if n_samples < 4:
        raise ConfigError(f"hutch++ needs n_samples >= 4 (sketch, its products and >= 2 residual "
                          f"probes), got {n_samples}")
    s = n_samples // 3
    g = n_samples - 2 * s
    S = _rademacher(gen, (P, s), op.device, dt)
    Q = torch.linalg.qr(_apply_as(op, S)).Q  # (P, min(P, s)), orthonormal columns
    low_rank = torch.trace(Q.T @ _apply_as(op, Q))
    G = _rademacher(gen, (P, g), op.device, dt)
    G = G - Q @ (Q.T @ G)
    samples = (G * _apply_as(op, G)).sum(0)
    return float(low_rank + samples.mean()), float(samples.std() / math.sqrt(g))


# ----------------------------------------------------------------------------------------------
# Stochastic Lanczos quadrature


@dataclass(frozen=True)
class SpectralDensity:
    r"""A discrete approximation of an operator's eigenvalue distribution
    :math:`\phi(t) = \frac1P\sum_i \delta(t-\lambda_i)` by stochastic Lanczos quadrature.

    ``nodes`` (n_probes, m): the Ritz values of each probe's Lanczos tridiagonal matrix.
    ``weights`` (n_probes, m): the squared first components of its eigenvectors divided by
    ``n_probes``, so each probe's row sums to ``1/n_probes`` and all weights sum to 1 (the
    measure is a probability distribution over eigenvalues). ``dim``: ``P``. float64.
    """

    nodes: Tensor
    weights: Tensor
    dim: int

    @property
    def n_probes(self) -> int:
        return int(self.nodes.shape[0])

    def probe_moments(self, k: int) -> Tensor:
        """Each probe's quadrature of :math:`v^\\top A^k v` (unit ``v``), shape (n_probes,);
        exact (up to rounding) for ``k <= 2m - 1``."""
        return self.n_probes * (self.weights * self.nodes**k).sum(1)

    def moment(self, k: int) -> float:
        """:math:`\\int t^k \\phi(t) dt \\approx \\operatorname{tr}(A^k)/P` (k = 0 gives 1)."""
        return float((self.weights * self.nodes**k).sum())

    def moment_standard_error(self, k: int) -> float:
        """Standard error of `moment(k)` from the spread over probes (std / sqrt(n_probes))."""
        if self.n_probes < 2:
            return math.nan
        return float(self.probe_moments(k).std() / math.sqrt(self.n_probes))

    def smoothed(self, grid: Tensor, sigma: float) -> Tensor:
        """The density broadened by a Gaussian of standard deviation ``sigma`` (eigenvalue
        units), evaluated at ``grid`` (any shape); integrates to 1 over the real line. float64."""
        if sigma <= 0:
            raise ConfigError(f"sigma must be positive, got {sigma}")
        t = grid.to(device=self.nodes.device, dtype=torch.float64)
        diff = t.reshape(-1, 1) - self.nodes.reshape(1, -1)
        kernel = torch.exp(-0.5 * (diff / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))
        return (kernel @ self.weights.reshape(-1)).reshape(t.shape)


def density(
    op: LinearOperator | Tensor,
    *,
    n_probes: int = 8,
    lanczos_steps: int = 64,
    generator: torch.Generator | None = None,
    probes: Tensor | None = None,
) -> SpectralDensity:
    """Eigenvalue density by stochastic Lanczos quadrature (Ghorbani et al. 2019).

    ``n_probes`` Rademacher probes (normalized inside Lanczos; or explicit ``probes`` (P, n)),
    each run for ``min(lanczos_steps, P)`` Lanczos steps, all probes side by side (one batched
    product per step). Returns a `SpectralDensity` whose ``moment(k)`` estimates ``tr(A^k)/P``
    without bias for ``k <= 2·lanczos_steps - 1``. The Krylov bases (``n_probes`` x
    ``lanczos_steps`` x P) are as precise as the products.
    """
    op = _as_operator(op)
    if lanczos_steps < 1:
        raise ConfigError(f"lanczos_steps must be >= 1, got {lanczos_steps}")
    dt = _krylov_dtype(op, None)  # as precise as the products
    if probes is None:
        if n_probes < 1:
            raise ConfigError(f"n_probes must be >= 1, got {n_probes}")
        V0 = _rademacher(_default_generator(generator), (op.dim, n_probes), op.device, dt)
    else:
        if probes.dim() != 2 or probes.shape[0] != op.dim:
            raise ShapeError(f"probes must have shape ({op.dim}, n_probes), "
                             f"got {tuple(probes.shape)}")
        V0 = probes.to(device=op.device, dtype=dt)
        if bool((V0.norm(dim=0) == 0).any()):
            raise ShapeError("a probe is the zero vector; probes must be nonzero columns")
    alpha, beta = _lanczos(op, V0, min(lanczos_steps, op.dim))
    theta, S = torch.linalg.eigh(_tridiagonal(alpha, beta))
    weights = S[:, 0, :] ** 2 / V0.shape[1]
    return SpectralDensity(nodes=theta, weights=weights, dim=op.dim)
