"""The collapsed-QK measurement: near-zero error for the true product, large for a wrong one, and the
parameter ratios in closed form."""
import pytest

from layerlab.claims.measures import minimal_transformer as m
from layerlab.errors import ConfigError


def test_measure_values():
    out = m.collapsed_qk_equals_separate(0, min_width=10, max_width=10, length=8)
    assert out["error"] < 1e-12
    assert out["qk_params_ratio"] == 0.5
    assert out["symmetric_ratio"] == pytest.approx(11 / 20)


def test_similarity_needs_the_product_in_order():
    """The score x_t^T W x_s with W = W^Q W^K^T; its transpose W^K W^Q^T is another similarity
    (the asymmetry the paper points out), so the measurement's error could be large."""
    import torch

    from layerlab.blocks.mixers.attention import CausalSelfAttention
    g = torch.Generator().manual_seed(0)
    sep = CausalSelfAttention(10, n_heads=1, dtype=torch.float64)
    col = CausalSelfAttention(10, n_heads=1, qk="collapsed", dtype=torch.float64)
    with torch.no_grad():
        Wq, Wk, Wv = sep.w_qkv.weight.split(10)
        col.w_qk[0] = Wk.T @ Wq  # transposed
        col.w_qkv.weight.copy_(Wv)
        col.w_o.weight.copy_(sep.w_o.weight)
        x = torch.randn(1, 8, 10, generator=g, dtype=torch.float64) * 3
        assert ((col(x) - sep(x)).norm() / sep(x).norm()).item() > 1e-3


def test_bad_options():
    with pytest.raises(ConfigError, match="min_width"):
        m.collapsed_qk_equals_separate(0, min_width=5, max_width=4)
