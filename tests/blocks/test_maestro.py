"""MaestroLinear (arXiv:2308.14929): factorized forward = dense reference, SVD decomposition, ordered
dropout sampling, group lasso, shrinking, and the defining property: on a linear autoencoder LoD
recovers PCA's components in order of variance."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from layerlab.blocks.maestro import (MaestroLinear, decompose, lod_loss, maestro_layers, sample_truncation,
                                     truncated, uniform_rank_fraction)
from layerlab.errors import ConfigError, ShapeError

F64 = torch.float64


def sin_largest_angle(a: torch.Tensor, b: torch.Tensor) -> float:
    """sin of the largest principal angle between span(a) and span(b) (equal dimensions)."""
    qa, _ = torch.linalg.qr(a)
    qb, _ = torch.linalg.qr(b)
    return float(torch.linalg.matrix_norm(qa - qb @ (qb.T @ qa), ord=2))


@pytest.mark.parametrize("lead", [(), (5,), (2, 3)], ids=["1d", "2d", "3d"])
def test_factorized_forward_equals_the_dense_reference(lead):
    torch.manual_seed(0)
    m = MaestroLinear(6, 4, dtype=F64)
    x = torch.randn(*lead, 6, dtype=F64)
    for b in (None, 1, 2, 4):
        torch.testing.assert_close(m(x, b), m.reference(x, b), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(m(x, b), m.to_linear(b)(x), rtol=1e-12, atol=1e-12)
    with truncated({m: 2}):
        torch.testing.assert_close(m(x), m.reference(x, 2), rtol=1e-12, atol=1e-12)
    assert m.truncation is None
    assert m.dense_weight(2).shape == (4, 6) and torch.linalg.matrix_rank(m.dense_weight(2)) == 2


def test_from_linear_is_exact_and_its_truncation_is_the_svd_truncation():
    torch.manual_seed(0)
    lin = nn.Linear(7, 5).double()
    m = MaestroLinear.from_linear(lin)
    x = torch.randn(3, 7, dtype=F64)
    torch.testing.assert_close(m(x), lin(x), rtol=1e-10, atol=1e-12)
    w = lin.weight.detach()
    s = torch.linalg.svdvals(w)
    for b in range(1, 5):  # Eckart-Young: the error of the rank-b truncation is s_{b+1}
        err = torch.linalg.matrix_norm(w - m.dense_weight(b).detach(), ord=2)
        assert float(err) == pytest.approx(float(s[b]), rel=1e-10)
    torch.testing.assert_close(m.importance(), s, rtol=1e-10, atol=0)  # ||u_b|| ||v_b|| = s_b
    model = decompose(nn.Sequential(nn.Linear(7, 5), nn.ReLU(), nn.Linear(5, 2)))
    assert [type(l) for l in model] == [MaestroLinear, nn.ReLU, MaestroLinear] and len(maestro_layers(model)) == 2


def _autoencoder_fit(ranks: list[int], d: int = 8, r: int = 4, seed: int = 0):
    """A linear autoencoder x -> U_{:b} V_{:b}^T x on centred Gaussian data with covariance eigenvalues
    8, 7, ..., 1 in a random basis, fitted by L-BFGS to the exact LoD objective
    mean_{b in ranks} tr((I - W_b) M (I - W_b)^T), M = X^T X / n."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=F64))
    x = torch.randn(4000, d, generator=g, dtype=F64) * torch.arange(d, 0, -1, dtype=F64).sqrt() @ q.T
    second = x.T @ x / len(x)
    pcs = torch.linalg.eigh(second).eigenvectors.flip(1)  # by decreasing variance
    torch.manual_seed(seed + 1)
    m = MaestroLinear(d, d, rank=r, bias=False, dtype=F64)
    eye = torch.eye(d, dtype=F64)

    def objective() -> torch.Tensor:
        return sum(torch.trace((eye - m.dense_weight(b)) @ second @ (eye - m.dense_weight(b)).T) for b in ranks) / len(ranks)

    opt = torch.optim.LBFGS(m.parameters(), max_iter=2000, tolerance_grad=1e-12, tolerance_change=1e-15,
                            history_size=50, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = objective()
        loss.backward()
        return loss

    for _ in range(3):
        opt.step(closure)
    return m.u.detach(), m.v.detach(), pcs


def test_lod_on_a_linear_autoencoder_recovers_pca_in_order():
    """Every prefix of k components spans PCA's top-k subspace (sin of the largest principal angle
    < 1e-6, for U and V), so component k is the k-th principal direction; U_{:k} V_{:k}^T is the
    projection onto it (1e-6)."""
    u, v, pcs = _autoencoder_fit([1, 2, 3, 4])
    for k in range(1, 5):
        assert sin_largest_angle(v[:, :k], pcs[:, :k]) < 1e-6
        assert sin_largest_angle(u[:, :k], pcs[:, :k]) < 1e-6
        proj = pcs[:, :k] @ pcs[:, :k].T
        torch.testing.assert_close(u[:, :k] @ v[:, :k].T, proj, rtol=0, atol=1e-6)
    for k in range(4):  # ordered: the k-th component is the k-th principal direction
        cos = (v[:, k] / v[:, k].norm()) @ pcs[:, k]
        assert abs(float(cos)) > 1 - 1e-9


def test_without_ordered_dropout_only_the_full_rank_subspace_is_pca():
    """Control: fitting only b = r finds PCA's top-4 subspace, but its first component is not the
    first principal direction (the check above can fail)."""
    u, v, pcs = _autoencoder_fit([4])
    assert sin_largest_angle(v, pcs[:, :4]) < 1e-6
    assert sin_largest_angle(v[:, :1], pcs[:, :1]) > 0.1


def test_ordered_dropout_samples_layer_rank_pairs_uniformly():
    torch.manual_seed(0)
    layers = [MaestroLinear(4, 2), MaestroLinear(3, 3)]  # ranks 2 and 3: 5 pairs
    g = torch.Generator().manual_seed(0)
    n = 5000
    counts: dict[tuple[int, int], int] = {}
    for _ in range(n):
        pair = sample_truncation(layers, g)
        counts[pair] = counts.get(pair, 0) + 1
    assert set(counts) == {(0, 1), (0, 2), (1, 1), (1, 2), (1, 3)}
    se = math.sqrt(0.2 * 0.8 / n)
    assert all(abs(c / n - 0.2) < 4 * se for c in counts.values())


@torch.no_grad()
def test_group_lasso_and_importance_closed_forms():
    torch.manual_seed(0)
    m = MaestroLinear(5, 4, dtype=F64)
    vn, un = m.v.norm(dim=0), m.u.norm(dim=0)
    assert float(m.group_lasso(hierarchical=False)) == pytest.approx(float((vn + un).sum()), rel=1e-12)
    tails = sum(m.v[:, b:].norm() + m.u[:, b:].norm() for b in range(4))
    assert float(m.group_lasso(hierarchical=True)) == pytest.approx(float(tails), rel=1e-12)
    torch.testing.assert_close(m.importance(), vn * un)


def test_shrink_and_prune_keep_the_active_components():
    torch.manual_seed(0)
    m = MaestroLinear(6, 5, dtype=F64)
    with torch.no_grad():
        m.u[:, 2] *= 1e-4  # component 3 is negligible
    x = torch.randn(3, 6, dtype=F64)
    rank = m.shrink_(1e-3, hierarchical=False)
    assert rank == 4 and m.active.tolist() == [True, True, False, True, True]
    before = m(x)
    assert m.prune_() == 4 and m.u.shape == (5, 4)
    torch.testing.assert_close(m(x), before, rtol=0, atol=0)
    assert m.truncate_(2) == 2
    torch.testing.assert_close(m(x), m.reference(x), rtol=1e-12, atol=1e-12)


@torch.no_grad()
def test_lod_loss_is_full_plus_sampled_plus_lasso():
    torch.manual_seed(0)
    model = decompose(nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3))).double()
    x, y = torch.randn(6, 5, dtype=F64), torch.tensor([0, 1, 2, 0, 1, 2])
    ce = nn.functional.cross_entropy
    got = lod_loss(model, x, y, ce, torch.Generator().manual_seed(3), lasso=0.1)
    i, b = sample_truncation(maestro_layers(model), torch.Generator().manual_seed(3))
    full = model(x)
    with truncated({maestro_layers(model)[i]: b}):
        part = model(x)
    lasso = sum(m.group_lasso() for m in maestro_layers(model))
    want = ce(full, y) + ce(part, full.softmax(-1)) + 0.1 * lasso
    assert float(got) == pytest.approx(float(want), rel=1e-12)
    with uniform_rank_fraction(model, 0.5):
        assert [m.truncation for m in maestro_layers(model)] == [2, 2]
    assert [m.truncation for m in maestro_layers(model)] == [None, None]


def test_bad_options_and_shapes():
    with pytest.raises(ConfigError, match="rank"):
        MaestroLinear(3, 2, rank=0)
    with pytest.raises(ConfigError, match="rank 3"):
        MaestroLinear(3, 2)(torch.randn(1, 3), rank=3)
    with pytest.raises(ShapeError, match="in_features = 3"):
        MaestroLinear(3, 2)(torch.randn(1, 4))
    with pytest.raises(ConfigError, match="decompose"):
        lod_loss(nn.Linear(2, 2), torch.randn(1, 2), torch.zeros(1, dtype=torch.long),
                 nn.functional.cross_entropy, torch.Generator())
