"""SDM output activation (arXiv:2502.20167): the formula, its limits, similarity and distance by hand."""
import math

import pytest
import torch

from layerlab.blocks.sdm_output import distance_quantile, nearest_distance, sdm, sdm_nll, sdm_reference, similarity
from layerlab.errors import ConfigError, ShapeError


def test_formula_matches_reference_and_tempered_softmax():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(20, 5, generator=g, dtype=torch.float64) * 3
    q = torch.randint(0, 8, (20,), generator=g)
    d = torch.rand(20, generator=g, dtype=torch.float64)
    out = sdm(z, q, d)
    assert torch.allclose(out, sdm_reference(z, q, d), rtol=1e-10, atol=1e-14)
    assert torch.allclose(out, torch.softmax(z * (d * torch.log(2.0 + q.double()))[:, None], -1), rtol=1e-12, atol=1e-15)
    out32 = sdm(z.float(), q, d.float()).double()
    assert (out32 - out).abs().max() <= 1e-4
    # invariant to a shift of the logits, like the softmax
    assert torch.allclose(sdm(z + 7.0, q, d), out, rtol=1e-10, atol=1e-14)


def test_limits():
    z = torch.tensor([[1.0, 0.0, -1.0]], dtype=torch.float64)
    one = torch.ones(1, dtype=torch.float64)
    # d = 0 (far from training): uniform whatever the logits
    assert torch.allclose(sdm(z, torch.tensor([5]), 0 * one), torch.full((1, 3), 1 / 3, dtype=torch.float64))
    # q = 0, d = 1: base 2
    expect = torch.tensor([[2.0, 1.0, 0.5]], dtype=torch.float64) / 3.5
    assert torch.allclose(sdm(z, torch.tensor([0]), one), expect, rtol=1e-12)
    # more similarity: sharper (the top class gains)
    tops = [sdm(z, torch.tensor([q]), one)[0, 0].item() for q in range(6)]
    assert all(a < b for a, b in zip(tops, tops[1:]))
    # nll in base 2 + q: at q = 0, d = 1 it is -log2 p
    y = torch.tensor([0])
    assert sdm_nll(z, torch.tensor([0]), one, y).item() == pytest.approx(-math.log2(2 / 3.5), rel=1e-12)


def test_similarity_counts_the_initial_run_of_matching_correct_neighbours():
    train_h = torch.tensor([[0.0], [1.0], [2.0], [3.0], [4.0]], dtype=torch.float64)
    train_y = torch.tensor([1, 1, 0, 1, 1])
    correct = torch.tensor([True, True, True, True, False])
    h = torch.tensor([[-0.1], [4.1], [2.2]], dtype=torch.float64)
    pred = torch.tensor([1, 1, 0])
    q = similarity(h, pred, train_h, train_y, correct, k=5)
    # input 0: neighbours 0 (y1 ok), 1 (y1 ok), 2 (y0: stop) -> 2
    # input 1: neighbour 4 is mispredicted -> 0
    # input 2: neighbour 2 (y0 ok), then 3 (y1 != 0: stop) -> 1
    assert q.tolist() == [2, 0, 1]


def test_distance_quantile():
    cal = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    delta = torch.tensor([0.05, 0.2, 0.35, 1.0], dtype=torch.float64)
    assert distance_quantile(delta, cal).tolist() == [1.0, 0.5, 0.25, 0.0]
    assert nearest_distance(torch.tensor([[0.0, 3.0]]), torch.tensor([[0.0, 0.0], [4.0, 3.0]])).tolist() == [3.0]


def test_strict():
    z = torch.zeros(2, 3)
    with pytest.raises(ConfigError, match="d in"):
        sdm(z, torch.zeros(2), torch.tensor([0.5, 1.5]))
    with pytest.raises(ShapeError, match="q"):
        sdm(z, torch.zeros(3), torch.zeros(2))
    with pytest.raises(ConfigError, match="k must"):
        similarity(z, torch.zeros(2), z, torch.zeros(2), torch.ones(2, dtype=torch.bool), k=0)
