"""The mixer contract (DESIGN.md, "Contracts"), run on every registered mixer.

Parametrised over ``layerlab.names("mixer")``: a newly registered mixer runs these tests with no
edit here (with its default options; ``TINY`` may make it smaller or give it short chunks).

- every mode agrees with ``"reference"``: outputs and gradients (input and parameters), float64
  relative error <= 1e-10, float32 <= 1e-4, at length 1 and at lengths that are no multiple of
  any chunk (chunks of 4 here, so the fast forms cross chunk boundaries);
- ``step`` over a sequence equals ``forward`` (recurrent mixers), and a non-recurrent mixer
  refuses ``step``;
- causality: perturbing position t changes no output before t, in every mode;
- ``state_size`` equals the real scalars of ``init_state`` and the state does not grow;
- a ``state_dict`` round trip gives identical outputs; an unknown option or input width is a
  clear error; ``no_weight_decay`` names real parameters.
"""
from __future__ import annotations

import math

import pytest
import torch

import layerlab
from layerlab.errors import ConfigError, ShapeError
from layerlab.registry import get

from .mixers.contract import check_causal, check_forms_agree, check_state_size, check_step_matches_forward

MIXERS = layerlab.names("mixer")

# options that keep a block tiny and its chunks short (a mixer not listed runs with its defaults)
TINY: dict[str, dict] = {
    "attention": {"n_heads": 2},
    "bilinear_rnn": {"chunk_size": 4},
    "block_lrnn": {"block_size": 3},
    "deltanet": {"n_heads": 2, "chunk_size": 4},
    "deltaproduct": {"n_heads": 2, "chunk_size": 4},
    "gated_deltanet": {"n_heads": 2, "chunk_size": 4},
    "grassmann": {"r": 4, "windows": (1, 3)},
    "griffin": {"n_heads": 2, "window": 3, "d_rnn": 8},
    "hopfield": {"n_heads": 2},
    "linear_attention": {"n_heads": 2, "chunk_size": 4},
    "lru": {"d_state": 8},
    "lssl": {"d_state": 8},
    "mamba": {"d_state": 4, "chunk_size": 4},
    "miras": {"n_heads": 2, "chunk_size": 4},
    "rglru": {"d_rnn": 8},
    "s4d": {"d_state": 8},
    "spikegpt": {"threshold": 0.02},  # many units firing: a perturbed late token flips some spike
    "warp": {"hidden": 4},
}
# (B, L): length 1; 7 and 13 are no multiple of any chunk (4 here, 16 or 64 by default)
SHAPES = [(1, 1), (2, 7), (1, 13)]


def width(name: str, target: int = 12) -> int:
    """The smallest width >= target the block accepts (a multiple of its head count, ...)."""
    m = get("mixer", name).width_multiple(TINY.get(name, {}))
    return m * math.ceil(target / m)


def make(name: str, dtype: torch.dtype = torch.float64, seed: int = 0):
    torch.manual_seed(seed)
    return layerlab.build("mixer", name, width(name), dtype=dtype, **TINY.get(name, {}))


def test_every_registered_mixer_is_covered():
    """The tiny options name real mixers (a renamed mixer would silently run with defaults)."""
    assert set(TINY) <= set(MIXERS)
    assert len(MIXERS) >= 12


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("name", MIXERS)
def test_forms_agree(name, dtype):
    block = make(name, dtype)
    assert block.modes[0] in block.modes and "reference" in block.modes
    for i, (B, L) in enumerate(SHAPES):
        check_forms_agree(block, B, L, seed=i)


@pytest.mark.parametrize("name", MIXERS)
def test_step_equals_forward(name):
    block = make(name)
    if not block.recurrent:
        with pytest.raises(NotImplementedError, match="not a recurrent mixer"):
            block.step(torch.zeros(1, block.d_model, dtype=torch.float64), ())
        return
    for B, L in SHAPES:
        check_step_matches_forward(block, B, L)


@pytest.mark.parametrize("name", MIXERS)
def test_causal(name):
    check_causal(make(name), L=11)


@pytest.mark.parametrize("name", [n for n in MIXERS if get("mixer", n).cls.recurrent])
def test_state_size_is_measured_and_fixed(name):
    check_state_size(make(name))


@pytest.mark.parametrize("name", MIXERS)
def test_state_dict_round_trip(name):
    a, b = make(name, torch.float32, seed=1), make(name, torch.float32, seed=2)
    x = torch.randn(2, 6, a.d_model, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert not torch.equal(a(x), b(x))
        b.load_state_dict(a.state_dict())
        assert torch.equal(a(x), b(x))


@pytest.mark.parametrize("name", MIXERS)
def test_bad_option_width_and_mode_are_clear_errors(name):
    with pytest.raises(ConfigError, match="no_such_option"):
        layerlab.build("mixer", name, width(name), no_such_option=1)
    block = make(name, torch.float32)
    with pytest.raises(ShapeError, match=f"d_model = {block.d_model}"):
        block(torch.randn(2, 3, block.d_model + 1))
    with pytest.raises(ConfigError, match="reference"):
        block(torch.randn(2, 3, block.d_model), mode="no_such_mode")


@pytest.mark.parametrize("name", MIXERS)
def test_no_weight_decay_names_real_parameters(name):
    block = make(name, torch.float32)
    for module in block.modules():
        for pname in getattr(module, "no_weight_decay", ()):
            assert pname in dict(module.named_parameters()), (type(module).__name__, pname)


@pytest.mark.parametrize("name", MIXERS)
def test_second_derivatives_of_the_default_form_equal_the_reference(name):
    """A Hessian-vector product in the parameters (create_graph through the default form: the
    compiled kernels recompute their PyTorch form there) equals the reference form's, float64
    1e-8. Inputs of a kernel computed from one another (Mamba's delta from its x, RG-LRU's b from
    its a) must not be differentiated twice. SDPA runs its math backend here: PyTorch's CPU flash
    attention has no double backward."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    block = make(name)
    x = torch.randn(2, 7, block.d_model, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    params = [p for p in block.parameters() if p.requires_grad]
    v = [torch.randn(p.shape, dtype=p.dtype, generator=torch.Generator().manual_seed(i)) for i, p in enumerate(params)]
    hv = {}
    for mode in (block.modes[0], "reference"):
        with sdpa_kernel(SDPBackend.MATH):
            g = torch.autograd.grad(block(x, mode=mode).square().sum(), params, create_graph=True)
            hv[mode] = torch.cat([h.flatten() for h in torch.autograd.grad(g, params, v, allow_unused=True)
                                  if h is not None])
    ref = hv["reference"]
    assert ((hv[block.modes[0]] - ref).norm() / ref.norm()).item() <= 1e-8
