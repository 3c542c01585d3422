"""The selective scan (Mamba's S6 recurrence): the fused C++ kernel and the pure-PyTorch chunk form
against the token-by-token reference (outputs, last state, gradients of every input), gradcheck and
gradgradcheck, the fallback when the kernel is switched off or cannot be built, and bad input."""
from __future__ import annotations


import pytest
import torch
import torch.nn.functional as F

from layerlab.errors import ConfigError, ShapeError
from layerlab.kernels import selective_scan as ss
from layerlab.kernels.selective_scan import selective_scan
from tests.conftest import skip_without_compiler

from .helpers import DTYPES, TOL, rel_err



def make(Bsz, L, D, N, dtype, *, seed=0, h0=True):
    """delta in softplus range, A < 0 down to -8 (transitions from ~0 to ~1), B, C, x, h0."""
    g = torch.Generator().manual_seed(seed)
    delta = F.softplus(torch.randn(Bsz, L, D, generator=g, dtype=dtype) - 1)
    A = -8 * torch.rand(D, N, generator=g, dtype=dtype)
    B, C = (torch.randn(Bsz, L, N, generator=g, dtype=dtype) for _ in range(2))
    x = torch.randn(Bsz, L, D, generator=g, dtype=dtype)
    h = torch.randn(Bsz, D, N, generator=g, dtype=dtype) if h0 else None
    return [delta, A, B, C, x, h]


def skip_and_gate(Bsz, L, D, dtype, extras, seed=1):
    """Mamba's optional D (D,) and z (B, L, D), as the test case names them."""
    g = torch.Generator().manual_seed(seed)
    D_ = torch.randn(D, generator=g, dtype=dtype) if "D" in extras else None
    z = torch.randn(Bsz, L, D, generator=g, dtype=dtype) * 2 if "z" in extras else None
    return {"D": D_, "z": z}


def outputs_and_grads(inputs, *, seed=7, extra=None, **kw):
    """y, h_last and the gradient of every input (and of D, z) under random cotangents of y and h_last."""
    leaves = [t.detach().clone().requires_grad_(True) if t is not None else None for t in inputs]
    named = {k: t.detach().clone().requires_grad_(True) for k, t in (extra or {}).items() if t is not None}
    y, h = selective_scan(*leaves, **named, **kw)
    g = torch.Generator().manual_seed(seed)
    loss = (y * torch.randn(y.shape, generator=g, dtype=y.dtype)).sum() + \
        (h * torch.randn(h.shape, generator=g, dtype=h.dtype)).sum()
    loss.backward()
    grads = [t.grad for t in leaves if t is not None] + [t.grad for t in named.values()]
    return [y.detach(), h.detach()] + grads, y.grad_fn


def assert_agree(got, want, dtype):
    assert len(got) == len(want)
    names = ["y", "h_last", "d delta", "d A", "d B", "d C", "d x", "d h0 / D / z", "d D / z", "d z"]
    for name, a, b in zip(names, got, want):
        assert rel_err(a, b) <= TOL[dtype], f"{name}: rel err {rel_err(a, b):.2e} > {TOL[dtype]}"


# (B, L, D, N, checkpoint): length 1; lengths no multiple of the checkpoint (7/4, 33/16, 70/16); one
# checkpoint for all (33/64) and every state kept (33/1); B = 1 with D = 40 splits channels into groups
CASES = [(1, 1, 3, 2, 16), (2, 7, 5, 3, 4), (2, 33, 6, 4, 16), (1, 33, 4, 5, 64), (2, 33, 4, 3, 1),
         (1, 70, 40, 4, 16), (3, 70, 17, 16, 16)]


@pytest.fixture
def fused(monkeypatch):
    monkeypatch.delenv(ss.NO_EXTENSIONS_ENV, raising=False)
    skip_without_compiler("the fused selective scan")
    assert ss.extension() is not None, "a C++ compiler is present but the fused selective scan did not build"


@pytest.mark.parametrize("negative", [False, True])
@pytest.mark.parametrize("extras", ["", "h0", "D", "h0 D z"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES, ids=str)
def test_fused_matches_reference(fused, case, dtype, extras, negative):
    Bsz, L, D, N, checkpoint = case
    inputs = make(Bsz, L, D, N, dtype, h0="h0" in extras)
    extra = skip_and_gate(Bsz, L, D, dtype, extras)
    want, _ = outputs_and_grads(inputs, extra=extra, mode="recurrent", negative_eigenvalues=negative)
    got, grad_fn = outputs_and_grads(inputs, extra=extra, mode="fused", negative_eigenvalues=negative,
                                     checkpoint=checkpoint)
    assert type(grad_fn).__name__ == "_FusedScanBackward"  # the kernel ran, not the fallback
    assert_agree(got, want, dtype)


@pytest.mark.parametrize("negative", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("chunk_size", [1, 5, 16, 128])
def test_chunk_matches_reference(chunk_size, dtype, negative):
    inputs = make(2, 33, 6, 4, dtype)
    extra = skip_and_gate(2, 33, 6, dtype, "D z")
    want, _ = outputs_and_grads(inputs, extra=extra, mode="recurrent", negative_eigenvalues=negative)
    got, _ = outputs_and_grads(inputs, extra=extra, mode="chunk", negative_eigenvalues=negative, chunk_size=chunk_size)
    assert_agree(got, want, dtype)


@pytest.mark.parametrize("negative", [False, True])
def test_fused_gradcheck_and_gradgradcheck(fused, negative):
    """First derivatives by the hand-written backward; second derivatives (create_graph) through
    the chunk form's graph."""
    extra = skip_and_gate(2, 5, 3, torch.float64, "D z")
    inputs = [t.requires_grad_(True) for t in make(2, 5, 3, 2, torch.float64) + [extra["D"], extra["z"]]]

    def fn(*t):
        return selective_scan(*t[:6], D=t[6], z=t[7], negative_eigenvalues=negative, checkpoint=2)

    assert torch.autograd.gradcheck(fn, inputs)
    assert torch.autograd.gradgradcheck(fn, inputs)
    assert torch.autograd.gradgradcheck(lambda *t: fn(*t)[0], inputs)  # h_last unused: no cotangent


def test_fused_under_torch_func_uses_the_chunk_form(fused):
    """torch.func transforms cannot see inside the kernel: they get the chunk form, same numbers."""
    delta, A, B, C, x, h0 = make(2, 9, 4, 3, torch.float64)

    def loss(A):
        return selective_scan(delta, A, B, C, x, h0)[0].square().sum()

    A_ = A.clone().requires_grad_(True)
    loss(A_).backward()
    assert rel_err(torch.func.grad(loss)(A), A_.grad) <= 1e-10


def test_switched_off_by_environment(monkeypatch):
    monkeypatch.setenv(ss.NO_EXTENSIONS_ENV, "1")
    assert ss.extension() is None
    inputs = make(2, 13, 5, 3, torch.float64)
    want, _ = outputs_and_grads(inputs, mode="recurrent")
    got, grad_fn = outputs_and_grads(inputs, mode="fused")
    assert type(grad_fn).__name__ != "_FusedScanBackward"
    assert_agree(got, want, torch.float64)


def test_failed_build_warns_once_and_falls_back(monkeypatch):
    def broken_build():
        raise RuntimeError("Error building extension 'layerlab_selective_scan': g++ not found")

    monkeypatch.delenv(ss.NO_EXTENSIONS_ENV, raising=False)
    monkeypatch.setattr(ss, "_build", broken_build)
    monkeypatch.setattr(ss.extension, "module", None)
    monkeypatch.setattr(ss.extension, "tried", False)
    inputs = make(1, 6, 3, 2, torch.float64)
    with pytest.warns(RuntimeWarning, match="could not be built .*g\\+\\+ not found.*pure-PyTorch") as record:
        y1, _ = selective_scan(*inputs)
        y2, _ = selective_scan(*inputs)
    assert len([w for w in record if "could not be built" in str(w.message)]) == 1
    want, _ = selective_scan(*inputs, mode="recurrent")
    assert rel_err(y1, want) <= 1e-10 and torch.equal(y1, y2)


@pytest.mark.parametrize("bad, match", [
    (lambda t: t.__setitem__(0, t[0][:, :, :2]), "delta and x of shape"),
    (lambda t: t.__setitem__(1, t[1][:2]), "A of shape"),
    (lambda t: t.__setitem__(2, t[2][..., :1]), "B and C of shape"),
    (lambda t: t.__setitem__(5, t[5][:, :1]), "h0 must have shape"),
    (lambda t: t.__setitem__(4, t[4].float()), "one dtype"),
    (lambda t: t.append({"D": torch.ones(2, dtype=torch.float64)}), "D must have shape"),
    (lambda t: t.append({"z": torch.ones(2, 5, 2, dtype=torch.float64)}), "z must have the shape of x"),
])
def test_bad_input(bad, match):
    inputs = make(2, 5, 3, 2, torch.float64)
    bad(inputs)
    named = inputs.pop() if isinstance(inputs[-1], dict) else {}
    with pytest.raises((ShapeError, ConfigError), match=match):
        selective_scan(*inputs, **named)


def test_bad_mode_and_sizes():
    inputs = make(1, 3, 2, 2, torch.float64)
    with pytest.raises(ConfigError, match="modes: fused, chunk, recurrent"):
        selective_scan(*inputs, mode="scan")
    with pytest.raises(ConfigError, match="checkpoint"):
        selective_scan(*inputs, checkpoint=0)
