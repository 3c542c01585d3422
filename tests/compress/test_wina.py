"""WINA (2505.19427) and TEAL's magnitude rule (2408.14690): the gate keeps exactly the top-K of
|x_i| ||W_:,i|| (or |x_i|), the wrapped layer computes W (m * x) + b, with orthogonal columns WINA's
error is the closed form and the best of all masks, s = 0 changes nothing, bad input is refused."""
from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

from layerlab.compress import CompressContext, apply_technique
from layerlab.compress.wina import (SparseInputLinear, column_norms, measured_density, n_kept, teal, topk_mask,
                                    wina, wrapped_layers)
from layerlab.errors import ConfigError, ShapeError

F64 = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _linear(n_in: int, n_out: int, seed: int, dtype=F64) -> nn.Linear:
    torch.manual_seed(seed)
    lin = nn.Linear(n_in, n_out, dtype=dtype)
    with torch.no_grad():  # columns of very different norms, so that the two rules differ
        lin.weight.mul_(torch.logspace(-1, 1, n_in, dtype=dtype))
    return lin


def _mlp(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(9, 16), nn.SiLU(), nn.Linear(16, 12), nn.SiLU(), nn.Linear(12, 4)).double()


def _brute_force_mask(scores: torch.Tensor, k: int) -> torch.Tensor:
    """m_i = 1 iff fewer than k scores of the row exceed score_i (distinct scores: the top-k)."""
    greater = (scores.unsqueeze(-2) > scores.unsqueeze(-1)).sum(-1)  # [.., i] = #{j: s_j > s_i}
    return greater < k


@pytest.mark.parametrize("rule", ["wina", "teal"])
@pytest.mark.parametrize("s", [0.0, 0.25, 0.4, 0.5, 0.65, 0.9, 1.0])
def test_gate_keeps_exactly_the_top_k_of_its_score(rule, s):
    lin = _linear(11, 5, seed=1)
    x = torch.randn(6, 11, generator=_gen(2), dtype=F64)
    layer = SparseInputLinear(lin, rule=rule, sparsity=s)
    k = 11 - math.floor(s * 11 + 0.5)
    assert layer.kept == k == n_kept(11, s)
    score = x.abs() * (lin.weight.detach().norm(dim=0) if rule == "wina" else 1.0)
    expected = _brute_force_mask(score, k)
    if k < 11:
        assert torch.equal(layer.mask(x), expected)
        assert (layer.mask(x).sum(-1) == k).all()
    # the output is W (m * x) + b with that mask, row by row (explicit sum over the kept columns)
    y = layer(x)
    for r in range(6):
        keep = expected[r].nonzero().flatten()
        ref = lin.weight.detach()[:, keep] @ x[r, keep] + lin.bias.detach()
        torch.testing.assert_close(y[r], ref, rtol=1e-12, atol=1e-12)
    assert layer.measured_density() == pytest.approx(k / 11, abs=1e-15)


def test_topk_mask_matches_brute_force_on_random_rows_and_shapes():
    for seed, shape in enumerate([(7,), (3, 7), (2, 3, 7)]):
        s = torch.rand(shape, generator=_gen(seed), dtype=F64)
        for k in range(8):
            assert torch.equal(topk_mask(s, k), _brute_force_mask(s, k))
    with pytest.raises(ConfigError, match="keep"):
        topk_mask(torch.rand(5), 6)


def _orthogonal_columns(m: int, n: int, seed: int) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(m, n, generator=_gen(seed), dtype=F64))
    return q * torch.linspace(0.2, 3.0, n, dtype=F64)  # W^T W diagonal, distinct column norms


def test_orthogonal_columns_wina_error_is_the_closed_form_and_the_best_mask_teal_never_better():
    m, n = 9, 7
    lin = nn.Linear(n, m, dtype=F64)
    with torch.no_grad():
        lin.weight.copy_(_orthogonal_columns(m, n, seed=3))
    x = torch.randn(20, n, generator=_gen(4), dtype=F64)
    w, c = lin.weight.detach(), column_norms(lin.weight)
    y = lin(x).detach()
    for s in (0.25, 0.4, 0.5, 0.65):
        k = n_kept(n, s)
        wi = SparseInputLinear(lin, rule="wina", sparsity=s)
        te = SparseInputLinear(lin, rule="teal", sparsity=s)
        err_w = (wi(x) - y).norm(dim=-1)
        err_t = (te(x) - y).norm(dim=-1)
        dropped = ~wi.mask(x)
        closed = ((x * c) ** 2 * dropped).sum(-1).sqrt()  # (sum over dropped i of x_i^2 c_i^2)^(1/2)
        torch.testing.assert_close(err_w, closed, rtol=1e-12, atol=1e-12)
        best = torch.full((20,), math.inf, dtype=F64)
        for keep in itertools.combinations(range(n), k):
            mask = torch.zeros(n, dtype=F64)
            mask[list(keep)] = 1
            best = torch.minimum(best, ((x * mask) @ w.T - x @ w.T).norm(dim=-1))
        torch.testing.assert_close(err_w, best, rtol=1e-12, atol=1e-12)
        assert (err_w <= err_t + 1e-12).all()
        assert (err_w < err_t - 1e-9).any()  # the rules differ on this data


def test_transform_rotates_to_orthogonal_columns_exactly():
    lin = _linear(6, 4, seed=5)  # out < in: rank 4, two zero columns after the rotation
    x = torch.randn(10, 6, generator=_gen(6), dtype=F64)
    y = lin(x).detach()
    dense = SparseInputLinear(lin, rule="wina", sparsity=0.0, transform=True)
    torch.testing.assert_close(dense(x), y, rtol=1e-10, atol=1e-10)  # W x = (W V)(V^T x)
    wv = dense.rotated_weight
    gram = wv.T @ wv
    torch.testing.assert_close(gram, torch.diag(torch.diagonal(gram)), rtol=0, atol=1e-10)
    torch.testing.assert_close(dense.column_norm, column_norms(wv), rtol=1e-10, atol=1e-10)
    layer = SparseInputLinear(lin, rule="wina", sparsity=0.5, transform=True)
    xr = x @ layer.rotation
    closed = ((xr * layer.column_norm) ** 2 * ~layer.mask(xr)).sum(-1).sqrt()
    torch.testing.assert_close((layer(x) - y).norm(dim=-1), closed, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("technique", [wina, teal])
def test_zero_sparsity_leaves_outputs_unchanged_and_input_model_untouched(technique):
    net = _mlp()
    state = {k: v.clone() for k, v in net.state_dict().items()}
    x = torch.randn(8, 9, generator=_gen(7), dtype=F64)
    out = technique(net, 0.0, None)
    assert torch.equal(out(x), net(x))
    half = technique(net, 0.5, None)
    assert not torch.equal(half(x), net(x))
    assert all(torch.equal(state[k], v) for k, v in net.state_dict().items())
    assert not wrapped_layers(net)  # the input model is not wrapped
    layers = wrapped_layers(half)
    assert list(layers) == ["0", "2"] and type(half[4]) is nn.Linear  # the head stays dense
    assert len(wrapped_layers(technique(net, 0.5, None, skip_head=False))) == 3
    # measured density: K/n of each layer, weighted by the columns each input stands for
    expect = (n_kept(9, 0.5) * 16 + n_kept(16, 0.5) * 12) / (9 * 16 + 16 * 12)
    assert measured_density(half) == pytest.approx(expect, abs=1e-15)


def test_threshold_gate_calibrates_on_the_calibration_batch():
    net = _mlp(1)
    calib = torch.randn(50, 9, generator=_gen(8), dtype=F64)
    ctx = CompressContext(task=None, calibration=type("B", (), {"inputs": calib})(), generator=_gen(0),
                          loss_fn=lambda m, b: torch.zeros(()))
    out = apply_technique("wina", net, 0.4, ctx, gate="threshold")
    layers = wrapped_layers(out)
    with torch.no_grad():  # each layer on its input in the dense model (where it was calibrated): 60% kept
        layers["0"](calib)
        layers["2"](net[1](net[0](calib)))
    for layer in layers.values():
        assert layer.measured_density() == pytest.approx(1 - 0.4, abs=1e-12)
        layer.reset_counts()
    out(calib)  # downstream of a sparsified layer, the second layer's inputs differ: density near, not at, 60%
    assert layers["0"].measured_density() == pytest.approx(0.6, abs=1e-12)
    assert layers["2"].measured_density() != pytest.approx(0.6, abs=1e-12)
    assert abs(layers["2"].measured_density() - 0.6) < 0.1
    with pytest.raises(ConfigError, match="calibration"):
        wina(net, 0.4, None, gate="threshold")


def test_bad_input_is_refused_with_the_fix():
    net = _mlp()
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        wina(net, 1.5, None)
    with pytest.raises(ConfigError, match="valid options"):
        apply_technique("teal", net, 0.5, None, transform=True)
    with pytest.raises(ConfigError, match="TEAL has none"):
        SparseInputLinear(nn.Linear(3, 2), rule="teal", sparsity=0.5, transform=True)
    with pytest.raises(ConfigError, match="no nn.Linear"):
        teal(nn.Sequential(nn.ReLU()), 0.5, None)
    with pytest.raises(ConfigError, match="rule"):
        SparseInputLinear(nn.Linear(3, 2), rule="cats", sparsity=0.5)
    with pytest.raises(ShapeError, match="in_features = 3"):
        SparseInputLinear(nn.Linear(3, 2), rule="wina", sparsity=0.5)(torch.zeros(2, 4))
