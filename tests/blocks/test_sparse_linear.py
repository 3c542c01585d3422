"""SparseProp's sparse Linear (2302.04852): the CSR forward/backward equals the dense masked layer
(outputs and gradients to 1e-10 in float64), gradcheck, a pruned model fine-tunes along the same
loss curve in either form, and bad input is refused."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from layerlab.blocks.sparse_linear import (MaskedLinear, SparseLinear, SparseLinearFunction, csr_structure,
                                           masked_linears, sparseprop_linears)
from layerlab.errors import ConfigError, ShapeError

F64 = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _mask(m: int, n: int, sparsity: float, seed: int) -> torch.Tensor:
    return torch.rand(m, n, generator=_gen(seed)) >= sparsity


def _pair(m: int, n: int, sparsity: float, seed: int, dtype=F64) -> tuple[SparseLinear, MaskedLinear]:
    torch.manual_seed(seed)
    dense = nn.Linear(n, m, dtype=dtype)
    mask = _mask(m, n, sparsity, seed + 100)
    return SparseLinear.from_dense(dense, mask), MaskedLinear.from_dense(dense, mask)


def _close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-10) -> None:
    torch.testing.assert_close(a, b, rtol=tol, atol=tol)


@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.9, 0.99, 1.0])
@pytest.mark.parametrize("lead", [(), (7,), (2, 3)])
def test_csr_form_equals_dense_masked_outputs_and_gradients(sparsity, lead):
    sp, ref = _pair(13, 17, sparsity, seed=1)
    x = torch.randn(*lead, 17, generator=_gen(2), dtype=F64)
    gy = torch.randn(*lead, 13, generator=_gen(3), dtype=F64)
    outs = {}
    for name, module, kw in (("csr", sp, {"mode": "csr"}), ("dense", sp, {"mode": "dense"}), ("masked", ref, {})):
        module.zero_grad(set_to_none=True)
        xi = x.clone().requires_grad_(True)
        y = module(xi, **kw)
        (y * gy).sum().backward()
        outs[name] = (y.detach(), xi.grad, module.bias.grad.clone())
        if name != "masked":
            outs[name] += (sp.values.grad.clone(),)
    mask = ref.mask
    ref_wgrad = ref.weight.grad[mask]  # the dense masked gradient at the support (row-major = CSR order)
    assert (ref.weight.grad[~mask] == 0).all()
    for name in ("csr", "dense"):
        y, gx, gb, gv = outs[name]
        _close(y, outs["masked"][0])
        _close(gx, outs["masked"][1])
        _close(gb, outs["masked"][2])
        _close(gv, ref_wgrad)
    assert sp.nnz == int(mask.sum()) and torch.equal(sp.mask(), mask)
    assert torch.equal(sp.dense_weight().detach(), ref.weight.detach() * mask)


def test_gradcheck_sparse_function():
    sp, _ = _pair(5, 6, 0.5, seed=4)
    x = torch.randn(3, 6, generator=_gen(5), dtype=F64, requires_grad=True)
    v = sp.values.detach().clone().requires_grad_(True)
    b = sp.bias.detach().clone().requires_grad_(True)
    idx = sp.index()
    fn = lambda x, v, b: SparseLinearFunction.apply(x, v, b, idx["crow"], idx["col"], idx["t_crow"], idx["t_col"],
                                                    idx["t_perm"], 5)
    assert torch.autograd.gradcheck(fn, (x, v, b), eps=1e-6, atol=1e-8)


def test_transposed_index_lists_the_same_values():
    mask = _mask(6, 9, 0.6, seed=6)
    s = csr_structure(mask)
    w = torch.randn(6, 9, generator=_gen(7), dtype=F64) * mask
    values = w[mask]
    wt = torch.sparse_csr_tensor(s["t_crow"], s["t_col"], values[s["t_perm"]], (9, 6), dtype=F64, check_invariants=True)
    assert torch.equal(wt.to_dense(), w.T)
    csr = torch.sparse_csr_tensor(s["crow"], s["col"], values, (6, 9), dtype=F64, check_invariants=True)
    assert torch.equal(csr.to_dense(), w)


def test_low_precision_dtypes_run_through_float32():
    sp, ref = _pair(8, 12, 0.7, seed=8, dtype=torch.float32)
    x = torch.randn(4, 12, generator=_gen(9))
    y32 = sp(x)
    sp16 = sp.to(torch.bfloat16)
    xb = x.to(torch.bfloat16).requires_grad_(True)
    yb = sp16(xb)
    assert yb.dtype == torch.bfloat16
    torch.testing.assert_close(yb.float(), y32, rtol=3e-2, atol=3e-2)
    yb.sum().backward()
    assert xb.grad.dtype == torch.bfloat16 and sp16.values.grad.dtype == torch.bfloat16


def test_state_dict_round_trip_carries_the_support():
    sp, _ = _pair(7, 9, 0.5, seed=10)
    nnz = sp.nnz
    other_mask = torch.zeros(7, 9, dtype=torch.bool)
    other_mask.view(-1)[torch.randperm(63, generator=_gen(11))[:nnz]] = True  # same count, other places
    fresh = SparseLinear(9, 7, other_mask, dtype=F64)
    fresh.load_state_dict(sp.state_dict())
    x = torch.randn(5, 9, generator=_gen(12), dtype=F64)
    assert torch.equal(fresh(x), sp(x))


def _pruned_mlp(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 3)).double()
    with torch.no_grad():
        for i in (0, 2):
            w = net[i].weight
            w.mul_(w.abs() > w.abs().flatten().kthvalue(int(0.85 * w.numel())).values)
    return net


def test_pruned_model_fine_tunes_along_the_dense_masked_loss_curve():
    net = _pruned_mlp(13)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    fast, ref = sparseprop_linears(net, min_sparsity=0.5), masked_linears(net, min_sparsity=0.5)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # input untouched
    assert [type(m).__name__ for m in fast] == ["SparseLinear", "ReLU", "SparseLinear", "ReLU", "Linear"]
    x = torch.randn(200, 10, generator=_gen(14), dtype=F64)
    y = torch.randint(0, 3, (200,), generator=_gen(15))
    curves = []
    for model in (fast, ref):
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        gen, losses = _gen(16), []
        for _ in range(30):
            idx = torch.randint(0, 200, (32,), generator=gen)
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
            losses.append(loss.item())
        curves.append(torch.tensor(losses, dtype=F64))
    _close(curves[0], curves[1])
    assert curves[0][-1] < curves[0][0]  # it did learn
    for i in (0, 2):  # the weights stay on the support and agree
        _close(fast[i].dense_weight().detach(), ref[i].weight.detach() * ref[i].mask)
        assert torch.equal(fast[i].mask(), before[f"{i}.weight"] != 0)
    _close(fast[4].weight.detach(), ref[4].weight.detach())


def test_bad_input_is_refused_with_the_fix():
    with pytest.raises(ConfigError, match="shape"):
        SparseLinear(4, 3, torch.ones(4, 3, dtype=torch.bool))
    with pytest.raises(ConfigError, match="bool"):
        csr_structure(torch.ones(3, 4))
    sp = SparseLinear(4, 3, torch.ones(3, 4, dtype=torch.bool))
    with pytest.raises(ShapeError, match="in_features = 4"):
        sp(torch.zeros(2, 5))
    with pytest.raises(ConfigError, match="mode"):
        sp(torch.zeros(2, 4), mode="gather")
    with pytest.raises(ConfigError, match="prune it first"):
        sparseprop_linears(nn.Sequential(nn.Linear(3, 3)), min_sparsity=0.5)
    with pytest.raises(ConfigError, match="min_sparsity"):
        masked_linears(nn.Sequential(nn.Linear(3, 3)), min_sparsity=2.0)
