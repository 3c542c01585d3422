"""Checks of layerlab.lens.krylov on dense symmetric matrices: Lanczos against
torch.linalg.eigvalsh, Hutchinson/Hutch++ against the exact trace, SLQ against tr(A^k)/P."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from layerlab.errors import ConfigError, ShapeError
from layerlab.lens import krylov

DT = torch.float64


def haar(n: int, seed: int) -> torch.Tensor:
    g = torch.randn(n, n, generator=torch.Generator().manual_seed(seed), dtype=DT)
    q, r = torch.linalg.qr(g)
    return q * torch.sign(torch.diagonal(r))


def symmetric(eigs: torch.Tensor, seed: int = 0) -> torch.Tensor:
    U = haar(len(eigs), seed)
    A = U @ torch.diag(eigs) @ U.T
    return 0.5 * (A + A.T)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


# A spectrum with both signs, distinct gaps and a bulk (P = 40).
KNOWN = torch.cat([torch.tensor([50.0, 20.0, 10.0, 5.0, 2.0, -7.0, -3.0], dtype=DT),
                   torch.linspace(-1, 1, 33, dtype=DT)])


class Counted:
    """A dense operator that counts its products."""

    def __init__(self, A: torch.Tensor) -> None:
        self.inner, self.n = krylov.DenseOperator(A), 0
        self.dim, self.device, self.dtype = self.inner.dim, self.inner.device, self.inner.dtype

    def matmat(self, V: torch.Tensor) -> torch.Tensor:
        self.n += V.shape[1]
        return self.inner.matmat(V)


# ----------------------------------------------------------------------------------------------
# Lanczos


@pytest.mark.parametrize("which", krylov.WHICH)
def test_lanczos_finds_the_extreme_eigenvalues_of_a_dense_matrix(which):
    # five separated values at each end over a bulk of 190 values in [-1, 1]: far fewer
    # products than P = 200
    ends = torch.tensor([50.0, 20.0, 10.0, 5.0, 2.0, -7.0, -3.0, -2.5, -2.0, -1.5], dtype=DT)
    A = symmetric(torch.cat([ends, 2 * torch.rand(190, generator=gen(9), dtype=DT) - 1]), seed=1)
    exact = torch.linalg.eigvalsh(A)
    key = {"largest": -exact, "smallest": exact, "magnitude": -exact.abs()}[which]
    want = exact[torch.argsort(key)][:5]
    found = krylov.lanczos(A, 5, which=which, generator=gen())
    assert found.converged and found.products < 120, found.products
    assert rel(found.values, want) < 1e-10, (which, found.values, want)
    R = A @ found.vectors - found.vectors * found.values
    assert float(R.norm(dim=0).max()) == pytest.approx(found.residual * 50, rel=1e-3)  # the residual it reports
    assert found.residual <= found.tol and found.value_error <= found.residual


def test_lanczos_restarts_after_an_invariant_subspace():
    # Eigenvalues 3 (x20) and 1 (x20): every Krylov space has dimension <= 2, so the top-3 needs
    # restarts orthogonal to the basis; the answer is {3, 3, 3}.
    A = symmetric(torch.cat([torch.full((20,), 3.0, dtype=DT), torch.ones(20, dtype=DT)]), seed=3)
    found = krylov.lanczos(A, 3, generator=gen())
    assert found.converged and rel(found.values, torch.full((3,), 3.0, dtype=DT)) < 1e-10
    # one eigenvalue needs no check of multiplicities: one Krylov space of dimension 2
    counted = Counted(A)
    assert abs(float(krylov.lanczos(counted, 1).values[0]) - 3) < 1e-12 and counted.n == 2


def test_the_whole_space_gives_the_exact_spectrum():
    A = symmetric(torch.linspace(-1, 1, 12, dtype=DT), seed=5)
    found = krylov.lanczos(A, 12, max_iter=12)
    assert found.products == 12 and found.converged and found.residual == 0
    assert rel(found.values, torch.linalg.eigvalsh(A).flip(0)) < 1e-12


def test_value_error_bounds_the_distance_to_an_eigenvalue_and_drives_the_warning():
    # Top eigenvalues 1.0, 0.98, 0.96 over a bulk in [0, 0.9]: the vectors converge slowly, the
    # values fast (error ~ r²/gap).
    g = gen(7)
    eigs = torch.cat([torch.tensor([1.0, 0.98, 0.96], dtype=DT), 0.9 * torch.rand(297, generator=g, dtype=DT)])
    A = symmetric(eigs, seed=8)
    exact = torch.linalg.eigvalsh(A).flip(0)
    for max_iter in (8, 16, 24, 32, 48):
        found = krylov.lanczos(A, 3, max_iter=max_iter, tol=1e-12, generator=gen())
        nearest = (found.values[:, None] - exact[None, :]).abs().min(dim=1).values
        assert float(nearest.max()) <= found.value_error * float(found.values.abs().max()) + 1e-15, max_iter
        assert found.value_error <= found.residual
    # a run whose values are known to tol but whose vectors are not: warns only for the vectors
    found = krylov.lanczos(A, 3, max_iter=40, tol=1e-8, generator=gen())
    assert found.value_error <= 1e-8 < found.residual, (found.value_error, found.residual)
    assert rel(found.values, exact[:3]) < 1e-8
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        krylov.top_eigenvalues(A, 3, max_iter=40, tol=1e-8, generator=gen())
    with pytest.warns(RuntimeWarning, match="eigenvectors did not converge"):
        krylov.top_eigenvalues(A, 3, max_iter=40, tol=1e-8, generator=gen(), return_vectors=True)
    # capped before the values converge: warns, and the values are indeed off by more than tol
    with pytest.warns(RuntimeWarning, match="did not converge in 8 products"):
        values = krylov.top_eigenvalues(A, 3, max_iter=8, tol=1e-8, generator=gen())
    assert rel(values, exact[:3]) > 1e-8


def test_float32_basis_of_a_float64_operator():
    # the default tol follows the coarser dtype (100 eps32); values and vectors come back float64
    A = symmetric(KNOWN)
    found = krylov.lanczos(A, 5, krylov_dtype=torch.float32, generator=gen())
    assert found.converged and found.tol == pytest.approx(100 * torch.finfo(torch.float32).eps)
    assert found.values.dtype == found.vectors.dtype == torch.float64
    assert rel(found.values, torch.sort(KNOWN, descending=True).values[:5]) < 2e-5
    y = found.vectors[:, 0]
    assert float((A @ y - found.values[0] * y).norm()) <= 2e-5 * 50
    assert krylov._krylov_dtype(krylov.DenseOperator(A.float()), None) == torch.float32
    with pytest.raises(ConfigError, match="krylov_dtype"):
        krylov.lanczos(A, 1, krylov_dtype=torch.float16)


def test_a_warm_start_needs_fewer_products():
    A = symmetric(KNOWN, seed=2)
    top = torch.linalg.eigh(A).eigenvectors[:, -1]
    cold, warm = Counted(A), Counted(A)
    krylov.lanczos(cold, 1, tol=1e-8, generator=gen())
    found = krylov.lanczos(warm, 1, tol=1e-8, generator=gen(), start_vector=top)
    assert abs(float(found.values[0]) - 50) < 1e-7 and warm.n < cold.n
    with pytest.raises(ShapeError, match="start_vector"):
        krylov.lanczos(A, 1, start_vector=torch.ones(3, dtype=DT))


# ----------------------------------------------------------------------------------------------
# Trace


def test_hutchpp_with_a_spanning_sketch_is_exact_and_hutchinson_is_within_its_error():
    A = symmetric(KNOWN)
    est, se = krylov.trace(A, n_samples=120, method="hutch++")  # the sketch spans R^40
    assert abs(est - float(KNOWN.sum())) < 1e-10 * float(KNOWN.abs().sum()) and se < 1e-10
    est, se = krylov.trace(A, n_samples=400, method="hutchinson")
    assert abs(est - float(KNOWN.sum())) < 3 * se
    # Hutchinson's SE near its exact value sqrt(2 Σ_{i≠j} A_ij² / n)
    sd = math.sqrt(2 * float((A**2).sum() - (torch.diagonal(A) ** 2).sum()) / 400)
    assert 0.8 < se / sd < 1.25


def test_hutchpp_beats_hutchinson_at_equal_budget_and_reports_honest_errors():
    # Four dominant eigenvalues over a [0, 1] bulk: the regime Hutch++ is built for.
    g = gen(11)
    eigs = torch.cat([torch.tensor([200.0, 150.0, 120.0, 100.0], dtype=DT), torch.rand(56, generator=g, dtype=DT)])
    A = symmetric(eigs, seed=7)
    exact, budget, trials = float(eigs.sum()), 30, 30
    err = {m: [] for m in krylov.TRACE_METHODS}
    ses = {m: [] for m in krylov.TRACE_METHODS}
    for t in range(trials):
        for m in krylov.TRACE_METHODS:
            est, se = krylov.trace(A, n_samples=budget, method=m, generator=gen(100 + t))
            err[m].append(est - exact)
            ses[m].append(se)
    mae = {m: float(np.mean(np.abs(err[m]))) for m in err}
    assert mae["hutch++"] < mae["hutchinson"] / 5, mae
    # The reported SE is the error's scale: RMS error / RMS SE over 30 trials. Heavy-tailed
    # quadratic forms make this ratio noisy (over 200 trials: 1.01 and 1.00; 30-trial windows
    # range 0.6-1.26), so the band is [0.5, 1.7]: a SE off by a factor of 2 fails.
    for m in err:
        ratio = math.sqrt(np.mean(np.square(err[m])) / np.mean(np.square(ses[m])))
        assert 0.5 < ratio < 1.7, (m, ratio)
    # Hutchinson's SE against its exact value sqrt(2 Σ_{i≠j} A_ij² / m), within 20%.
    sd = math.sqrt(2 * float((A**2).sum() - (torch.diagonal(A) ** 2).sum()) / budget)
    assert abs(math.sqrt(np.mean(np.square(ses["hutchinson"]))) / sd - 1) < 0.2


# ----------------------------------------------------------------------------------------------
# Stochastic Lanczos quadrature


def test_slq_moments_match_traces_of_powers():
    g = gen(3)
    A = symmetric(torch.randn(60, generator=g, dtype=DT), seed=4)
    P, n_probes = 60, 40
    dens = krylov.density(A, n_probes=n_probes, lanczos_steps=10, generator=gen())
    assert dens.nodes.shape == (n_probes, 10) and abs(float(dens.weights.sum()) - 1) < 1e-12
    Ak = torch.eye(P, dtype=DT)
    for k in range(1, 5):
        Ak = Ak @ A
        exact = float(torch.trace(Ak)) / P
        # exact quadrature for degree <= 19: only the probe average errs (Rademacher: sd of
        # zᵀAᵏz/P is sqrt(2 Σ_{i≠j} (Aᵏ)_ij²)/P); 4 sd of the mean
        sd = math.sqrt(2 * float((Ak**2).sum() - (torch.diagonal(Ak) ** 2).sum())) / P
        assert abs(dens.moment(k) - exact) < 4 * sd / math.sqrt(n_probes), k
    # per probe the Gauss rule reproduces vᵀAᵏv/vᵀv for k <= 2m - 1 (m = 3, k <= 5)
    probes = torch.randn(P, 3, generator=gen(2), dtype=DT)
    dens = krylov.density(A, lanczos_steps=3, probes=probes)
    Ak = torch.eye(P, dtype=DT)
    for k in range(1, 6):
        Ak = Ak @ A
        assert rel(dens.probe_moments(k), (probes * (Ak @ probes)).sum(0) / (probes**2).sum(0)) < 1e-10


def test_slq_full_lanczos_recovers_the_spectrum_and_smooths_to_a_density():
    dens = krylov.density(symmetric(KNOWN, seed=4), n_probes=2, lanczos_steps=40)
    heavy = dens.nodes[dens.weights > 1e-6]
    dist = (heavy[:, None] - KNOWN[None, :]).abs().min(dim=1).values
    assert float(dist.max()) < 1e-8  # every weighted node is an eigenvalue of A
    grid = torch.linspace(-20, 70, 9001, dtype=DT)
    phi = dens.smoothed(grid, sigma=0.5)
    assert abs(float(torch.trapezoid(phi, grid)) - 1) < 1e-6
    assert abs(float(torch.trapezoid(grid * phi, grid)) - dens.moment(1)) < 1e-6


# ----------------------------------------------------------------------------------------------
# Errors


def test_bad_inputs_raise_with_the_fix():
    A = symmetric(KNOWN)
    with pytest.raises(ShapeError, match="symmetric"):
        krylov.lanczos(A + torch.triu(torch.ones_like(A), 1), 1)
    with pytest.raises(ShapeError, match="square"):
        krylov.DenseOperator(A[:3])
    with pytest.raises(ConfigError, match="k must lie"):
        krylov.lanczos(A, 41)
    with pytest.raises(ConfigError, match="largest"):
        krylov.lanczos(A, 1, which="larget")
    with pytest.raises(ConfigError, match="max_iter"):
        krylov.lanczos(A, 5, max_iter=3)
    with pytest.raises(ConfigError, match="hutch"):
        krylov.trace(A, method="hutchpp")
    with pytest.raises(ConfigError, match="n_samples"):
        krylov.trace(A, n_samples=3)
    with pytest.raises(ShapeError, match="probes"):
        krylov.density(A, probes=torch.ones(39, 2, dtype=DT))
    with pytest.raises(ShapeError, match="zero vector"):
        krylov.density(A, probes=torch.zeros(40, 2, dtype=DT))
