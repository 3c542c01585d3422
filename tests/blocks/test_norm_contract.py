"""The contract every registered norm keeps, parametrized over ``layerlab.names("norm")`` so that a
newly registered norm is checked with no edit here: the channel contract's checks (shapes over
``(*, D)``, dtypes, gradcheck, state_dict round trip, unknown option, wrong width, bfloat16
buffers; see ``test_channel_contract.py``), shapes and gradcheck in training and eval mode, and
the norms' shared promise: statistics in float32 or wider, so a bfloat16 input is normalized
exactly as its float32 copy and rounded once at the end."""
from __future__ import annotations

import pytest
import torch

import layerlab

from .test_channel_contract import (
    F64,
    INPUT_SHAPES,
    build,
    check_bfloat16_buffers,
    check_dtype,
    check_gradcheck,
    check_shapes,
    check_state_dict_round_trip,
    check_unknown_option,
    check_wrong_width,
    perturb,
    width,
)

NORMS = layerlab.names("norm")


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("lead", list(INPUT_SHAPES.values()), ids=list(INPUT_SHAPES))
@pytest.mark.parametrize("name", NORMS)
def test_shapes(name, lead, train):
    check_shapes("norm", name, lead, train)


@pytest.mark.parametrize("dtype", [F64, torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("name", NORMS)
def test_dtype(name, dtype):
    check_dtype("norm", name, dtype)


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("name", NORMS)
def test_gradcheck(name, train):
    check_gradcheck("norm", name, train)


@pytest.mark.parametrize("name", NORMS)
def test_state_dict_round_trip(name):
    check_state_dict_round_trip("norm", name)


@pytest.mark.parametrize("name", NORMS)
def test_unknown_option_and_wrong_width(name):
    check_unknown_option("norm", name)
    check_wrong_width("norm", name)


@pytest.mark.parametrize("name", NORMS)
def test_bfloat16_cast_keeps_wide_buffers(name):
    check_bfloat16_buffers("norm", name)


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("name", NORMS)
def test_bfloat16_input_is_normalized_with_float32_statistics(name, train):
    d = width("norm", name, at_least=16)
    block = build("norm", name, d)  # float32 parameters
    perturb(block, seed=9)
    block.train(train)
    x = (4 * torch.randn(6, d, generator=torch.Generator().manual_seed(10)) + 1).bfloat16()
    y = block(x)
    assert y.dtype == torch.bfloat16
    assert torch.equal(y, block(x.float()).bfloat16())
