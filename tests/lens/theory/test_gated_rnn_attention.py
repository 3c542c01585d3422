"""Zucchet et al. 2023 (arXiv:2309.01775): a gated diagonal linear RNN computes linear self-attention exactly."""
from __future__ import annotations

import pytest
import torch

from layerlab.errors import ConfigError, ShapeError
from layerlab.lens.theory import gated_rnn_attention as gra

TOL = 1e-10


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def weights(H=2, d_k=3, d_v=4, d=5, d_out=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    w_q, w_k, w_v = (torch.randn(H, m, d, generator=g, dtype=torch.float64) for m in (d_k, d_k, d_v))
    p = torch.randn(d_out, H * d_v, generator=g, dtype=torch.float64)
    x = torch.randn(3, 9, d, generator=g, dtype=torch.float64)
    return w_q, w_k, w_v, p, x


def test_lsa_reference_is_the_sum_of_value_key_outer_products_times_the_query():
    w_q, w_k, w_v, _, x = weights(H=1)
    q, k, v = x @ w_q[0].T, x @ w_k[0].T, x @ w_v[0].T
    for t in (0, 4, 8):
        state = sum(v[:, s, :, None] * k[:, s, None, :] for s in range(t + 1))  # sum v k^T
        assert rel(gra.lsa(x, w_q[0], w_k[0], w_v[0])[:, t], (state @ q[:, t, :, None])[..., 0]) < TOL


def test_the_construction_equals_multi_head_lsa_with_its_neuron_count():
    w_q, w_k, w_v, p, x = weights()
    rnn = gra.construct(w_q, w_k, w_v, p)
    assert rnn.neurons == 2 * 3 * (4 + 1)  # per head d_k (d_v + 1)
    assert set(rnn.lam.tolist()) == {0.0, 1.0}  # perfect memory for key-values, none for queries
    assert rel(gra.gated_rnn(rnn, x), gra.lsa(x, w_q, w_k, w_v, p)) < TOL
    # a single head without projection, and a single token
    assert rel(gra.gated_rnn(gra.construct(w_q[0], w_k[0], w_v[0]), x[:, :1]), gra.lsa(x[:, :1], w_q[0], w_k[0], w_v[0])) < TOL


def test_forgetting_key_value_neurons_give_decayed_attention_and_remembered_queries_break_it():
    w_q, w_k, w_v, p, x = weights(seed=1)
    decayed = gra.lsa(x, w_q, w_k, w_v, p, decay=0.8)
    assert rel(decayed, gra.lsa(x, w_q, w_k, w_v, p)) > 0.1
    assert rel(gra.gated_rnn(gra.construct(w_q, w_k, w_v, p, decay=0.8), x), decayed) < TOL
    broken = gra.gated_rnn(gra.construct(w_q, w_k, w_v, p, query_memory=0.5), x)
    assert rel(broken, gra.lsa(x, w_q, w_k, w_v, p)) > 0.1


def test_bad_shapes_and_options_are_clear_errors():
    w_q, w_k, w_v, p, x = weights()
    with pytest.raises(ShapeError, match="H d_v"):
        gra.construct(w_q, w_k, w_v, p[:, :3])
    with pytest.raises(ConfigError, match="decay"):
        gra.construct(w_q, w_k, w_v, p, decay=1.5)
    with pytest.raises(ShapeError, match="features"):
        gra.gated_rnn(gra.construct(w_q, w_k, w_v, p), x[..., :4])
