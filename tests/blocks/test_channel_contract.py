"""The contract every registered channel mixer keeps, parametrized over ``layerlab.names("channel")``
so that a newly registered block is checked with no edit here.

- shape and dtype over ``(*, D)`` inputs: 1-D ``(D,)``, 2-D and 3-D, each position-wise equal to
  the flattened batch; float64, float32 and bfloat16 parameters give outputs of the same dtype,
  finite, with a backward pass;
- ``gradcheck`` in float64 at a tiny width: the input Jacobian entry by entry, and random
  projections of the Jacobian in the input and every parameter;
- ``state_dict`` round trip: a fresh instance that loads the state gives identical outputs;
- an unknown option is a ConfigError naming it; a wrong width is a ShapeError naming D;
- ``.to(torch.bfloat16)``: each float buffer is declared either wide (``wide_buffers``: stays
  float32 or wider with its exact values) or following the dtype (``dtype_buffers``), and the
  cast block runs on bfloat16 input.

The ``check_*`` functions take the block's kind, so ``test_norm_contract.py`` applies the same
checks to every registered norm. Block-specific properties stay in each block's own tests.
"""
from __future__ import annotations

import math

import pytest
import torch

import layerlab
from layerlab.blocks._common import wide_dtype
from layerlab.errors import ConfigError, ShapeError
from layerlab.registry import get

F64 = torch.float64
INPUT_SHAPES = {"1d": (), "2d": (5,), "3d": (2, 3)}  # leading dims of (*, D)


def width(kind: str, name: str, at_least: int = 8) -> int:
    """The smallest multiple of the block's ``width_multiple`` that is >= ``at_least``."""
    m = get(kind, name).width_multiple({})
    return m * math.ceil(at_least / m)


def build(kind: str, name: str, d: int, seed: int = 0, dtype: torch.dtype | None = None) -> torch.nn.Module:
    """The block at its defaults, seeded; ``dtype`` passed to every channel mixer and norm (their
    contract), and to an activation where it takes one (parameter-free ones follow the input)."""
    torch.manual_seed(seed)
    takes_dtype = kind != "activation" or "dtype" in get(kind, name).options
    return layerlab.build(kind, name, d, **({"dtype": dtype} if dtype is not None and takes_dtype else {}))


def perturb(block: torch.nn.Module, seed: int, scale: float = 0.1, buffers: bool = True) -> None:
    """Move every float parameter (elementwise) and float buffer (by one positive shift each, which
    keeps knots ordered and variances positive) a little, so that a state differs from a fresh one."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in block.parameters():
            if p.is_floating_point():
                p.add_(scale * torch.randn(p.shape, generator=gen, dtype=F64).to(p.dtype))
        for b in block.buffers() if buffers else ():
            if b.is_floating_point():
                b.add_(scale * (1 + torch.rand((), generator=gen, dtype=F64).item()))


def float_buffers(block: torch.nn.Module) -> list[tuple[torch.nn.Module, str, str]]:
    """(owning module, buffer name, qualified name) of every floating-point buffer."""
    out = []
    for prefix, module in block.named_modules():
        for name, buf in module.named_buffers(recurse=False):
            if buf is not None and buf.is_floating_point():
                out.append((module, name, f"{prefix}.{name}" if prefix else name))
    return out


# --------------------------------------------------------------------------- the checks


def check_shapes(kind: str, name: str, lead: tuple[int, ...], train: bool = True) -> None:
    d = width(kind, name)
    block = build(kind, name, d).train(train)
    x = torch.randn(*lead, d, generator=torch.Generator().manual_seed(1))
    y = block(x)
    assert y.shape == x.shape and y.dtype == x.dtype and torch.isfinite(y).all()
    torch.testing.assert_close(y, block(x.reshape(-1, d)).reshape(x.shape), rtol=1e-6, atol=1e-6)


def check_dtype(kind: str, name: str, dtype: torch.dtype) -> None:
    d = width(kind, name)
    block = build(kind, name, d, dtype=dtype)
    assert all(p.dtype == dtype for p in block.parameters())
    x = torch.randn(3, d, generator=torch.Generator().manual_seed(2)).to(dtype)
    y = block(x)
    assert y.dtype == dtype and y.shape == x.shape and torch.isfinite(y).all()
    if any(p.requires_grad for p in block.parameters()):
        y.float().sum().backward()
        assert all(p.grad is None or p.grad.dtype == dtype for p in block.parameters())


def check_gradcheck(kind: str, name: str, train: bool = True) -> None:
    """float64, a tiny width, default options: every entry of the input Jacobian, and random
    projections of the Jacobian in the input and every parameter together (``fast_mode``: one
    directional difference against one backward pass)."""
    d = width(kind, name)
    block = build(kind, name, d, dtype=F64).train(train)
    perturb(block, seed=3, scale=0.5, buffers=False)  # O(1) changes: exercise the nonlinearities
    x = torch.randn(2, d, dtype=F64, generator=torch.Generator().manual_seed(4)).requires_grad_()
    assert torch.autograd.gradcheck(block, (x,))
    names = [k for k, p in block.named_parameters() if p.requires_grad]
    params = [p.detach().clone().requires_grad_() for k, p in block.named_parameters() if p.requires_grad]

    def f(x: torch.Tensor, *ps: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(block, dict(zip(names, ps)), (x,))

    assert torch.autograd.gradcheck(f, (x, *params), fast_mode=True)


def check_state_dict_round_trip(kind: str, name: str) -> None:
    d = width(kind, name)
    a, b = build(kind, name, d, seed=5), build(kind, name, d, seed=6)
    perturb(a, seed=7)
    x = torch.randn(4, d, generator=torch.Generator().manual_seed(8))
    a.eval(), b.eval()
    if a.state_dict():  # the round trip below has something to carry
        assert not torch.equal(a(x), b(x))
    assert set(a.state_dict()) == set(b.state_dict())
    b.load_state_dict(a.state_dict())
    assert torch.equal(a(x), b(x))
    a.train(), b.train()
    assert torch.equal(a(x), b(x))


def check_unknown_option(kind: str, name: str) -> None:
    with pytest.raises(ConfigError, match="not_an_option"):
        layerlab.build(kind, name, width(kind, name), not_an_option=1)


def check_wrong_width(kind: str, name: str) -> None:
    d = width(kind, name)
    with pytest.raises(ShapeError, match=f"D = d_model = {d}"):
        build(kind, name, d)(torch.randn(3, d + 1))


def check_bfloat16_buffers(kind: str, name: str) -> None:
    d = width(kind, name)
    block = build(kind, name, d)
    before = {q: (m, n, m._buffers[n].clone()) for m, n, q in float_buffers(block)}
    block.to(torch.bfloat16)
    for q, (module, n, old) in before.items():
        new = module._buffers[n]
        if n in getattr(module, "wide_buffers", ()):
            assert new.dtype == wide_dtype(torch.bfloat16), f"{name}: wide buffer {q} became {new.dtype}"
            assert torch.equal(new, old.to(new.dtype)), f"{name}: wide buffer {q} lost precision"
        else:
            assert n in getattr(module, "dtype_buffers", ()), (
                f"{name}: float buffer {q} is declared neither in wide_buffers (kept float32 or wider "
                f"under .to(bfloat16)) nor in dtype_buffers (follows the module's dtype)")
            assert new.dtype == torch.bfloat16
    assert all(p.dtype == torch.bfloat16 for p in block.parameters())
    y = block(torch.randn(3, d).bfloat16())
    assert y.dtype == torch.bfloat16 and torch.isfinite(y).all()


# --------------------------------------------------------------------------- channel mixers

CHANNELS = layerlab.names("channel")


@pytest.mark.parametrize("lead", list(INPUT_SHAPES.values()), ids=list(INPUT_SHAPES))
@pytest.mark.parametrize("name", CHANNELS)
def test_shapes(name, lead):
    check_shapes("channel", name, lead)


@pytest.mark.parametrize("dtype", [F64, torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("name", CHANNELS)
def test_dtype(name, dtype):
    check_dtype("channel", name, dtype)


@pytest.mark.parametrize("name", CHANNELS)
def test_gradcheck(name):
    check_gradcheck("channel", name)


@pytest.mark.parametrize("name", CHANNELS)
def test_state_dict_round_trip(name):
    check_state_dict_round_trip("channel", name)


@pytest.mark.parametrize("name", CHANNELS)
def test_unknown_option_and_wrong_width(name):
    check_unknown_option("channel", name)
    check_wrong_width("channel", name)


@pytest.mark.parametrize("name", CHANNELS)
def test_bfloat16_cast_keeps_wide_buffers(name):
    check_bfloat16_buffers("channel", name)


# --------------------------------------------------------------------------- the shared mechanism


def test_wide_buffers_follow_device_and_precision_rules():
    """``WideBuffers``: bfloat16 / float16 conversions keep the named buffer float32 with its
    exact values; ``.double()`` widens it; ``.float()`` narrows float64 to float32 (still wide);
    an undeclared buffer is cast as usual."""
    from layerlab.blocks._common import WideBuffers

    class Block(WideBuffers):
        wide_buffers = ("stat",)

        def __init__(self) -> None:
            super().__init__()
            self.weight = torch.nn.Parameter(torch.ones(3))
            self.register_buffer("stat", torch.tensor([1.0 + 2**-20, 3.0, -0.1]))
            self.register_buffer("other", torch.tensor([1.0 + 2**-20]))

    stat = Block().stat.clone()
    for convert in (lambda m: m.to(torch.bfloat16), lambda m: m.half(), lambda m: m.bfloat16().float()):
        block = convert(Block())
        assert block.stat.dtype == torch.float32 and torch.equal(block.stat, stat)
    block = Block().to(torch.bfloat16)
    assert block.weight.dtype == torch.bfloat16 and block.other.dtype == torch.bfloat16
    assert Block().double().stat.dtype == F64 and Block().double().float().stat.dtype == torch.float32
    assert torch.equal(Block().to("cpu").stat, stat)
