"""SpikeGPT: the spiking RWKV time-mixing streams tokens through a constant-size state, computing
the same map as its quadratic parallel form.

Paper: Zhu, Zhao, Li, Eshraghian, "SpikeGPT: Generative Pre-trained Language Model with Spiking
Neural Networks", 2023, arXiv:2302.13939: multi-head self-attention is replaced "to reduce quadratic
computational complexity O(T^2) to linear complexity O(T) with increasing sequence length. Input
tokens are instead streamed in sequentially". The WKV of the block,
``wkv_t = (sum_{i<t} e^{-(t-1-i)w + k_i} v_i + e^{u+k_t} v_t) / (sum_{i<t} e^{-(t-1-i)w + k_i} + e^{u+k_t})``,
is a softmax over all earlier tokens (O(T^2) in parallel) and a recurrence with O(1) state per token.

Per seed: a ``spikegpt`` mixer (width ``d_model``, default init) and a random input of length
``length`` drawn from a ``torch.Generator``; float64::

    error = max(||y_stream - y_parallel|| / ||y_parallel||  without spikes,
                fraction of spikes that differ between the two forms)

also reported: the spike rate and the state size per sequence (scalars, independent of length).
"""
from __future__ import annotations

import torch

from ...blocks.mixers.spikegpt import SpikingRWKV
from ...errors import ConfigError
from ...registry import get
from . import register_measure


@register_measure("spikegpt_streaming_equals_parallel", metric="error", paper=get("mixer", "spikegpt").paper)
def spikegpt_streaming_equals_parallel(seed: int, *, d_model: int = 16, length: int = 256) -> dict[str, float]:
    if int(d_model) < 1 or int(length) < 1:
        raise ConfigError(f"spikegpt_streaming_equals_parallel: d_model and length must be >= 1; got {d_model}, {length}")
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        block = SpikingRWKV(int(d_model), dtype=torch.float64)
    with torch.no_grad():
        for lin in (block.w_r, block.w_k, block.w_v, block.w_o):
            lin.weight.copy_(torch.randn(lin.weight.shape, generator=g, dtype=torch.float64) / int(d_model) ** 0.5)
        x = torch.randn(1, int(length), int(d_model), generator=g, dtype=torch.float64)
        block.spiking = False
        a, b = block(x, "parallel"), block(x, "reference")
        block.spiking = True
        s_par, s_str = block(x, "parallel"), block(x, "reference")
    mismatch = (s_par != s_str).double().mean().item()
    return {"error": max(((b - a).norm() / a.norm()).item(), mismatch), "spike_mismatch": mismatch,
            "spike_rate": s_par.mean().item(), "state_size": float(block.state_size)}
