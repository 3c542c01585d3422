"""Muon (Jordan et al. 2024; Liu et al. 2025, arXiv:2502.16982): Newton–Schulz vs SVD, the update rule,
the parameter split, and training through the Trainer with resume."""
import math

import pytest
import torch
import torch.nn.functional as F

from layerlab.errors import ConfigError
from layerlab.methods import build_method
from layerlab.methods.muon import Muon, QUINTIC, newton_schulz, newton_schulz_reference, orthogonalize_svd
from layerlab.models import Classifier
from layerlab.spec import MethodSpec, ModelSpec, OptimSpec
from layerlab.train.optim import build_optimizer

from .test_width_scaled_wd import digits_spec, resumes_identically


def conditioned(rows, cols, lo=1.0, hi=3.0, seed=0, dtype=torch.float64):
    """A matrix with known singular values linspace(lo, hi) and random singular vectors."""
    g = torch.Generator().manual_seed(seed)
    k = min(rows, cols)
    u, _ = torch.linalg.qr(torch.randn(rows, k, generator=g, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(cols, k, generator=g, dtype=torch.float64))
    return (u @ torch.diag(torch.linspace(lo, hi, k, dtype=torch.float64)) @ v.T).to(dtype)


def rel(a, b):
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize("shape", [(1, 7), (7, 1), (5, 5), (16, 40), (40, 16), (33, 17)])
def test_fast_newton_schulz_equals_the_polynomial_on_the_singular_values(shape):
    m = torch.randn(*shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert rel(newton_schulz(m), newton_schulz_reference(m)) <= 1e-10
    m32 = m.float()
    assert rel(newton_schulz(m32).double(), newton_schulz_reference(m)) <= 1e-4


@pytest.mark.parametrize("shape", [(64, 32), (32, 64), (48, 48)])
def test_newton_schulz_singular_values_are_in_the_quintic_band_and_vectors_are_the_svds(shape):
    m = conditioned(*shape)
    x = newton_schulz(m)
    s = torch.linalg.svdvals(x)
    # five quintic steps from s/||M||_F (>= 1/(3 sqrt(k))): measured [0.68, 1.14]; the band of the
    # coefficients (Jordan 2024: roughly 0.7-1.2)
    assert 0.6 <= s.min().item() and s.max().item() <= 1.2
    exact = orthogonalize_svd(m)
    assert rel(orthogonalize_svd(x), exact) <= 1e-10  # same singular vectors: polar(NS(M)) = U V^T
    assert torch.linalg.matrix_norm(x - exact, ord=2).item() <= 0.35  # |s_i - 1| <= 0.32
    k = min(shape)
    q = exact.T @ exact if shape[0] >= shape[1] else exact @ exact.T
    assert torch.allclose(q, torch.eye(k, dtype=torch.float64), atol=1e-12)


def test_svd_orthogonalizer_is_scale_free_and_exact():
    m = conditioned(20, 12)
    assert rel(orthogonalize_svd(5.0 * m), orthogonalize_svd(m)) <= 1e-12
    assert torch.allclose(torch.linalg.svdvals(orthogonalize_svd(m)), torch.ones(12, dtype=torch.float64), atol=1e-12)


@pytest.mark.parametrize("orthogonalizer", ["newton_schulz", "svd"])
@pytest.mark.parametrize("nesterov", [True, False])
def test_muon_step_is_the_papers_update(orthogonalizer, nesterov):
    """W_t = W_{t-1}(1 - eta lam) - eta 0.2 sqrt(max(A,B)) orth(u), M_t = mu M_{t-1} + G_t (float64)."""
    w = torch.nn.Parameter(torch.randn(12, 30, dtype=torch.float64))
    opt = Muon([{"params": [w], "use_muon": True}], lr=0.02, momentum=0.9, nesterov=nesterov, weight_decay=0.1,
               orthogonalizer=orthogonalizer)
    orth = orthogonalize_svd if orthogonalizer == "svd" else newton_schulz
    ref, buf = w.detach().clone(), torch.zeros(12, 30, dtype=torch.float64)
    for t in range(3):
        g = torch.randn(12, 30, generator=torch.Generator().manual_seed(t), dtype=torch.float64)
        w.grad = g.clone()
        opt.step()
        buf = 0.9 * buf + g
        u = g + 0.9 * buf if nesterov else buf
        ref = ref * (1 - 0.02 * 0.1) - 0.02 * 0.2 * math.sqrt(30) * orth(u)
        assert rel(w.detach(), ref) <= 1e-10


def test_muon_agrees_with_torchs_independent_implementation():
    """torch.optim.Muon (match_rms_adamw: 0.2 sqrt(max(A,B))) keeps an EMA buffer; Newton-Schulz is
    scale-free up to its eps, so the two steps agree."""
    w1 = torch.nn.Parameter(torch.randn(16, 24))
    w2 = torch.nn.Parameter(w1.detach().clone())
    w0 = w1.detach().clone()
    ours = Muon([{"params": [w1], "use_muon": True}], lr=0.02, momentum=0.95, weight_decay=0.1)
    theirs = torch.optim.Muon([w2], lr=0.02, momentum=0.95, weight_decay=0.1, adjust_lr_fn="match_rms_adamw")
    for t in range(5):
        g = torch.randn(16, 24, generator=torch.Generator().manual_seed(t))
        w1.grad, w2.grad = g.clone(), g.clone()
        ours.step()
        theirs.step()
    # the updates (not the weights, which hide them) agree to bfloat16 precision: torch iterates
    # Newton-Schulz in bfloat16 (8-bit mantissa, 2^-8 = 4e-3 per rounding); ours in float32
    assert rel(w1.detach() - w0, w2.detach() - w0) <= 2e-2


def test_adamw_part_equals_torch_adamw():
    b1 = torch.nn.Parameter(torch.randn(9, dtype=torch.float64))
    b2 = torch.nn.Parameter(b1.detach().clone())
    ours = Muon([{"params": [b1], "use_muon": False}], lr=1e-2, weight_decay=0.1, betas=(0.9, 0.98), eps=1e-8)
    theirs = torch.optim.AdamW([b2], lr=1e-2, weight_decay=0.1, betas=(0.9, 0.98), eps=1e-8)
    for t in range(4):
        g = torch.randn(9, generator=torch.Generator().manual_seed(t), dtype=torch.float64)
        b1.grad, b2.grad = g.clone(), g.clone()
        ours.step()
        theirs.step()
        assert rel(b1.detach(), b2.detach()) <= 1e-12


def test_method_puts_hidden_matrices_on_muon_and_the_rest_on_adamw():
    torch.manual_seed(0)
    model = Classifier(ModelSpec(backbone="classifier", channel="mlp", d_model=32), in_features=64, n_classes=10)
    opt = build_method("muon").make_optimizer(model, lambda: build_optimizer(model, OptimSpec(lr=1e-3, weight_decay=0.05)))
    groups = {g["name"]: g for g in opt.param_groups}
    muon_ids = {id(p) for p in groups["muon"]["params"]}
    for name, p in model.named_parameters():
        hidden = p.ndim == 2 and not name.startswith(("proj.", "head."))
        assert (id(p) in muon_ids) == hidden, name
    assert {id(model.proj.weight), id(model.head.weight)} == {id(p) for p in groups["adamw"]["params"]}
    assert groups["muon"]["weight_decay"] == groups["adamw"]["weight_decay"] == 0.05
    assert groups["adamw_no_decay"]["weight_decay"] == 0.0 and len(muon_ids) == 4
    with pytest.raises(ConfigError, match="not a 2-D matrix"):
        Muon([{"params": [torch.nn.Parameter(torch.zeros(3))], "use_muon": True}])


def test_strict_options():
    for bad, match in (({"momentum": 1.0}, "momentum"), ({"ns_steps": 0}, "ns_steps"),
                       ({"orthogonalizer": "qr"}, "orthogonalizer"), ({"nesterov": 1}, "nesterov"),
                       ({"adamw_layers": "head"}, "adamw_layers")):
        with pytest.raises(ConfigError, match=match):
            build_method("muon", **bad)
    model = torch.nn.Linear(3, 3)
    with pytest.raises(ConfigError, match="optim.name = 'adamw'"):
        build_method("muon").make_optimizer(model, lambda: build_optimizer(model, OptimSpec(name="sgd")))


def test_trains_and_resumes_with_its_momentum(tmp_path):
    curve = resumes_identically(digits_spec((MethodSpec("muon"),)), tmp_path)
    assert curve[-1] < 0.5 * curve[0]
