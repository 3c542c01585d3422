"""Empirical NTK: both methods against each other, against a row-by-row autograd Jacobian and
against a closed form (deep linear network); kernel distance, velocity, relative change and
kernel-target alignment against closed forms; lazy training; no side effects."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import layerlab
from layerlab.errors import ConfigError, ShapeError
from layerlab.lens import ntk
from layerlab.lens.theory.kernels import TwoLayerReLU
from layerlab.models.deep_linear import DeepLinear

F64 = torch.float64


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _mlp(out: int = 3, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 12), nn.Tanh(), nn.Linear(12, 9), nn.GELU(), nn.Linear(9, out)).to(F64)


class TinyConv(nn.Module):
    """(N, 1, 6, 6) -> (N, 2)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.conv = nn.Conv2d(1, 3, 3)
        self.fc = nn.Linear(3 * 4 * 4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).flatten(1))


def _cases() -> list[tuple[str, nn.Module, torch.Tensor, torch.Tensor]]:
    g = _gen(7)
    cases = [
        ("mlp3", _mlp(3), torch.randn(5, 4, generator=g, dtype=F64), torch.randn(3, 4, generator=g, dtype=F64)),
        ("mlp2", _mlp(2, seed=3), torch.randn(4, 4, generator=g, dtype=F64), torch.randn(2, 4, generator=g, dtype=F64)),
        ("conv", TinyConv().to(F64), torch.randn(3, 1, 6, 6, generator=g, dtype=F64),
         torch.randn(2, 1, 6, 6, generator=g, dtype=F64)),
    ]
    torch.manual_seed(2)
    channel = layerlab.build("channel", "mlp", 8, hidden=16, dtype=F64)
    cases.append(("channel-mlp", channel, torch.randn(3, 8, generator=g, dtype=F64),
                  torch.randn(2, 8, generator=g, dtype=F64)))
    return cases


def _reference(model: nn.Module, x1: torch.Tensor, x2: torch.Tensor, names: list[str] | None = None) -> torch.Tensor:
    """Θ[a, b, o, q] from Jacobians built one row at a time with torch.autograd.grad."""
    params = [p for n, p in model.named_parameters() if names is None or n in names]

    def jac(x: torch.Tensor) -> torch.Tensor:
        rows = []
        for i in range(len(x)):
            out = model(x[i : i + 1]).reshape(-1)
            for o in range(out.numel()):
                grads = torch.autograd.grad(out[o], params, retain_graph=True)
                rows.append(torch.cat([g.reshape(-1) for g in grads]))
        return torch.stack(rows).reshape(len(x), -1, sum(p.numel() for p in params))

    model.eval()
    j1, j2 = jac(x1), jac(x2)
    return torch.einsum("aop,bqp->aboq", j1, j2)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize("case", _cases(), ids=lambda c: c[0])
def test_methods_agree_and_match_rowwise_reference(case):
    _, model, x1, x2 = case
    ref = _reference(model, x1, x2)
    for method in ntk.METHODS:
        full = ntk.empirical(model, x1, x2, method=method)
        trace = ntk.empirical(model, x1, x2, method=method, output="trace")
        assert full.shape == ref.shape and trace.shape == ref.shape[:2]
        # tolerance 1e-12 relative to the largest entry (float64); measured ~1e-15
        assert _rel(full, ref) < 1e-12, method
        assert _rel(trace, torch.diagonal(ref, dim1=2, dim2=3).sum(-1)) < 1e-12, method
    for output in ntk.OUTPUTS:  # the two methods against each other, 1e-10 (the bound)
        a = ntk.empirical(model, x1, x2, method="jacobian", output=output)
        b = ntk.empirical(model, x1, x2, method="ntvp", output=output)
        assert _rel(a, b) < 1e-10


def test_deep_linear_closed_form():
    # f = W2 W1 x:  Θ_oq(x, x') = δ_oq (W1 x)·(W1 x') + (W2 W2ᵀ)_oq xᵀx'
    net = DeepLinear(in_features=3, out_features=2, width=5, depth=2, init="small", init_scale=0.7,
                     generator=_gen(4), dtype=F64)
    g = _gen(5)
    x1, x2 = torch.randn(4, 3, generator=g, dtype=F64), torch.randn(3, 3, generator=g, dtype=F64)
    w1, w2 = (w.detach() for w in net.weights)
    expected = (torch.einsum("ab,oq->aboq", (x1 @ w1.T) @ (x2 @ w1.T).T, torch.eye(2, dtype=F64))
                + torch.einsum("ab,oq->aboq", x1 @ x2.T, w2 @ w2.T))
    for method in ntk.METHODS:
        assert _rel(ntk.empirical(net, x1, x2, method=method), expected) < 1e-12


def test_symmetric_psd_and_consistent_blocks():
    model = _mlp(3)
    x = torch.randn(6, 4, generator=_gen(8), dtype=F64)
    for method in ntk.METHODS:
        theta = ntk.empirical(model, x, method=method)  # (6, 6, 3, 3)
        mat = theta.permute(0, 2, 1, 3).reshape(18, 18)
        assert (mat - mat.T).abs().max() <= 1e-12 * mat.abs().max()
        eig = torch.linalg.eigvalsh(mat)
        assert eig.min() >= -1e-10 * eig.max()
        # Θ(x[:4], x[4:]) is the off-diagonal block of Θ(x, x)
        block = ntk.empirical(model, x[:4], x[4:], method=method)
        assert _rel(block, theta[:4, 4:]) < 1e-12


def test_parameter_subset_chunks_and_vector_outputs():
    model = _mlp(3)
    g = _gen(9)
    x1, x2 = torch.randn(5, 4, generator=g, dtype=F64), torch.randn(4, 4, generator=g, dtype=F64)
    names = ["0.weight", "4.bias"]
    ref = _reference(model, x1, x2, names)
    for method in ntk.METHODS:
        assert _rel(ntk.empirical(model, x1, x2, method=method, params=names), ref) < 1e-12
        # a submodule name selects all its parameters
        sub = ntk.empirical(model, x1, x2, method=method, params="2")
        assert _rel(sub, _reference(model, x1, x2, ["2.weight", "2.bias"])) < 1e-12
        chunked = ntk.empirical(model, x1, x2, method=method, chunk_size=2)
        assert _rel(chunked, ntk.empirical(model, x1, x2, method=method)) < 1e-13

    class Scalar(nn.Module):  # (N,) outputs are O = 1
        def __init__(self) -> None:
            super().__init__()
            self.inner = _mlp(1)

        def forward(self, x):
            return self.inner(x).squeeze(-1)

    wrapped = Scalar()
    for method in ntk.METHODS:
        a = ntk.empirical(wrapped, x1, x2, method=method, output="trace")
        b = ntk.empirical(wrapped.inner, x1, x2, method=method)[..., 0, 0]
        assert _rel(a, b) < 1e-12


class Tricky(nn.Module):
    """Linear layers the structured method must not take at face value: applied per position
    (T > 1), called twice in one forward, a weight tied to another layer, and a weight also used
    outside its module's forward."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(5)
        self.per_position = nn.Linear(4, 6)
        self.twice = nn.Linear(6, 6)
        self.tied_a = nn.Linear(6, 6, bias=False)
        self.tied_b = nn.Linear(6, 6)
        self.tied_b.weight = self.tied_a.weight
        self.reused = nn.Linear(6, 6)
        self.norm = nn.LayerNorm(6)
        self.out = nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, T, 4) -> (N, 2)
        h = torch.tanh(self.per_position(x))
        h = torch.tanh(self.twice(torch.tanh(self.twice(h))))
        h = torch.tanh(self.tied_b(torch.tanh(self.tied_a(h))))
        h = self.reused(h) + nn.functional.linear(h.flip(1), self.reused.weight)
        return self.out(self.norm(torch.tanh(h)).mean(1))


def test_structured_ntk_checks_each_linear_layer_and_leaves_the_rest_to_the_jacobian():
    model = Tricky().to(F64)
    g = _gen(11)
    x1, x2 = torch.randn(4, 3, 4, generator=g, dtype=F64), torch.randn(3, 3, 4, generator=g, dtype=F64)
    ref = _reference(model, x1, x2)
    names = [n for n, _ in model.named_parameters()]
    _, covered = ntk._structured_blocks(model, names, torch.cat([x1, x2]), full=True)
    # only the layers whose per-example gradients are Σ_t δ_t a_tᵀ: per_position and out
    assert covered == {"per_position.weight", "per_position.bias", "out.weight", "out.bias"}
    for output in ntk.OUTPUTS:
        got = ntk.empirical(model, x1, x2, method="structured", output=output)
        want = ref if output == "full" else torch.diagonal(ref, dim1=2, dim2=3).sum(-1)
        assert _rel(got, want) < 1e-12  # measured ~1e-16


def test_target_logit_keeps_each_examples_target_under_every_method():
    from layerlab.lens.probes import TargetLogit

    model = _mlp(3)
    g = _gen(12)
    x, targets = torch.randn(6, 4, generator=g, dtype=F64), torch.tensor([0, 2, 1, 2, 0, 1])
    full = ntk.empirical(model, x)  # (6, 6, 3, 3)
    want = full[torch.arange(6)[:, None], torch.arange(6)[None], targets[:, None], targets[None]]
    f = TargetLogit(model, x, targets, None)
    for method in ntk.METHODS:
        assert _rel(ntk.empirical(f, f.indices(), method=method, output="trace"), want) < 1e-12, method
    with pytest.raises(ShapeError, match="one row per example"):
        TargetLogit(model, x, targets[:5], None)


def test_float32_methods_agree():
    model = _mlp(2).float()
    x = torch.randn(5, 4, generator=_gen(10))
    a = ntk.empirical(model, x)
    b = ntk.empirical(model, x, method="ntvp")
    assert a.dtype == torch.float32 and _rel(a, b) < 1e-5  # float32 bound (measured ~1e-7)


def test_bad_inputs_raise():
    model = _mlp(2)
    x = torch.randn(3, 4, dtype=F64)
    with pytest.raises(ConfigError, match="did you mean '0.weight'"):
        ntk.empirical(model, x, params=["0.weigth"])
    with pytest.raises(ConfigError, match="jacobian"):
        ntk.empirical(model, x, method="jacobain")
    with pytest.raises(ConfigError, match="trace"):
        ntk.empirical(model, x, output="diag")
    with pytest.raises(ShapeError):
        ntk.empirical(model, x, torch.randn(3, 5, dtype=F64))
    model[0].bias.requires_grad_(False)
    with pytest.raises(ConfigError, match="requires_grad=False"):
        ntk.empirical(model, x, params="0.bias")

    class Summed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(4, 1).to(F64)

        def forward(self, x):
            return self.lin(x).sum()

    for method in ntk.METHODS:
        with pytest.raises(ShapeError, match=r"\(N, O\)"):
            ntk.empirical(Summed(), x, method=method)


def test_side_effect_free():
    torch.manual_seed(11)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 2)).to(F64)
    x = torch.randn(6, 4, generator=_gen(12), dtype=F64)
    model.train()
    model(x).sum().backward()  # populate .grad and the BatchNorm running statistics
    model[4].eval()  # a mixed train/eval configuration must come back as it was
    params = [p.detach().clone() for p in model.parameters()]
    grads = [p.grad for p in model.parameters()]
    grad_values = [g.clone() for g in grads]
    buffers = [b.clone() for b in model.buffers()]
    flags = [m.training for m in model.modules()]
    rng = torch.get_rng_state()
    first = ntk.empirical(model, x, method="jacobian")
    second = ntk.empirical(model, x, method="ntvp")
    assert _rel(first, second) < 1e-10  # eval mode: dropout off, BatchNorm on running statistics
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), params))
    assert all(p.grad is g and torch.equal(g, v) for p, g, v in zip(model.parameters(), grads, grad_values))
    assert all(torch.equal(b, c) for b, c in zip(model.buffers(), buffers))
    assert [m.training for m in model.modules()] == flags
    assert torch.equal(torch.get_rng_state(), rng)
    assert not first.requires_grad


# ---- kernel distance, velocity, relative change, alignment ----------------------------------


def _psd(n: int, rank: int, seed: int) -> torch.Tensor:
    a = torch.randn(n, rank, generator=_gen(seed), dtype=F64)
    return a @ a.T


def test_kernel_distance_closed_forms():
    k = _psd(6, 3, 0)
    assert abs(float(ntk.kernel_distance(k, k))) < 1e-15
    assert abs(float(ntk.kernel_distance(k, 3.7 * k))) < 1e-15
    other = _psd(6, 6, 1)
    assert abs(float(ntk.kernel_distance(2.5 * k, other) - ntk.kernel_distance(k, other))) < 1e-15
    # I vs I + 11ᵀ at N = 4: <.,.> = 8, norms 2 and √28, so S = 1 − 4/√28
    eye = torch.eye(4, dtype=F64)
    assert abs(float(ntk.kernel_distance(eye, eye + 1.0)) - (1 - 4 / math.sqrt(28))) < 1e-15
    # PSD kernels with orthogonal ranges: S = 1 exactly; any PSD pair: 0 <= S <= 1
    u = torch.linalg.qr(torch.randn(6, 6, generator=_gen(2), dtype=F64))[0]
    p1, p2 = u[:, :3] @ u[:, :3].T, u[:, 3:] @ u[:, 3:].T
    assert abs(float(ntk.kernel_distance(p1, p2)) - 1.0) < 1e-14
    for seed in range(20):
        s = float(ntk.kernel_distance(_psd(5, 2, 10 + seed), _psd(5, 2, 40 + seed)))
        assert 0.0 <= s <= 1.0
    with pytest.raises(ShapeError):
        ntk.kernel_distance(k, k[:3, :3])


def test_velocity_and_relative_change():
    k = _psd(5, 5, 3)
    k2 = _psd(5, 5, 4)
    assert abs(float(ntk.kernel_velocity(k, k2, dt=4.0)) - float(ntk.kernel_distance(k, k2)) / 4) < 1e-15
    assert float(ntk.relative_change(k, k)) == 0.0
    assert abs(float(ntk.relative_change(k, 3 * k)) - 2.0) < 1e-14  # ‖3K − K‖/‖K‖ = 2
    with pytest.raises(ConfigError):
        ntk.kernel_velocity(k, k2, dt=0.0)


def test_target_alignment_closed_forms():
    labels = torch.tensor([0, 1, 1, 2, 2, 2, 0, 1])
    y = torch.nn.functional.one_hot(labels).to(F64)
    for centered in (True, False):
        assert abs(float(ntk.target_alignment(y @ y.T, labels, centered=centered)) - 1) < 1e-14
        assert abs(float(ntk.target_alignment(5.0 * y @ y.T, y, centered=centered)) - 1) < 1e-14
    # uncentered, K = I: <I, YYᵀ> = N, ‖I‖ = √N, ‖YYᵀ‖ = sqrt(Σ_c n_c²) with class sizes (2, 3, 3)
    eye = torch.eye(8, dtype=F64)
    assert abs(float(ntk.target_alignment(eye, labels, centered=False)) - math.sqrt(8) / math.sqrt(22)) < 1e-14
    # centred, real targets, K = I: <H, H y yᵀ H> / (‖H‖ ‖Hy‖²) = 1/‖H‖ = 1/sqrt(N − 1)
    yr = torch.randn(8, generator=_gen(5), dtype=F64)
    assert abs(float(ntk.target_alignment(eye, yr)) - 1 / math.sqrt(7)) < 1e-14
    # centring removes the constant: a constant kernel added to yyᵀ does not change it
    assert abs(float(ntk.target_alignment(torch.outer(yr, yr) + 4.0, yr)) - 1) < 1e-13
    assert float(ntk.target_alignment(torch.outer(yr, yr) + 4.0, yr, centered=False)) < 0.9
    with pytest.raises(ShapeError):
        ntk.target_alignment(torch.zeros(8, 8, 2, 2, dtype=F64), labels)
    with pytest.raises(ShapeError):
        ntk.target_alignment(eye, labels[:5])


def test_lazy_training_kernel_moves_less_when_wider():
    """Jacot et al. / Chizat et al.: in NTK parameterization the kernel moves less the wider the
    network, at least like width^(-1/2) (a factor 8 from 64 to 4096; we ask for > 4). For this
    2-layer net it is faster (measured ratio ~22, about width^(-0.74)): the random signs of the
    readout a_j cancel the leading-order change of both NTK terms."""
    g = _gen(13)
    x = torch.randn(8, 3, generator=g, dtype=F64)
    y = torch.sin(2 * x[:, :1])
    change = {}
    for width in (64, 4096):
        values = []
        for seed in range(3):
            net = TwoLayerReLU(3, width, _gen(100 + seed), dtype=F64)
            k0 = ntk.empirical(net, x, output="trace")
            for _ in range(60):  # full-batch gradient descent, loss ½ mean (f − y)²
                loss = 0.5 * ((net(x) - y) ** 2).mean()
                grads = torch.autograd.grad(loss, list(net.parameters()))
                with torch.no_grad():
                    for p, gp in zip(net.parameters(), grads):
                        p -= 0.5 * gp
            with torch.no_grad():
                assert float(0.5 * ((net(x) - y) ** 2).mean()) < float(0.5 * (y**2).mean())  # it learned
            values.append(float(ntk.relative_change(k0, ntk.empirical(net, x, output="trace"))))
        change[width] = sum(values) / len(values)
    assert change[4096] < change[64] / 4, change
