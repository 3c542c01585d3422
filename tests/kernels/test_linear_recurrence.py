"""h_t = a_t h_{t-1} + b_t: the fused C++ kernel and the odd-even scan against the token loop, real
and complex (outputs and the gradients of a, b, h0), gradcheck and gradgradcheck, the fallback."""
from __future__ import annotations


import pytest
import torch

from layerlab.errors import ConfigError, ShapeError
from layerlab.kernels import selective_scan as ext
from layerlab.kernels.linear_recurrence import linear_recurrence
from tests.conftest import skip_without_compiler

from .helpers import TOL

DTYPES = [torch.float64, torch.complex128, torch.float32, torch.complex64]
TOLERANCE = {**TOL, torch.complex128: TOL[torch.float64], torch.complex64: TOL[torch.float32]}
# (B, L, ...): length 1, trailing dims flattened, more columns than one block of 64 (130)
SHAPES = [(2, 1, 3), (2, 37, 5, 3), (1, 70, 130)]


def rel_err(a, b):
    return ((a - b).abs().norm() / b.abs().norm().clamp_min(1e-30)).item()


def make(shape, dtype, h0, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(shape, generator=g, dtype=dtype)
    a = a / a.abs().clamp_min(1) * 0.95  # |a_t| < 1, both signs (and phases)
    b = torch.randn(shape, generator=g, dtype=dtype)
    h = torch.randn((shape[0], *shape[2:]), generator=g, dtype=dtype) if h0 else None
    return a, b, h


def run(inputs, mode):
    leaves = [t.detach().clone().requires_grad_(True) if t is not None else None for t in inputs]
    h = linear_recurrence(*leaves, mode=mode)
    cot = torch.randn(h.shape, generator=torch.Generator().manual_seed(3), dtype=h.dtype)
    (h * cot.conj()).real.sum().backward()
    grads = [t.grad if t.grad is not None else torch.zeros_like(t) for t in leaves if t is not None]
    return [h.detach(), *grads], h.grad_fn


@pytest.fixture
def fused(monkeypatch):
    monkeypatch.delenv(ext.NO_EXTENSIONS_ENV, raising=False)
    skip_without_compiler("the fused linear recurrence")
    assert ext.extension() is not None, "a C++ compiler is present but the fused kernel did not build"


@pytest.mark.parametrize("h0", [False, True])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_fused_and_scan_match_the_loop(fused, shape, dtype, h0, monkeypatch):
    inputs = make(shape, dtype, h0)
    want, _ = run(inputs, "recurrent")
    calls = []
    apply = ext._odd_even_scan
    monkeypatch.setattr(ext, "_odd_even_scan", lambda *a: calls.append(1) or apply(*a))
    for mode in ("fused", "scan"):
        got, _ = run(inputs, mode)
        assert (len(calls) > 0) == (mode == "scan"), f"{mode}: the fused kernel must not fall back here"
        for name, a, b in zip(["h", "d a", "d b", "d h0"], got, want):
            assert rel_err(a, b) <= TOLERANCE[dtype], f"{mode} {name}: rel err {rel_err(a, b):.2e}"


@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128], ids=str)
def test_fused_gradcheck_and_gradgradcheck(fused, dtype):
    inputs = [t.requires_grad_(True) for t in make((2, 5, 3), dtype, h0=True)]
    assert torch.autograd.gradcheck(linear_recurrence, inputs)
    assert torch.autograd.gradgradcheck(linear_recurrence, inputs)


def test_switched_off_by_environment(monkeypatch):
    monkeypatch.setenv(ext.NO_EXTENSIONS_ENV, "1")
    inputs = make((2, 9, 4), torch.complex128, h0=True)
    want, _ = run(inputs, "recurrent")
    got, grad_fn = run(inputs, "fused")
    assert "Fused" not in type(grad_fn).__name__ and type(grad_fn).__name__ != "ViewBackward0"
    assert all(rel_err(a, b) <= 1e-10 for a, b in zip(got, want))


def test_bad_input():
    a, b, h0 = make((2, 5, 3), torch.float64, h0=True)
    with pytest.raises(ShapeError, match="one shape"):
        linear_recurrence(a[:, :4], b)
    with pytest.raises(ShapeError, match="h0 must have shape"):
        linear_recurrence(a, b, h0[:, :2])
    with pytest.raises(ConfigError, match="one dtype"):
        linear_recurrence(a.float(), b)
    with pytest.raises(ConfigError, match="modes: fused, scan, recurrent"):
        linear_recurrence(a, b, mode="parallel")
