"""Degeneracy diagnostics and the (Local) Interaction Basis (lens.interaction_basis), exactly."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from layerlab.errors import ConfigError, ShapeError
from layerlab.lens import interaction_basis as ib

F64 = torch.float64


def _planted(seed: int = 0) -> nn.Sequential:
    """3 -> 6 -> 5 -> 2 ReLU MLP; hidden unit 5 copies unit 4 (an activation null direction) and
    unit 3 has zero outgoing weights (a gradient null direction)."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(3, 6), nn.ReLU(), nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 2)).double()
    with torch.no_grad():
        net[0].bias.fill_(0.3)
        net[0].weight[5] = net[0].weight[4]
        net[0].bias[5] = net[0].bias[4]
        net[2].weight[:, 3] = 0.0
    return net


def _x(n: int = 200, d: int = 3, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=F64)


@pytest.mark.parametrize("kind", ["lib", "ib"])
def test_the_basis_removes_exactly_the_planted_null_directions(kind):
    net, x = _planted(), _x()
    bases = ib.interaction_bases(net, x, kind)
    # layer 1: 6 units - 1 copy - 1 unread; layer 2 feeds a linear readout of rank 2: 2 directions matter
    assert [b.size for b in bases] == [3, 4, 2, 2]
    c = bases[1].C
    e = torch.eye(6, dtype=F64)
    assert float((c.T @ e[3]).abs().max()) < 1e-12  # the unread unit does not enter any feature
    assert float((c.T @ (e[4] - e[5])).abs().max()) < 1e-12
    # dropping those directions changes nothing downstream: the output from the features is exact
    parts = ib.sections(net)
    acts = ib.node_activations(parts, x)
    rebuilt = bases[1].features(acts[1]) @ bases[1].C_pinv + bases[1].mean
    out = parts[2](parts[1](rebuilt))
    assert torch.allclose(out, net(x), atol=1e-12)
    assert not torch.allclose(rebuilt, acts[1], atol=1e-3)  # ... although the activations differ
    deg = ib.degeneracy(net, x)
    assert deg[0]["activation_null"] == 1 and deg[0]["same_firing"] >= 1  # the copy
    assert ib.activation_rank_deficit(acts[1]) == 1
    few = torch.randn(5, 10, generator=torch.Generator().manual_seed(2), dtype=F64)  # N <= d: rank N - 1
    assert ib.activation_null_directions(few) == 6 and ib.activation_rank_deficit(few) == 0
    jac = torch.autograd.functional.jacobian(lambda v: parts[2](parts[1](v)).sum(0), acts[1])  # (2, N, 6)
    rank = int(torch.linalg.matrix_rank(jac.reshape(-1, 6)))
    assert deg[0]["gradient_null"] == 6 - rank and deg[0]["gradient_null"] >= 1  # the unread unit, at least


def test_features_are_decorrelated_with_unit_gradient_gram_and_jacobians_transform():
    torch.manual_seed(3)
    net = nn.Sequential(nn.Linear(4, 7), nn.ReLU(), nn.Linear(7, 6), nn.ReLU(), nn.Linear(6, 3)).double()
    x = _x(150, 4, seed=4)
    bases = ib.interaction_bases(net, x, "lib")
    parts = ib.sections(net)
    acts = ib.node_activations(parts, x)
    jacs = ib.layer_jacobians(parts, acts)
    for l in range(3):
        f = bases[l].features(acts[l])
        cov = f.T @ f / len(f)
        assert torch.allclose(cov, torch.diag(bases[l].Lambda), atol=1e-10 * float(bases[l].Lambda.max()))
        j_hat = bases[l + 1].C.T @ jacs[l] @ bases[l].C_pinv.T
        gram = torch.einsum("nmd,nme->de", j_hat, j_hat) / len(x)
        assert torch.allclose(gram, torch.eye(bases[l].size, dtype=F64), atol=1e-10)
    # the Jacobian of the map f̂^1 -> f̂^2 by autograd is the transformed Jacobian
    f1 = bases[1].features(acts[1])[:5]

    def hat_map(v: torch.Tensor) -> torch.Tensor:
        return bases[2].features(parts[1](v @ bases[1].C_pinv + bases[1].mean))

    auto = torch.stack([torch.autograd.functional.jacobian(hat_map, f1[i:i + 1])[0, :, 0] for i in range(5)])
    assert torch.allclose(auto, (bases[2].C.T @ jacs[1] @ bases[1].C_pinv.T)[:5], atol=1e-12)


def test_features_are_invariant_to_rescaling_relus_where_neuron_and_pca_bases_are_not():
    torch.manual_seed(5)
    net = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3)).double()
    x = _x(150, 4, seed=6)
    s = torch.tensor([0.3, 3.0, 1.0, 7.0, 0.5, 2.0], dtype=F64)
    moved = copy.deepcopy(net)
    with torch.no_grad():
        moved[0].weight.mul_(s[:, None])
        moved[0].bias.mul_(s)
        moved[2].weight.div_(s[None, :])
    assert torch.allclose(moved(x), net(x), atol=1e-12)
    acts, acts_m = ib.node_activations(ib.sections(net), x), ib.node_activations(ib.sections(moved), x)
    for kind in ("lib", "ib"):
        a, b = ib.interaction_bases(net, x, kind), ib.interaction_bases(moved, x, kind)
        for l in range(4):
            fa, fb = a[l].features(acts[l]), b[l].features(acts_m[l])
            assert torch.allclose(fa.abs(), fb.abs(), atol=1e-8 * float(fa.abs().max()))
    for kind in ("pca", "neuron"):
        fa = ib.interaction_bases(net, x, kind)[1].features(acts[1])
        fb = ib.interaction_bases(moved, x, kind)[1].features(acts_m[1])
        assert not torch.allclose(fa.abs(), fb.abs(), atol=1e-3)


def test_edges_and_counts():
    torch.manual_seed(7)
    net = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2)).double()
    x = _x(50, 3)
    bases = ib.interaction_bases(net, x, "neuron")
    edges = ib.interaction_graph(net, x, bases)
    acts = ib.node_activations(ib.sections(net), x)
    # neuron basis, last section linear: E_ij = mean((W_ij (f_j - μ_j))²)
    w = net[2].weight.detach()
    want = (w[None] * (acts[1] - acts[1].mean(0))[:, None, :]).square().mean(0)
    assert torch.allclose(edges[1], want, atol=1e-14)
    assert ib.edge_count(torch.tensor([5.0, 3.0, 1.0, 1.0]), 0.8) == 2
    assert ib.edge_count(torch.tensor([5.0, 3.0, 1.0, 1.0]), 0.81) == 3
    assert ib.edge_count(torch.tensor([1.0, 1.0, 1.0, 1.0]), 1.0) == 4
    groups = ib.same_firing_groups(torch.tensor([[1.0, 2.0, -1.0, 3.0], [-1.0, -2.0, 1.0, 1.0]]))
    assert groups == [[0, 1]]


def test_errors():
    with pytest.raises(ConfigError, match="nn.Sequential"):
        ib.interaction_bases(nn.Linear(2, 2), torch.zeros(3, 2))
    with pytest.raises(ConfigError, match="unknown basis kind"):
        ib.interaction_bases(nn.Sequential(nn.Linear(2, 2)), torch.zeros(3, 2), "svd")
    with pytest.raises(ShapeError, match=r"\(N, m, d\)"):
        ib.gradient_null_directions(torch.zeros(3, 2))


def test_degeneracy_probe_counts_what_the_functions_count():
    from layerlab.lens.dynamics import capture, threshold_modules
    from layerlab.lens.probes import PROBES, ProbeContext, ProbeRunner
    from layerlab.spec import ModelSpec, RunSpec, TaskSpec, TrainSpec
    from layerlab.train import Trainer

    trainer = Trainer(RunSpec(task=TaskSpec("digits"), model=ModelSpec(backbone="classifier", d_model=16, n_layers=1),
                              train=TrainSpec(steps=3, batch_size=16, eval_every=0)))
    trainer.fit()
    runner = ProbeRunner(("degeneracy",), {}, trainer.task, batch_size=64, device=torch.device("cpu"),
                         dtype=torch.float32)
    ctx = ProbeContext(model=trainer.model, task=trainer.task, batch=runner.batch, step=3, lr=1e-3, state={},
                       load_array=lambda s, k: None)
    got = PROBES["degeneracy"](ctx, n_examples=64).scalars
    units = threshold_modules(trainer.model)
    pre = capture(trainer.model, runner.batch.inputs, units, kind="input")
    named = dict(trainer.model.named_modules())
    for u in units:
        post = named[u](pre[u])
        assert got[f"activation_null.{u}"] == ib.activation_rank_deficit(post, 1e-6)
        assert ib.activation_null_directions(post, 1e-6) >= post.shape[1] - len(post) + 1  # 64 examples, 64 units
        n_grouped = sum(len(g) - 1 for g in ib.same_firing_groups(pre[u]))
        assert got[f"same_firing.{u}"] == n_grouped
    with pytest.raises(ConfigError, match="rtol"):
        from layerlab.lens.probes import check_probes
        check_probes(("degeneracy",), {"degeneracy": {"rtol": 2.0}})


def test_closed_form_jacobians_equal_autograd():
    torch.manual_seed(9)
    net = nn.Sequential(nn.Linear(4, 7), nn.ReLU(), nn.Linear(7, 6), nn.ReLU(), nn.Linear(6, 3)).double()
    parts = ib.sections(net)
    acts = ib.node_activations(parts, _x(40, 4, seed=10))
    for s, a, j in zip(parts, acts, ib.layer_jacobians(parts, acts)):
        assert torch.equal(j, ib._jacobian_reference(s, a))  # W and 0/1 gates: exact
    tanh = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 2)).double()  # no closed form: autograd
    parts = ib.sections(tanh)
    acts = ib.node_activations(parts, _x(10, 4))
    j = ib.layer_jacobians(parts, acts)[0]
    want = (1 - torch.tanh(acts[0] @ tanh[0].weight.T + tanh[0].bias).square())[:, :, None] * tanh[0].weight
    assert torch.allclose(j, want, atol=1e-14)


def test_instruments_leave_the_model_and_the_rng_as_they_were():
    torch.manual_seed(11)
    net = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2))
    net.train()
    for p in net.parameters():
        p.grad = torch.ones_like(p)
    before = [p.detach().clone() for p in net.parameters()]
    x = torch.randn(30, 3)
    rng = torch.random.get_rng_state()
    ib.interaction_graph(net, x, ib.interaction_bases(net, x, "lib"))
    ib.degeneracy(net, x)
    assert net.training and all(m.training for m in net)
    assert all(p.dtype == torch.float32 and torch.equal(p, b) for p, b in zip(net.parameters(), before))
    assert all(torch.equal(p.grad, torch.ones_like(p)) for p in net.parameters())
    assert torch.equal(torch.random.get_rng_state(), rng)
