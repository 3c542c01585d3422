"""The Dynamical Systems Framework (Sieber et al. 2024, arXiv:2405.15731): each model's DSF equals its block."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import layerlab
from layerlab.errors import ConfigError
from layerlab.lens.theory import dynamical_systems_framework as dsf

TOL = 1e-10  # float64: a DSF form and the block compute the same numbers up to rounding


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.fixture
def x():
    g = torch.Generator().manual_seed(0)
    return torch.randn(2, 7, 8, generator=g, dtype=torch.float64)


def test_recurrence_and_materialised_matrix_agree_and_match_the_unrolled_formula():
    g = torch.Generator().manual_seed(1)
    L, N, d = 5, 6, 3
    system = dsf.DSF(torch.rand(2, L, N, generator=g, dtype=torch.float64),
                     torch.randn(2, L, N, d, generator=g, dtype=torch.float64),
                     torch.randn(2, L, d, N, generator=g, dtype=torch.float64),
                     torch.randn(2, L, d, d, generator=g, dtype=torch.float64))
    u = torch.randn(2, L, d, generator=g, dtype=torch.float64)
    phi = dsf.dsf_matrix(system)
    assert rel(dsf.dsf_apply(phi, u), dsf.dsf_recurrence(system, u)) < TOL
    # Phi_{3,1} = C_3 Lambda_3 Lambda_2 B_1, Phi_{2,2} = C_2 B_2 + D_2, Phi_{1,3} = 0 (causal)
    lam, B, C, D = system.lam[0], system.B[0], system.C[0], system.D[0]
    assert rel(phi[0, 3, 1], C[3] @ torch.diag(lam[3] * lam[2]) @ B[1]) < TOL
    assert rel(phi[0, 2, 2], C[2] @ B[2] + D[2]) < TOL
    assert float(phi[0, 1, 3].abs().max()) == 0.0


def test_softmax_attention_as_a_dsf_with_growing_state_equals_the_block(x):
    att = layerlab.build("mixer", "attention", 8, n_heads=2, dtype=torch.float64)
    with torch.no_grad():
        for mode in ("sdpa", "reference"):
            ref = att(x, mode=mode)
            system = dsf.attention_system(att, x)
            assert system.state_size == 2 * 7 * 4  # heads x L x d_v: the state grows with the sequence
            assert rel(dsf.dsf_recurrence(system, x), ref) < TOL
            assert rel(dsf.dsf_apply(dsf.dsf_matrix(system), x), ref) < TOL


def test_linear_attention_dsf_equals_the_block_with_the_normalization_in_the_state_or_at_the_output(x):
    la = layerlab.build("mixer", "linear_attention", 8, n_heads=2, dtype=torch.float64)
    with torch.no_grad():
        ref = la(x)
        assert rel(la(x, mode="reference"), ref) < TOL
        for norm in ("state", "output"):
            system = dsf.linear_attention_system(la, x, normalization=norm)
            assert system.state_size == 2 * 4 * 4  # n = d_h features times d_v per head
            assert rel(dsf.dsf_recurrence(system, x), ref) < TOL
            assert rel(dsf.dsf_apply(dsf.dsf_matrix(system), x), ref) < TOL
        # the state form's transition is the scalar eta_(i-1)/eta_i, one per head and step
        lam = dsf.linear_attention_system(la, x).lam
        assert float(lam.min()) > 0 and rel(lam[..., :16], lam[..., :1].expand(-1, -1, 16)) < TOL


def test_mamba_s6_dsf_equals_the_block(x):
    m = layerlab.build("mixer", "mamba", 8, d_state=4, dtype=torch.float64)
    with torch.no_grad():
        system, u, z = dsf.mamba_system(m, x)
        assert system.state_size == m.d_inner * 4
        for mode in ("chunked", "reference"):
            ref = m(x, mode=mode)
            y = dsf.dsf_apply(dsf.dsf_matrix(system), u)
            assert rel(m.out_proj(y * F.silu(z)), ref) < TOL
            assert rel(m.out_proj(dsf.dsf_recurrence(system, u) * F.silu(z)), ref) < TOL
        # a wrong gate or skip would be caught: dropping D changes the output
        nod = dsf.DSF(system.lam, system.B, system.C)
        assert rel(m.out_proj(dsf.dsf_recurrence(nod, u) * F.silu(z)), m(x, mode="reference")) > 1e-3


def test_rglru_dsf_equals_the_block(x):
    for first in (False, True):
        r = layerlab.build("mixer", "rglru", 8, normalize_first=first, dtype=torch.float64)
        with torch.no_grad():
            system, v, gate = dsf.rglru_system(r, x)
            assert system.state_size == r.d_rnn  # no state expansion (n = 1)
            for mode in ("parallel", "reference"):
                h = dsf.dsf_apply(dsf.dsf_matrix(system), v)
                assert rel(r.w_out(gate * h), r(x, mode=mode)) < TOL


def test_taylor_features_reproduce_the_truncated_exponential_and_converge_to_softmax():
    g = torch.Generator().manual_seed(2)
    q, k = torch.randn(4, 3, generator=g, dtype=torch.float64), torch.randn(4, 3, generator=g, dtype=torch.float64)
    z = (q * k).sum(-1) / math.sqrt(3)
    for p in (0, 1, 4):
        taylor = sum(z ** m / math.factorial(m) for m in range(p + 1))
        got = (dsf.exp_feature_map(q, p) * dsf.exp_feature_map(k, p)).sum(-1)
        assert rel(got, taylor) < TOL
        assert dsf.exp_feature_map(q, p).shape[-1] == math.comb(p + 3, 3)
    # softmax attention on small scores: the separable DSF's error falls with the order
    att = layerlab.build("mixer", "attention", 8, n_heads=2, dtype=torch.float64)
    x = 0.5 * torch.randn(1, 6, 8, generator=g, dtype=torch.float64)
    with torch.no_grad():
        ref = att(x)
        errs = [rel(dsf.dsf_recurrence(dsf.attention_system(att, x, order=p), x), ref) for p in (2, 4, 6)]
    assert errs[0] > errs[1] > errs[2] and errs[2] < 1e-3


def _s6_inputs(tied: bool, shared_delta: bool = False):
    g = torch.Generator().manual_seed(3)
    L, E, Ns = 6, 3, 4
    delta = 0.2 + 0.8 * torch.rand(1, L, 1 if shared_delta else E, generator=g, dtype=torch.float64).expand(1, L, E)
    A = -torch.arange(1, Ns + 1, dtype=torch.float64).expand(E, Ns)  # S4D-Real: A_s = -s
    if tied:
        A = -torch.rand(E, 1, generator=g, dtype=torch.float64).expand(E, Ns) - 0.5
    b, c = torch.randn(1, L, Ns, generator=g, dtype=torch.float64), torch.randn(1, L, Ns, generator=g, dtype=torch.float64)
    u = torch.randn(1, L, E, generator=g, dtype=torch.float64)
    return delta, A.contiguous(), b, c, u


def test_s6_with_one_transition_rate_per_channel_is_normalized_linear_attention():
    delta, A, b, c, u = _s6_inputs(tied=True)
    y_s6 = dsf.dsf_recurrence(dsf.selective_ssm(delta, A, b, c), u)
    phi, psi, eta = dsf.s6_as_normalized_attention(delta, A, b, c)
    assert rel(dsf.normalized_attention(phi, psi, u, eta), y_s6) < TOL
    assert bool((eta[:, 1:] > eta[:, :-1]).all())  # S6's normalizer only grows (transitions in (0, 1))
    y_matrix = torch.einsum("beij,bje->bie", dsf.s6_attention_matrix(delta, A, b, c), u)
    assert rel(y_matrix, y_s6) < TOL


def test_s6_with_rates_varying_over_the_state_is_not_a_normalized_attention():
    delta, A, b, c, u = _s6_inputs(tied=False)
    with pytest.raises(ConfigError, match="one transition rate per channel"):
        dsf.s6_as_normalized_attention(delta, A, b, c)
    y_s6 = dsf.dsf_recurrence(dsf.selective_ssm(delta, A, b, c), u)
    mean_rate = A.mean(-1, keepdim=True).expand_as(A)  # the best single rate is not enough
    phi, psi, eta = dsf.s6_as_normalized_attention(delta, mean_rate, b, c)
    assert rel(dsf.normalized_attention(phi, psi, u, eta), y_s6) > 1e-2


def test_normalized_linear_attention_with_growing_normalizer_is_an_s6_and_otherwise_not():
    g = torch.Generator().manual_seed(4)
    L, n, E = 6, 4, 3
    phi, psi = torch.rand(1, L, n, generator=g, dtype=torch.float64), torch.rand(1, L, n, generator=g, dtype=torch.float64)
    v = torch.randn(1, L, E, generator=g, dtype=torch.float64)
    eta = 1.0 + torch.cumsum(0.1 + torch.rand(1, L, generator=g, dtype=torch.float64), -1)
    delta, b = dsf.normalized_attention_as_s6(eta, psi)
    A = -torch.ones(E, n, dtype=torch.float64)
    system = dsf.selective_ssm(delta[..., None].expand(1, L, E), A, b, phi)
    assert rel(dsf.dsf_recurrence(system, v), dsf.normalized_attention(phi, psi, v, eta)) < TOL
    shrinking = eta.flip(-1)
    with pytest.raises(ConfigError, match="increase strictly"):
        dsf.normalized_attention_as_s6(shrinking, psi)


def test_bad_inputs_are_clear_errors(x):
    with pytest.raises(ConfigError, match="normalization"):
        dsf.separable_attention(torch.ones(1, 2, 3), torch.ones(1, 2, 3), torch.ones(2, 2), torch.ones(1, 2),
                                normalization="softmax")
    with pytest.raises(ConfigError, match="rope=False"):
        dsf.attention_system(layerlab.build("mixer", "attention", 8, n_heads=2, rope=True, dtype=torch.float64), x)
    with pytest.raises(ConfigError, match="bias=False"):
        dsf.linear_attention_system(layerlab.build("mixer", "linear_attention", 8, n_heads=2, bias=True,
                                                   dtype=torch.float64), x)
    with pytest.raises(ConfigError, match="order"):
        dsf.exp_feature_map(torch.ones(3), -1)
