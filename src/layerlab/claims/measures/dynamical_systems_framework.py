r"""Attention, linear attention, S6 and the RG-LRU as DSF systems, against layerlab's blocks.

Paper: Sieber, Amo Alonso, Didier, Zeilinger & Orvieto, "Understanding the differences in
Foundation Models: Attention, State Space Models, and Recurrent Neural Networks", 2024,
arXiv:2405.15731: every model is ``h_i = Lambda_i h_{i-1} + B_i u_i``, ``y_i = C_i h_i + D_i u_i``
with input-dependent matrices (``lens.theory.dynamical_systems_framework``, which states each
model's matrices and the S6 / normalized-attention condition).

Per seed (blocks initialized as registered, under a forked RNG seeded by the seed; float64;
inputs ``u`` of shape (batch, length, d_model) standard normal):

- ``attention``: softmax attention as the DSF whose state holds the values (``N = L d_v`` per head);
- ``linear_attention``: the separable DSF, normalization in the state (``Lambda_i = eta_{i-1}/eta_i``)
  and at the output;
- ``mamba``: S6's DSF (``Lambda_i = exp(Delta_i A)``), the block's gate and projections around it;
- ``rglru``: the RG-LRU's DSF (``Lambda_i = diag(a_i)``, no state expansion);
- ``s6_normalized_attention``: a Mamba block whose ``A`` is tied along the state axis (one rate per
  channel) and whose steps ``Delta`` are ~0.3-1 (so transitions are far from 1): its SSM as the
  normalized linear attention of the module docstring.

Each DSF output is computed twice (the recurrence and the materialised ``y = Phi u``) and compared
with the block's default (fast) form and its reference form: the relative error
``max |y_DSF - y_block| / max |y_block|``. ``error`` is the largest over all of them. Beside it:
``untied_mapping_error``, the same attention mapping applied to an untied Mamba (``A_{c,s} = -s``,
with the per-channel mean rate) at the same steps: not small, so the condition matters; and
``taylor_error_p<k>``, softmax attention through the separable DSF with Taylor features of order
``k`` (the paper's infinite-dimensional feature map, truncated), inputs scaled by ``taylor_scale``.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ... import registry
from ...errors import ConfigError
from ...lens.theory import dynamical_systems_framework as dsf
from ...registry import Paper
from . import register_measure


def _rel(a: Tensor, b: Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def _both(system: dsf.DSF, u: Tensor) -> tuple[Tensor, Tensor]:
    return dsf.dsf_recurrence(system, u), dsf.dsf_apply(dsf.dsf_matrix(system), u)


def _errors(outs: tuple[Tensor, ...], refs: tuple[Tensor, ...]) -> float:
    return max(_rel(o, r) for o in outs for r in refs)


def _set_steps(mixer: torch.nn.Module, g: torch.Generator, lo: float, hi: float) -> None:
    """Delta ~ U(lo, hi) at initialization: the dt bias is softplus^-1 of the draw, the dt weights small."""
    with torch.no_grad():
        dt = lo + (hi - lo) * torch.rand(mixer.d_inner, generator=g, dtype=torch.float64)
        mixer.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
        mixer.dt_proj.weight.mul_(0.1)


@register_measure("dsf_equivalence", metric="error",
                  paper=Paper("Understanding the differences in Foundation Models: Attention, State Space Models, "
                              "and Recurrent Neural Networks", 2024, "2405.15731"))
def dsf_equivalence(seed: int, *, d_model: int = 16, length: int = 12, batch: int = 2, n_heads: int = 4,
                    d_state: int = 8, taylor_orders: tuple[int, ...] | list[int] = (2, 4, 8),
                    taylor_scale: float = 0.5) -> dict[str, float]:
    if d_model < 1 or length < 1 or batch < 1 or n_heads < 1 or d_model % n_heads or d_state < 1:
        raise ConfigError(f"dsf_equivalence: need positive sizes with n_heads dividing d_model; got d_model={d_model}, "
                          f"length={length}, batch={batch}, n_heads={n_heads}, d_state={d_state}")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small tensors: one thread is faster on a shared machine; restored below
    try:
        return _measure(seed, d_model, length, batch, n_heads, d_state, tuple(taylor_orders), taylor_scale)
    finally:
        torch.set_num_threads(threads)


def _measure(seed: int, d_model: int, length: int, batch: int, n_heads: int, d_state: int,
             taylor_orders: tuple[int, ...], taylor_scale: float) -> dict[str, float]:
    f64 = {"dtype": torch.float64}
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        att = registry.build("mixer", "attention", d_model, n_heads=n_heads, **f64)
        lin = registry.build("mixer", "linear_attention", d_model, n_heads=n_heads, **f64)
        mamba = registry.build("mixer", "mamba", d_model, d_state=d_state, **f64)
        rg = registry.build("mixer", "rglru", d_model, **f64)
        tied = registry.build("mixer", "mamba", d_model, d_state=d_state, **f64)
        untied = registry.build("mixer", "mamba", d_model, d_state=d_state, **f64)
    u = torch.randn(batch, length, d_model, generator=g, **f64)
    out: dict[str, float] = {}
    with torch.no_grad():
        out["attention"] = _errors(_both(dsf.attention_system(att, u), u), (att(u), att(u, mode="reference")))
        lin_refs = (lin(u), lin(u, mode="reference"))
        out["linear_attention"] = max(
            _errors(_both(dsf.linear_attention_system(lin, u, normalization=norm), u), lin_refs)
            for norm in ("state", "output"))
        system, x, z = dsf.mamba_system(mamba, u)
        outs = tuple(mamba.out_proj(y * F.silu(z)) for y in _both(system, x))
        out["mamba"] = _errors(outs, (mamba(u), mamba(u, mode="reference")))
        system, v, gate = dsf.rglru_system(rg, u)
        outs = tuple(rg.w_out(gate * h) for h in _both(system, v))
        out["rglru"] = _errors(outs, (rg(u), rg(u, mode="reference")))

        # S6 with one rate per channel == normalized linear attention (per-channel normalizer)
        tied.A_log.copy_(torch.empty(tied.d_inner, 1, **f64).uniform_(-1.0, 1.0, generator=g).expand_as(tied.A_log))
        _set_steps(tied, g, 0.3, 1.0)
        x, z = tied.in_proj(u).chunk(2, dim=-1)
        x = tied.conv(x)
        delta, b, c = tied.selection(x)
        phi, psi, eta = dsf.s6_as_normalized_attention(delta, -torch.exp(tied.A_log), b, c)
        y = dsf.normalized_attention(phi, psi, x, eta) + tied.D * x
        out["s6_normalized_attention"] = _errors((tied.out_proj(y * F.silu(z)),), (tied(u), tied(u, mode="reference")))
        out["eta_growth_min"] = float((eta[:, 1:] / eta[:, :-1]).min())  # > 1: S6's normalizer only grows

        _set_steps(untied, g, 0.3, 1.0)
        x, _ = untied.in_proj(u).chunk(2, dim=-1)
        x = untied.conv(x)
        delta, b, c = untied.selection(x)
        A = -torch.exp(untied.A_log)
        ssm = dsf.dsf_recurrence(dsf.selective_ssm(delta, A, b, c), x)
        phi, psi, eta = dsf.s6_as_normalized_attention(delta, A.mean(-1, keepdim=True).expand_as(A), b, c)
        out["untied_mapping_error"] = _rel(dsf.normalized_attention(phi, psi, x, eta), ssm)

        us = taylor_scale * u
        ref = att(us)
        q, k, w_v, w_o = dsf._heads_qkv(att, us)
        for p in taylor_orders:
            heads = []
            for h in range(n_heads):
                fq, fk = dsf.exp_feature_map(q[:, h], p), dsf.exp_feature_map(k[:, h], p)
                eta = (fq * torch.cumsum(fk, dim=-2)).sum(-1)
                heads.append(dsf.normalized_attention(fq, fk, us @ w_v[h].T, eta))
            out[f"taylor_error_p{p}"] = _rel(torch.cat(heads, -1) @ w_o.T, ref)
            out[f"taylor_state_p{p}"] = float(math.comb(p + att.d_head, att.d_head) * att.d_head * n_heads)
    exact = ("attention", "linear_attention", "mamba", "rglru", "s6_normalized_attention")
    out["error"] = max(out[k] for k in exact)
    return out
