"""The set backbone (Set Transformer, arXiv:1810.00825): SAB/ISAB equivariance, PMA and model
invariance on random permutations (float64, 1e-12), the attention forms agree, the MAB equation
against a hand computation, strict options, and the backbone through build_model and the Trainer."""
from __future__ import annotations

import math

import pytest
import torch

from layerlab.errors import ConfigError, ShapeError
from layerlab.models import accepts, build_model, count_parameters
from layerlab.models.set_transformer import ISAB, MAB, PMA, SAB, SetModel, attend
from layerlab.spec import ModelSpec, OptimSpec, RunSpec, TaskSpec, TrainSpec

pytestmark = pytest.mark.usefixtures("one_thread")
F64 = torch.float64


class SetTask:
    input_kind = "set"
    name = "sets"
    input_dim = 5
    n_outputs = 3


def spec(**kw) -> ModelSpec:
    base = dict(backbone="set", mixer="sab", norm="layernorm", norm_place="post", d_model=8, n_layers=2,
                mixer_options={"n_heads": 2})
    base.update(kw)
    return ModelSpec(**base)


def perturb(module: torch.nn.Module, seed: int = 0) -> None:
    """Move every parameter (norm gains and zero biases too) so no symmetry of the init hides a bug."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=gen, dtype=p.dtype))


def rand(*shape: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


@pytest.mark.parametrize("place", ["post", "pre"])
def test_sab_and_isab_are_permutation_equivariant(place: str) -> None:
    s = spec(norm_place=place)
    torch.manual_seed(0)
    for block in (SAB(s, 2, place=place), ISAB(s, 2, 3, place=place)):
        block = block.double()
        perturb(block)
        x = rand(3, 7, 8)
        y = block(x)
        for seed in range(3):
            p = torch.randperm(7, generator=torch.Generator().manual_seed(seed))
            assert not torch.equal(p, torch.arange(7))
            torch.testing.assert_close(block(x[:, p]), y[:, p], rtol=0, atol=1e-12)


def test_pma_and_the_model_are_permutation_invariant() -> None:
    s = spec(mixer="isab", mixer_options={"n_heads": 2, "m": 3, "k": 2})
    torch.manual_seed(0)
    pma = PMA(s, 2, 2, place="post").double()
    perturb(pma)
    model = SetModel(s, in_features=5, n_outputs=3).double()
    perturb(model, seed=1)
    z, x = rand(2, 6, 8), rand(2, 6, 5, seed=2)
    ref_pma, ref_model = pma(z), model(x)
    assert ref_pma.shape == (2, 2, 8) and ref_model.shape == (2, 3)
    for seed in range(3):
        p = torch.randperm(6, generator=torch.Generator().manual_seed(seed))
        torch.testing.assert_close(pma(z[:, p]), ref_pma, rtol=0, atol=1e-12)
        torch.testing.assert_close(model(x[:, p]), ref_model, rtol=0, atol=1e-12)
    # the input's order is not ignored everywhere: the encoder's output rows do move
    p = torch.tensor([1, 0, 2, 3, 4, 5])
    assert not torch.allclose(model.encode(x[:, p]), model.encode(x))


@pytest.mark.parametrize("kw", [dict(mixer="sab"), dict(mixer="isab", mixer_options={"n_heads": 2, "m": 4}),
                                dict(mixer="rff", mixer_options={"pool": "sum"}),
                                dict(mixer="rff", mixer_options={"pool": "max"}),
                                dict(mixer="sab", mixer_options={"n_heads": 2, "pool": "mean"}),
                                dict(mixer="sab", norm_place="pre", mixer_options={"n_heads": 2, "k": 2})],
                         ids=["sab", "isab", "deepsets-sum", "deepsets-max", "sab-mean", "sab-pre-k2"])
def test_every_variant_is_invariant_and_forms_agree(kw: dict) -> None:
    torch.manual_seed(0)
    model = SetModel(spec(**kw), in_features=5, n_outputs=3).double()
    perturb(model)
    x = rand(3, 6, 5).requires_grad_()
    y = model(x)
    p = torch.randperm(6, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(model(x[:, p]), y, rtol=0, atol=1e-12)
    # reference (per-head softmax written out) vs sdpa: outputs and gradients, float64 and float32
    g = torch.autograd.grad(y.square().sum(), [x, *model.parameters()], allow_unused=True)
    yr = model(x, mode="reference")
    gr = torch.autograd.grad(yr.square().sum(), [x, *model.parameters()], allow_unused=True)
    assert (yr - y).norm() <= 1e-10 * y.norm()
    pairs = [(a, b) for a, b in zip(g, gr) if a is not None]
    scale = torch.cat([a.flatten() for a, _ in pairs]).norm()  # the key bias's gradient is exactly 0
    for a, b in pairs:
        assert (a - b).norm() <= 1e-10 * scale
    m32 = model.float()
    x32 = x.detach().float()
    assert (m32(x32, mode="reference") - m32(x32)).norm() <= 1e-4 * m32(x32).norm()


def test_mab_matches_the_paper_equation_by_hand() -> None:
    """MAB(X, Y) = LN(H + rFF(H)), H = LN(X + concat_j softmax(X W_j^Q (Y W_j^K)ᵀ/√d_h) Y W_j^V W^O)."""
    s = spec()
    torch.manual_seed(0)
    mab = MAB(s, 2, place="post").double()
    perturb(mab)
    x, y = rand(1, 3, 8), rand(1, 5, 8, seed=2)
    a = mab.attention
    heads = []
    for j in range(2):
        sl = slice(4 * j, 4 * j + 4)
        q = x[0] @ a.q.weight[sl].T + a.q.bias[sl]
        k = y[0] @ a.k.weight[sl].T + a.k.bias[sl]
        v = y[0] @ a.v.weight[sl].T + a.v.bias[sl]
        w = torch.exp(q @ k.T / 2.0)
        heads.append((w / w.sum(1, keepdim=True)) @ v)
    mh = torch.cat(heads, 1) @ a.o.weight.T + a.o.bias

    def ln(t, norm):
        return (t - t.mean(-1, keepdim=True)) / torch.sqrt(t.var(-1, unbiased=False, keepdim=True) + norm.eps) \
            * norm.weight + norm.bias

    h = ln(x[0] + mh, mab.norm0)
    expected = ln(h + mab.rff(h), mab.norm1)
    torch.testing.assert_close(mab(x, y)[0], expected, rtol=0, atol=1e-12)
    # one head, written with attend(), equals the explicit softmax
    torch.testing.assert_close(attend(x, y, y), torch.softmax(x @ y.transpose(1, 2) / math.sqrt(8), -1) @ y)


def test_isab_attends_through_its_inducing_points() -> None:
    """ISAB_m(X) = MAB(X, MAB(I, X)): moving I changes the output; so do the seeds S of PMA."""
    s = spec()
    torch.manual_seed(0)
    isab = ISAB(s, 2, 3, place="post").double()
    pma = PMA(s, 2, 1, place="post").double()
    x = rand(2, 5, 8)
    y0, z0 = isab(x), pma(x)
    with torch.no_grad():
        isab.inducing.add_(1.0)
        pma.seeds.add_(1.0)
    assert not torch.allclose(isab(x), y0) and not torch.allclose(pma(x), z0)
    torch.testing.assert_close(isab(x), isab.mab1(x, isab.mab0(isab.inducing.expand(2, -1, -1), x)))


def test_options_are_strict() -> None:
    with pytest.raises(ConfigError, match="Valid: isab, rff, sab"):
        ModelSpec(backbone="set")  # the default mixer, attention, is not a set encoder
    with pytest.raises(ConfigError, match="unknown mixer_options"):
        build_model(spec(mixer_options={"heads": 2}), SetTask())
    with pytest.raises(ConfigError, match=r"does not use mixer_options \['m'\]"):
        build_model(spec(mixer_options={"m": 4}), SetTask())
    with pytest.raises(ConfigError, match=r"does not use mixer_options \['n_heads'\]"):
        build_model(spec(mixer="rff", mixer_options={"n_heads": 2, "pool": "sum"}), SetTask())
    with pytest.raises(ConfigError, match="unknown set pool"):
        build_model(spec(mixer_options={"pool": "median"}), SetTask())
    with pytest.raises(ConfigError, match="norm_place"):
        build_model(spec(norm_place="peri"), SetTask())
    with pytest.raises(ConfigError, match="not a multiple of n_heads"):
        build_model(spec(d_model=9), SetTask())
    assert spec(mixer_options={"n_heads": 4}).width_multiple == 4
    assert spec(mixer="rff", mixer_options={"pool": "sum"}).width_multiple == 1
    model = build_model(spec(), SetTask())
    with pytest.raises(ShapeError, match="F = in_features = 5"):
        model(torch.randn(2, 4, 6))
    with pytest.raises(ConfigError, match="reference"):
        model(torch.randn(2, 4, 5), mode="fast")


def test_backbones_and_input_kinds() -> None:
    assert accepts("set", "set") and not accepts("set", "vector") and not accepts("classifier", "set")

    class VectorTask:
        input_kind, name, input_dim, n_outputs = "vector", "vectors", 4, 2

    with pytest.raises(ConfigError, match="needs a set task.*Use backbone = 'classifier'"):
        build_model(spec(), VectorTask())
    with pytest.raises(ConfigError, match="needs a vector task.*Use backbone = 'set'"):
        build_model(ModelSpec(backbone="classifier", channel="mlp"), SetTask())
    assert spec().label() == "set[sab]"


def test_trains_through_the_one_trainer() -> None:
    from layerlab.train.trainer import Trainer

    run = RunSpec(task=TaskSpec("distinct_digits", {"set_size": 3, "n_eval": 64}),
                  model=spec(d_model=16, n_layers=1),
                  optim=OptimSpec(lr=3e-3), train=TrainSpec(steps=30, batch_size=32, eval_every=0, log_every=10))
    result = Trainer(run).fit()
    assert result.status == "done" and result.n_params == count_parameters(build_model(run.model, Trainer(run).task))
    assert 0.0 <= result.results["test"]["accuracy"] <= 1.0
