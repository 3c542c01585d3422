"""The fused (C++) delta rule against the token-by-token recurrence: delta rule, gated delta rule and
DeltaProduct (its interleaved sub-steps), outputs, final states and every gradient; double backward;
the PyTorch fallback (switched off)."""
import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck

from layerlab import kernels
from layerlab.kernels import delta_product, delta_rule, gated_delta_rule
from layerlab.kernels.delta_rule import delta_rule_chunk, delta_rule_fused, fused_serves
from tests.conftest import skip_without_compiler

from .helpers import CASES, DTYPES, assert_forms_agree, make_inputs


@pytest.fixture(autouse=True)
def compiled():
    skip_without_compiler("the fused delta rule")
    assert fused_serves(torch.zeros(1))  # the kernel is built, so "fused" below runs it


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("with_state", [False, True])
def test_fused_delta_rule_matches_recurrent(case, dtype, with_state):
    *shape, _ = case
    tensors = make_inputs(*shape, dtype, state=with_state)
    assert_forms_agree(lambda mode, **t: delta_rule(**t, mode=mode), tensors, dtype, fast="fused")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES, ids=str)
def test_fused_gated_delta_rule_matches_recurrent(case, dtype):
    *shape, _ = case
    tensors = make_inputs(*shape, dtype, gated=True, state=True)
    assert_forms_agree(lambda mode, **t: gated_delta_rule(**t, mode=mode), tensors, dtype, fast="fused")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES[1::2], ids=str)
@pytest.mark.parametrize("n_h,gated", [(2, False), (2, True), (3, True)])
def test_fused_delta_product_matches_recurrent(case, dtype, n_h, gated):
    *shape, _ = case
    tensors = make_inputs(*shape, dtype, n_h=n_h, gated=gated, state=True)
    assert_forms_agree(lambda mode, **t: delta_product(**t, mode=mode), tensors, dtype, fast="fused")


def test_only_the_output_or_only_the_state_backpropagates():
    t = make_inputs(2, 2, 40, 4, 3, torch.float64, gated=True, state=True)
    for use in ("output", "state"):
        grads = {}
        for mode in ("fused", "recurrent"):
            leaves = {n: x.clone().requires_grad_() for n, x in t.items()}
            out, state = gated_delta_rule(**leaves, mode=mode)
            (out if use == "output" else state).pow(2).sum().backward()
            grads[mode] = {n: torch.zeros_like(x) if x.grad is None else x.grad for n, x in leaves.items()}
        for n in t:  # (q gets no gradient through the state alone: None in one form, zeros in the other)
            torch.testing.assert_close(grads["fused"][n], grads["recurrent"][n], rtol=1e-10, atol=1e-12)


def test_double_backward_and_gradcheck():
    """The compiled backward is not differentiable itself; under create_graph the fused form
    differentiates the chunk form instead, so second derivatives stay exact."""
    t = make_inputs(1, 1, 6, 2, 2, torch.float64, gated=True, state=True)
    args = tuple(t[n].clone().requires_grad_() for n in ("q", "k", "v", "beta", "g", "initial_state"))

    def f(q, k, v, beta, g, M0):
        return delta_rule_fused(q, k, v, beta, M0, g=g)

    assert gradcheck(f, args)
    assert gradgradcheck(f, args)


def test_switched_off_the_chunk_form_serves(monkeypatch):
    t = make_inputs(2, 2, 33, 4, 4, torch.float64, state=True)
    fused, _ = delta_rule(**t, mode="fused")
    chunk, _ = delta_rule_chunk(t["q"], t["k"], t["v"], t["beta"], 64, t["initial_state"])
    assert not torch.equal(fused, chunk)  # different summation orders: the compiled kernel ran
    monkeypatch.setenv("LAYERLAB_NO_EXTENSIONS", "1")
    assert not fused_serves(t["q"])
    off, _ = delta_rule(**t, mode="fused")
    assert torch.equal(off, chunk)


def test_kernels_package_exports_the_modes():
    assert "fused" in kernels._chunks.MODES
