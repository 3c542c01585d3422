"""Weight matching (Git Re-Basin): permuted copies compute the same function, alignment recovers a
known permutation exactly, the objective never decreases and reaches the brute-force optimum where
one permutation is free, and unsupported models fail with the fix."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn

from layerlab.errors import ConfigError
from layerlab.lens import landscape
from layerlab.lens import permutation as perm
from layerlab.lens.similarity import assign
from layerlab.models import Classifier, DeepLinear
from layerlab.spec import ModelSpec


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _jitter(model: nn.Module, seed: int, scale: float = 0.3) -> nn.Module:
    """Move every parameter and float buffer off its initial value (norm gains 1, biases 0 would
    hide a permutation applied to the wrong tensor)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for t in [*model.parameters(), *model.buffers()]:
            if t.is_floating_point():
                t.add_(scale * torch.randn(t.shape, generator=g, dtype=t.dtype))
                if t.dim() == 1 and t.min() < 0.05:  # running variances stay positive
                    t.abs_().add_(0.05)
    return model


def _classifier(channel="mlp", norm="layernorm", place="pre", d=12, layers=2, dtype=torch.float64, seed=0, **opts):
    torch.manual_seed(seed)
    spec = ModelSpec(backbone="classifier", channel=channel, norm=norm, norm_place=place, d_model=d,
                     n_layers=layers, channel_options=opts)
    return _jitter(Classifier(spec, in_features=7, n_classes=5).to(dtype), seed + 100)


def _sequential(dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    m = nn.Sequential(nn.Flatten(), nn.Linear(7, 11), nn.BatchNorm1d(11), nn.ReLU(), nn.Dropout(0.1),
                      nn.Linear(11, 9), nn.LayerNorm(9), nn.GELU(), nn.Linear(9, 5)).to(dtype)
    return _jitter(m, seed + 100)


def _deep_linear(dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    return DeepLinear(in_features=7, out_features=5, width=10, depth=4, init="orthogonal").to(dtype)


KINDS = {
    "classifier-pre-mlp-layernorm": lambda **k: _classifier(**k),
    "classifier-post-mlp-rmsnorm": lambda **k: _classifier(place="post", norm="rmsnorm", **k),
    "classifier-peri-swiglu-layernorm": lambda **k: _classifier(channel="swiglu", place="peri", **k),
    "classifier-pre-swiglu-rmsnorm-bias": lambda **k: _classifier(channel="swiglu", norm="rmsnorm", bias=True, **k),
    "classifier-mlp-polynorm-nobias": lambda **k: _classifier(activation="polynorm", bias=False, **k),
    "classifier-mlp-relu-3-layers": lambda **k: _classifier(activation="relu", layers=3, **k),
    "sequential": lambda **k: _sequential(**k),
    "deep-linear": lambda **k: _deep_linear(**k),
}


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


# ---- the assignment solver -------------------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 2, 3, 5, 6])
def test_assignment_is_the_brute_force_maximum(n):
    rng = np.random.default_rng(n)
    for trial in range(6):
        # float scores, and small integers (many ties) on odd trials
        c = rng.normal(size=(n, n)) if trial % 2 == 0 else rng.integers(-2, 3, size=(n, n)).astype(float)
        best = max(sum(c[i, p[i]] for i in range(n)) for p in itertools.permutations(range(n)))
        # cold start, and warm starts from any column potentials (a nearby matrix's, or random ones)
        q, v = perm.solve_assignment(c)
        warm, _ = perm.solve_assignment(c + 0.1 * rng.normal(size=(n, n)), v)
        for start in (None, v, rng.normal(size=n) * 3):
            q, _ = perm.solve_assignment(c, start)
            assert sorted(q.tolist()) == list(range(n))
            assert abs(c[np.arange(n), q].sum() - best) <= 1e-12
        assert sorted(warm.tolist()) == list(range(n))


def test_warm_started_assignment_matches_the_reference_solver():
    rng = np.random.default_rng(0)
    c = rng.normal(size=(120, 120))
    q, v = perm.solve_assignment(c)
    for step in range(3):  # a drifting matrix, each solve warm-started from the last
        c = c + 0.05 * rng.normal(size=c.shape)
        q, v = perm.solve_assignment(c, v)
        ref = assign(torch.from_numpy(c), maximize=True).numpy()
        assert abs(c[np.arange(120), q].sum() - c[np.arange(120), ref].sum()) <= 1e-10 * np.abs(c).sum()


# ---- a permuted copy computes the same function -------------------------------------------------

@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_permuted_copy_computes_the_same_function(kind, dtype, tol):
    model = KINDS[kind](dtype=dtype).eval()
    spec = perm.permutation_spec(model)
    perms = perm.random_permutations(spec, generator=torch.Generator().manual_seed(3))
    before = {n: t.clone() for n, t in model.state_dict().items()}
    permuted = perm.apply_permutation(model, perms, spec).eval()
    for n, t in model.state_dict().items():  # the original is untouched
        assert torch.equal(t, before[n])
    x = torch.randn(64, 7, generator=torch.Generator().manual_seed(4), dtype=torch.float64).to(dtype)
    with torch.no_grad():
        y, yp = model(x), permuted(x)
    assert _rel_err(yp, y) <= tol
    # ... and the permutation did move every tensor it names
    after = permuted.state_dict()
    assert all(not torch.equal(after[n], before[n]) for n in spec.axes)
    # an inconsistent permutation (one tensor left out of its permutation) changes the function
    name = max(spec.sizes, key=spec.sizes.get)
    skip, axis = spec.perm_to_axes[name][0]
    axes = {**spec.axes, skip: tuple(None if i == axis else p for i, p in enumerate(spec.axes[skip]))}
    broken = perm.PermutationSpec(axes=axes, sizes=spec.sizes)
    with torch.no_grad():
        yw = perm.apply_permutation(model, perms, broken).eval()(x)
    assert _rel_err(yw, y) > 1e-3


def test_spec_of_the_classifier_shares_one_stream_permutation():
    model = _classifier(place="peri", layers=2)
    spec = perm.permutation_spec(model)
    assert spec.sizes == {"stream": 12, "layers.0.f": 48, "layers.1.f": 48}
    assert spec.axes["proj.weight"] == ("stream", None)
    assert spec.axes["layers.1.f.fc1.weight"] == ("layers.1.f", "stream")
    assert spec.axes["layers.1.f.fc2.weight"] == ("stream", "layers.1.f")
    assert spec.axes["layers.0.norm_out.weight"] == ("stream",)
    assert spec.axes["norm.bias"] == ("stream",)
    assert spec.axes["head.weight"] == (None, "stream")
    assert "head.bias" not in spec.axes


# ---- alignment ----------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["classifier-pre-mlp-layernorm", "classifier-peri-swiglu-layernorm",
                                  "classifier-mlp-relu-3-layers", "sequential", "deep-linear"])
def test_align_to_a_permuted_copy_recovers_the_permutation(kind):
    model = KINDS[kind]().eval()
    spec = perm.permutation_spec(model)
    q = perm.random_permutations(spec, generator=torch.Generator().manual_seed(7))
    shuffled = perm.apply_permutation(model, q, spec)
    state = {n: t.clone() for n, t in shuffled.state_dict().items()}
    aligned, found, info = perm.align(model, shuffled, seed=1)
    assert all(torch.equal(t, state[n]) for n, t in shuffled.state_dict().items())  # B is left as it was
    for p in spec.sizes:  # aligned[i] = shuffled[found[i]] = model[q[found[i]]] = model[i]
        assert torch.equal(q[p][found[p]], torch.arange(spec.sizes[p]))
    for (n, a), b in zip(model.named_parameters(), aligned.parameters()):
        assert torch.equal(a, b), n
    assert info["converged"] and info["distance_after"] == 0.0 < info["distance_before"]
    # started at the answer, one sweep changes nothing
    again, info2 = perm.weight_matching(model, shuffled, init=found)
    assert info2["sweeps"] == 1 and info2["converged"] and all(torch.equal(again[p], found[p]) for p in found)
    x = torch.randn(32, 7, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    y = torch.randint(0, 5, (32,), generator=torch.Generator().manual_seed(1))
    loss = lambda m, batch: nn.functional.cross_entropy(m(batch[0]), batch[1])
    assert landscape.barrier(model, aligned, loss, [(x, y)], alphas=5) == 0.0
    _, along = landscape.interpolate(model, aligned, loss, [(x, y)], alphas=5)
    assert torch.equal(along, along[:1].expand(5))  # the path is one point: the loss is constant
    _, before = landscape.interpolate(model, shuffled, loss, [(x, y)], alphas=5)
    assert float((before - before[0]).abs().max()) > 1e-4  # unaligned, the path leaves the function


@pytest.mark.parametrize("kind", ["classifier-pre-mlp-layernorm", "classifier-pre-swiglu-rmsnorm-bias", "deep-linear"])
def test_objective_never_decreases_and_matches_its_reference_form(kind):
    a, b = KINDS[kind](seed=0), KINDS[kind](seed=1)  # two independent models
    spec = perm.permutation_spec(a)
    perms, info = perm.weight_matching(a, b, spec=spec, seed=2)
    hist = info["objective"]
    assert len(hist) == 1 + info["sweeps"] * len(spec.sizes)
    assert all(y >= x for x, y in zip(hist, hist[1:]))
    assert hist[-1] > hist[0]  # it found something better than the identity
    ident = {p: torch.arange(n) for p, n in spec.sizes.items()}
    assert abs(hist[0] - perm.matching_objective(a, b, ident, spec)) <= 1e-10 * abs(hist[0]) + 1e-12
    ref = perm.matching_objective(a, b, perms, spec)
    assert abs(hist[-1] - ref) <= 1e-10 * max(1.0, abs(ref))
    # ||θ_A − π(θ_B)||² = ||θ_A||² + ||θ_B||² − 2 (objective + the unpermuted tensors' <θ_A, θ_B>)
    aligned, _, info2 = perm.align(a, b, seed=2)
    pa = {n: t.detach() for n, t in a.named_parameters()}
    pb = {n: t.detach() for n, t in b.named_parameters()}
    free = sum(float((pa[n].double() * pb[n].double()).sum()) for n in pa if n not in spec.axes)
    sq = sum(float((t.double() ** 2).sum()) for t in [*pa.values(), *pb.values()])
    assert math.isclose(info2["distance_after"] ** 2, sq - 2 * (ref + free), rel_tol=1e-9)
    assert info2["distance_after"] < info2["distance_before"]


def test_one_free_permutation_reaches_the_brute_force_optimum():
    torch.manual_seed(0)
    a = nn.Sequential(nn.Linear(3, 6), nn.Tanh(), nn.Linear(6, 2)).double()
    b = nn.Sequential(nn.Linear(3, 6), nn.Tanh(), nn.Linear(6, 2)).double()
    spec = perm.permutation_spec(a)
    assert spec.sizes == {"0": 6}
    perms, info = perm.weight_matching(a, b, spec=spec)
    best = max(perm.matching_objective(a, b, {"0": torch.tensor(p)}, spec)
               for p in itertools.permutations(range(6)))
    assert abs(info["objective"][-1] - best) <= 1e-12 * abs(best)
    assert info["sweeps"] == 2 and info["converged"]  # one step finds it, the next sweep changes nothing


# ---- what it cannot handle -----------------------------------------------------------------------

@pytest.mark.parametrize("make,needle", [
    (lambda: _classifier(channel="kan"), "channel KAN"),
    (lambda: _classifier(norm="evonorm_s0"), "EvoNormS0"),
    (lambda: nn.Sequential(nn.Linear(4, 6), nn.Softmax(dim=0), nn.Linear(6, 2)), "Softmax"),
    (lambda: nn.Sequential(nn.Linear(4, 6), nn.PReLU(6), nn.Linear(6, 2)), "PReLU"),
    (lambda: nn.Sequential(nn.Conv1d(1, 2, 3)), "no Linear"),
    (lambda: nn.GRU(3, 4), "GRU"),
])
def test_unsupported_models_say_what_breaks_the_symmetry_and_the_fix(make, needle):
    with pytest.raises(ConfigError, match=needle) as e:
        perm.permutation_spec(make())
    assert "PermutationSpec" in str(e.value)


def test_bad_permutations_and_mismatched_models_are_rejected():
    model = _classifier()
    spec = perm.permutation_spec(model)
    perms = perm.random_permutations(spec)
    with pytest.raises(ConfigError, match="not a permutation"):
        perm.apply_permutation(model, {**perms, "stream": torch.zeros(12, dtype=torch.long)}, spec)
    with pytest.raises(ConfigError, match="one permutation per name"):
        perm.apply_permutation(model, {"stream": perms["stream"]}, spec)
    with pytest.raises(Exception, match="units"):
        perm.align(model, _classifier(d=16))
    with pytest.raises(ConfigError, match="two axes"):
        perm.PermutationSpec(axes={"w": ("h", "h")}, sizes={"h": 3})
