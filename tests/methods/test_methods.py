"""Training methods: the registry contract, strict options, and each method's defining property."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats
from torch import nn

import layerlab
from layerlab.errors import ConfigError, UnknownNameError
from layerlab.methods import METHODS, Method, MethodStack, RunContext, build_method, check_methods
from layerlab.methods.base import method_seed
from layerlab.methods.gradient_noise import noise_variance
from layerlab.methods.orthograd import orthogonal_gradient
from layerlab.tasks.base import Batch

BUILTIN = {"orthograd", "gradient_noise", "mixup"}


def run_context(input_kind="vector", seed=0, loss=None, dtype=torch.float64):
    return RunContext(seed=seed, steps=100, device=torch.device("cpu"), dtype=dtype,
                      loss=loss or (lambda out, b: F.cross_entropy(out, b.targets)), input_kind=input_kind,
                      n_outputs=10)


def attached(name, index=0, run=None, **options):
    m = build_method(name, **options)
    m.attach(run or run_context(), index)
    m.setup(nn.Linear(2, 2), run or run_context())
    return m


# ---- registry and strictness ---------------------------------------------------------------
def test_builtin_methods_are_registered_with_papers_and_documented():
    assert BUILTIN <= set(layerlab.names("method")) and METHODS.names() == layerlab.names("method")
    for name in BUILTIN:
        entry = METHODS.entry(name)
        assert issubclass(entry.cls, Method) and entry.cls.registry_name == name and entry.cls.registry_kind == "method"
        assert entry.paper is not None and entry.paper.arxiv in (entry.cls.__doc__ or "")
        assert entry.paper.title.split(":")[0][:30] in " ".join(entry.cls.__doc__.split())
        assert entry.source_file == f"methods/{name}.py"


def test_unknown_method_or_option_is_an_error_with_suggestions():
    with pytest.raises(UnknownNameError, match=r"unknown method 'orthgrad'; did you mean 'orthograd'"):
        build_method("orthgrad")
    with pytest.raises(ConfigError, match=r"unknown option\(s\) 'etta' \(did you mean 'eta'\?\).*eta=0.01"):
        build_method("gradient_noise", etta=0.3)
    with pytest.raises(ConfigError, match="eta must be a finite number >= 0"):
        check_methods([("gradient_noise", {"eta": -1.0})])
    with pytest.raises(ConfigError, match="alpha must be"):
        check_methods([("mixup", {"alpha": 0})])
    with pytest.raises(ConfigError, match="has no width"):
        layerlab.build("method", "orthograd", 64)


def test_mixup_refuses_token_inputs():
    with pytest.raises(ConfigError, match="mixup mixes feature vectors.*'tokens'"):
        MethodStack.build([("mixup", {})]).setup(nn.Linear(2, 2), run_context(input_kind="tokens"))


def test_a_method_that_overrides_nothing_is_called_for_nothing():
    stack = MethodStack([Method()])
    assert not (stack.has_batch or stack.has_loss or stack.has_gradients or stack.has_after_step)
    full = MethodStack.build([("orthograd", {}), ("mixup", {})])
    assert full.has_batch and full.has_loss and full.has_gradients and not full.has_after_step


def test_method_generators_differ_by_place_and_seed():
    assert len({method_seed(0, 0, "a"), method_seed(0, 1, "a"), method_seed(1, 0, "a"), method_seed(0, 0, "b")}) == 4


# ---- ⊥Grad -----------------------------------------------------------------------------------
def _model(seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(7, 5), nn.Tanh(), nn.Linear(5, 3)).double()
    nn.init.zeros_(model[2].bias)  # a zero tensor: no direction to remove
    x, y = torch.randn(11, 7, dtype=torch.float64), torch.randint(0, 3, (11,))
    F.cross_entropy(model(x), y).backward()
    return model


def test_orthograd_update_is_orthogonal_to_each_weight_and_keeps_the_gradient_norm():
    model = _model()
    before = {n: p.grad.clone() for n, p in model.named_parameters()}
    attached("orthograd").transform_gradients(model, 0)
    for n, p in model.named_parameters():
        g, q, w = before[n], p.grad, p.detach()
        if w.norm() == 0:
            assert torch.equal(q, g), n
            continue
        assert abs(torch.dot(w.flatten(), q.flatten())) <= 1e-12 * w.norm() * g.norm(), n
        assert math.isclose(q.norm().item(), g.norm().item(), rel_tol=1e-12), n
        assert not torch.allclose(q, g), n  # the projection did something
        # fast form (all tensors at once) vs the reference form (one tensor, as in the equation)
        ref = orthogonal_gradient(w, g)
        assert ((q - ref).norm() / ref.norm()).item() <= 1e-10, n


def test_orthograd_without_rescaling_is_the_projection_and_a_parallel_gradient_vanishes():
    w = torch.randn(4, 3, dtype=torch.float64)
    g = torch.randn(4, 3, dtype=torch.float64)
    perp = orthogonal_gradient(w, g, rescale=False)
    expected = g - (w * g).sum() / (w * w).sum() * w
    assert torch.allclose(perp, expected, rtol=0, atol=1e-14)
    p = nn.Parameter(w.clone())
    p.grad = 2.5 * w.clone()
    holder = nn.Module()
    holder.p = p
    attached("orthograd").transform_gradients(holder, 0)
    assert torch.all(p.grad == 0)  # only scaling the weights: nothing left


def test_orthograd_float32_agrees_with_float64_reference():
    model = _model().float()
    g = {n: p.grad.double() for n, p in _model().named_parameters()}
    for n, p in model.named_parameters():
        p.grad = g[n].float()
    attached("orthograd").transform_gradients(model, 0)
    for n, p in model.named_parameters():
        ref = orthogonal_gradient(p.detach().double(), g[n])
        assert ((p.grad.double() - ref).norm() / ref.norm()).item() <= 1e-4, n


# ---- gradient noise ----------------------------------------------------------------------------
def test_gradient_noise_adds_sigma_t_times_the_method_generators_normals():
    p = nn.Parameter(torch.zeros(50, dtype=torch.float64))
    holder = nn.Module()
    holder.p = p
    method = attached("gradient_noise", index=2, eta=0.3, gamma=0.55)
    g0 = torch.randn(50, dtype=torch.float64)
    for t in (0, 1, 7):
        p.grad = g0.clone()
        state = method.generator.get_state()
        method.transform_gradients(holder, t)
        z = torch.randn(50, generator=torch.Generator().set_state(state), dtype=torch.float64)
        expected = g0 + math.sqrt(0.3 / (1 + t) ** 0.55) * z
        assert (p.grad - expected).abs().max().item() <= 1e-15 and not torch.allclose(p.grad, g0)


@pytest.mark.parametrize("t", [0, 9, 999])
def test_gradient_noise_variance_follows_eta_over_one_plus_t_to_the_gamma(t):
    n = 200_000
    p = nn.Parameter(torch.zeros(n, dtype=torch.float64))
    p.grad = torch.zeros(n, dtype=torch.float64)
    holder = nn.Module()
    holder.p = p
    attached("gradient_noise", eta=1.0, gamma=0.55).transform_gradients(holder, t)
    expected = noise_variance(t, 1.0, 0.55)
    assert expected == 1.0 / (1 + t) ** 0.55
    # the sample variance of n normals has relative standard error sqrt(2/n) = 0.32%: 5 of them
    assert abs(p.grad.var().item() / expected - 1) < 0.016
    assert abs(p.grad.mean().item()) < 5 * math.sqrt(expected / n)


# ---- MixUp ------------------------------------------------------------------------------------
def test_mixup_batch_is_the_convex_combination_with_its_lambda_and_order():
    x, y = torch.randn(16, 5, dtype=torch.float64), torch.randint(0, 10, (16,))
    method = attached("mixup", alpha=0.4)
    replay = np.random.Generator(np.random.PCG64(method_seed(0, 0, "mixup")))
    for step in range(3):
        out = method.transform_batch(Batch(x, y), step)
        lam, order = float(replay.beta(0.4, 0.4)), torch.from_numpy(replay.permutation(16))
        assert method.lam == lam and torch.equal(method.perm, order)
        assert torch.equal(out.inputs, lam * x + (1 - lam) * x[order]) and torch.equal(out.targets, y)
        assert 0 <= lam <= 1


def test_mixup_loss_is_cross_entropy_on_the_mixed_labels():
    x, y = torch.randn(16, 5, dtype=torch.float64), torch.randint(0, 10, (16,))
    method = attached("mixup", alpha=1.0)
    batch = method.transform_batch(Batch(x, y), 0)
    logits = torch.randn(16, 10, dtype=torch.float64)
    soft = method.lam * F.one_hot(y, 10).double() + (1 - method.lam) * F.one_hot(y[method.perm], 10).double()
    loss = method.transform_loss(torch.tensor(0.0), logits, batch, 0)
    assert math.isclose(loss.item(), F.cross_entropy(logits, soft).item(), rel_tol=1e-12)


@pytest.mark.parametrize("alpha", [0.2, 1.0, 4.0])
def test_mixup_lambda_is_beta_alpha_alpha(alpha):
    method = attached("mixup", alpha=alpha)
    lams = [method.draw(4)[0] for _ in range(3000)]
    assert stats.kstest(lams, stats.beta(alpha, alpha).cdf).pvalue > 1e-3


def test_method_state_round_trip_continues_the_same_stream():
    for name in ("mixup", "gradient_noise"):
        a = attached(name)
        b = attached(name, run=run_context(seed=5))
        b.load_state_dict(a.state_dict())
        if name == "mixup":
            assert a.draw(8)[0] == b.draw(8)[0]
        else:
            assert torch.equal(torch.randn(4, generator=a.generator), torch.randn(4, generator=b.generator))
