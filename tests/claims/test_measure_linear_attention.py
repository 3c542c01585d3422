"""The linear-attention-as-RNN measurement: its attention-matrix form is checked against a plain
loop over positions, and a recurrence that drops the denominator's state is caught."""
import pytest
import torch

from layerlab.blocks.mixers.linear_attention import LinearAttention, elu_feature_map
from layerlab.claims.measures import get_measure
from layerlab.claims.measures.linear_attention import attention_matrix_form
from layerlab.errors import ConfigError


def test_attention_matrix_form_matches_a_loop_over_positions():
    torch.manual_seed(0)
    block = LinearAttention(8, n_heads=2, eps=0.0, dtype=torch.float64)
    x = torch.randn(2, 5, 8, dtype=torch.float64)
    with torch.no_grad():
        y = attention_matrix_form(block, x)
        q, k, v = block.w_qkv(x).view(2, 5, 3, 2, 4).unbind(2)  # (B, L, h, d_h)
        q, k = elu_feature_map(q), elu_feature_map(k)
        heads = torch.zeros(2, 5, 2, 4, dtype=torch.float64)
        for i in range(5):
            w = torch.stack([(q[:, i] * k[:, j]).sum(-1) for j in range(i + 1)], dim=1)  # (B, i+1, h)
            heads[:, i] = (w.unsqueeze(-1) * v[:, : i + 1]).sum(1) / w.sum(1).unsqueeze(-1)
        ref = block.w_o(heads.reshape(2, 5, 8))
    assert (y - ref).abs().max().item() < 1e-12


def test_measurement_finds_the_rnn_equal_and_its_state_constant():
    out = get_measure("linear_attention_rnn")(1, d_model=16, n_heads=2, length=32, batch=2)
    assert out["rnn_error"] < 1e-12 and out["chunk_error"] < 1e-12
    assert out["state_growth"] == 0.0
    assert out["state_numel"] == 2 * 2 * 8 * 9  # B h d_h (d_h + 1)


def test_measurement_catches_a_recurrence_without_the_normalizer(monkeypatch):
    def wrong_read(self, out):  # numerator only: the z_i state is ignored
        return out[..., :-1]

    monkeypatch.setattr(LinearAttention, "_read", wrong_read)
    assert get_measure("linear_attention_rnn")(0, d_model=16, n_heads=2, length=32, batch=2)["error"] > 1e-3


def test_bad_options_name_the_problem():
    with pytest.raises(ConfigError, match="n_heads"):
        get_measure("linear_attention_rnn")(0, d_model=10, n_heads=4)
