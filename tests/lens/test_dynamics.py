"""Checks of layerlab.lens.dynamics against hand computations and closed forms."""
from __future__ import annotations

import math

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch import nn

import layerlab
from layerlab.blocks.mixers.attention import CausalSelfAttention
from layerlab.errors import ConfigError, ShapeError
from layerlab.lens import dynamics
from layerlab.models.sequence import SequenceModel
from layerlab.spec import ModelSpec

DT = torch.float64


def sequence_model(*, rope: bool = False, dropout: float = 0.0, seed: int = 0, **mixer) -> SequenceModel:
    torch.manual_seed(seed)
    spec = ModelSpec(mixer="attention", channel="mlp", d_model=16, n_layers=2,
                     mixer_options={"n_heads": 4, "rope": rope, **mixer},
                     channel_options={"dropout": dropout}, positions="none" if rope else "learned")
    return SequenceModel(spec, vocab_size=11, n_outputs=11, max_length=9).to(DT)


def tokens(seed: int = 0, B: int = 3, L: int = 9) -> torch.Tensor:
    return torch.randint(0, 11, (B, L), generator=torch.Generator().manual_seed(seed))


def hooks_left(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


# --- capture --------------------------------------------------------------------------------

def test_capture_returns_module_outputs_and_inputs():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).to(DT)
    x = torch.randn(5, 3, dtype=DT)
    out = dynamics.capture(net, x, ["0", "2"])
    ins = dynamics.capture(net, x, ["2"], kind="input")
    with torch.no_grad():
        h = net[0](x)
        assert torch.equal(out["0"], h)
        assert torch.equal(ins["2"], torch.relu(h))
        assert torch.equal(out["2"], net(x))
    assert list(dynamics.capture(net, x)) == ["0", "1", "2"]  # default: every leaf module
    shared = nn.Linear(3, 3).to(DT)
    twice = dynamics.capture(nn.Sequential(shared, shared), x, ["0"])  # a module run twice: stacked
    assert twice["0"].shape == (2, 5, 3)
    assert torch.equal(twice["0"][1], shared(shared(x)).detach())
    assert hooks_left(net) == 0


def test_capture_removes_hooks_and_restores_modes_after_an_exception():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).to(DT)
    net.train()
    with pytest.raises(RuntimeError):
        dynamics.capture(net, torch.randn(5, 7, dtype=DT), ["0", "1", "2"])  # wrong input width
    assert hooks_left(net) == 0
    assert all(m.training for m in net.modules())
    with pytest.raises(ConfigError, match="unknown module"):
        dynamics.capture(net, torch.randn(5, 3, dtype=DT), ["3"])
    with pytest.raises(ConfigError, match="capture kind"):
        dynamics.capture(net, torch.randn(5, 3, dtype=DT), ["0"], kind="grad")
    assert hooks_left(net) == 0


# --- gradient and update norms --------------------------------------------------------------

def test_gradient_norms_against_hand_computation():
    model = sequence_model()
    g = torch.Generator().manual_seed(1)
    grads = {}
    for n, p in model.named_parameters():
        if n != "head.bias":  # one parameter without a gradient: skipped
            p.grad = torch.randn(p.shape, generator=g, dtype=DT)
            grads[n] = p.grad.clone()
    per = dynamics.gradient_norms(model)
    assert set(per) == set(grads)
    for n, gr in grads.items():
        assert abs(per[n] - math.sqrt(sum(v * v for v in gr.flatten().tolist()))) <= 1e-12 * (1 + per[n])
    blocks = dynamics.gradient_norms(model, by="block")
    assert list(blocks) == ["embed", "pos", "blocks.0", "blocks.1", "norm", "head"]
    b0 = torch.cat([gr.flatten() for n, gr in grads.items() if n.startswith("blocks.0.")])
    assert abs(blocks["blocks.0"] - b0.norm().item()) <= 1e-12 * blocks["blocks.0"]
    total = dynamics.gradient_norms(model, by="total")["total"]
    assert abs(total - torch.cat([gr.flatten() for gr in grads.values()]).norm().item()) <= 1e-12 * total
    for n, p in model.named_parameters():  # read only
        assert p.grad is None if n == "head.bias" else torch.equal(p.grad, grads[n])


def test_update_norms_and_effective_lr_of_an_sgd_step():
    # SGD: w_{t+1} = w_t - lr g, so ||dw|| = lr ||g|| and eta_eff = lr ||g|| / ||w_t||.
    model = sequence_model()
    lr = 0.05
    loss = model(tokens()).logsumexp(-1).mean()
    loss.backward()
    before = dynamics.snapshot(model)
    g = {n: p.grad.clone() for n, p in model.named_parameters()}
    with torch.no_grad():  # a plain SGD step (torch.optim's first import costs seconds)
        for p in model.parameters():
            p.sub_(lr * p.grad)
    upd = dynamics.update_norms(before, model)
    eff = dynamics.effective_lr(before, model)
    for n in g:
        assert abs(upd[n] - lr * g[n].norm().item()) <= 1e-12 * (1 + upd[n]), n
        if before[n].norm() == 0:  # zero-initialized (head.bias): a relative update is infinite
            assert eff[n] == math.inf and upd[n] > 0
            continue
        assert abs(eff[n] - lr * g[n].norm().item() / before[n].norm().item()) <= 1e-12 * (1 + eff[n]), n
    layer = dynamics.effective_lr(before, model, by="layer")["blocks.1.channel.f.fc1"]
    num = lr * torch.cat([g[f"blocks.1.channel.f.fc1.{k}"].flatten() for k in ("weight", "bias")]).norm()
    den = torch.cat([before[f"blocks.1.channel.f.fc1.{k}"].flatten() for k in ("weight", "bias")]).norm()
    assert abs(layer - (num / den).item()) <= 1e-12 * layer
    zero = nn.Linear(2, 2).to(DT)
    snap = dynamics.snapshot(zero)
    with torch.no_grad():
        zero.bias.zero_()
    snap["bias"] = torch.zeros(2, dtype=DT)
    assert math.isnan(dynamics.effective_lr(snap, zero)["bias"])  # 0 / 0
    with pytest.raises(ConfigError, match="snapshot"):
        dynamics.update_norms({}, zero)


# --- massive activations --------------------------------------------------------------------

def test_massive_activations_on_a_constructed_tensor():
    # 1001 entries: 997 with |a| = 0.1, then 2000 and -150 (both > 100 and >= 1000 x median 0.1),
    # 50 (below 100) and 99.5: median |a| = 0.1, ratio 20000, count 2.
    g = torch.Generator().manual_seed(0)
    a = torch.full((1001,), 0.1, dtype=DT) * torch.where(torch.rand(1001, generator=g) < 0.5, -1, 1)
    a[[10, 500, 700, 900]] = torch.tensor([2000.0, -150.0, 50.0, 99.5], dtype=DT)
    a = a.reshape(7, 11, 13)
    stats = dynamics.massive_activations(a)
    assert stats["median"] == pytest.approx(0.1, rel=1e-15)
    assert stats["max"] == 2000.0 and stats["ratio"] == pytest.approx(20000.0, rel=1e-12)
    assert stats["count"] == 2
    assert a[stats["index"]] == 2000.0
    # raising the median: 150 is no longer >= 1000 x median, 2000 still is
    b = a * 0 + 1.0
    b.view(-1)[[10, 500]] = torch.tensor([2000.0, -150.0], dtype=DT)
    assert dynamics.massive_activations(b)["count"] == 1
    assert dynamics.massive_activations(b, ratio=100.0)["count"] == 2
    # even number of entries: the median is the mean of the two middle magnitudes
    assert dynamics.massive_activations(torch.tensor([1.0, -2.0, 3.0, 40.0]))["median"] == 2.5
    assert set(dynamics.massive_activations({"x": a, "y": b})) == {"x", "y"}


def test_median_against_sorting_with_ties_and_float32():
    g = torch.Generator().manual_seed(3)
    cases = [torch.tensor([1.0, 1.0, 2.0, 5.0]),  # the two middle values tie
             torch.tensor([3.0, 1.0, 1.0, 1.0]),  # the lower middle value fills both places
             torch.tensor([0.0, 0.0]), torch.tensor([7.0]),
             torch.randint(0, 5, (1000,), generator=g).float(),  # many ties, even length
             torch.randn(999, generator=g), torch.randn(1000, generator=g, dtype=DT),
             # large enough for the banded selection: continuous, heavy ties, a spike at the median
             torch.randn(200_001, generator=g).abs(), torch.randint(0, 3, (200_000,), generator=g).float(),
             torch.cat([torch.zeros(100_000), torch.randn(100_000, generator=g).abs() + 1])]
    for x in cases:
        ordered = torch.sort(x.double()).values
        n = len(ordered)
        expected = ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2
        got = dynamics._median(x)
        assert got.dtype == torch.float64 and float(got) == float(expected), (x, got, expected)
    x = torch.randn(300_000, generator=g)
    ordered = torch.sort(x).values
    for k in (1, 2, 1000, 150_000, 299_999, 300_000):  # the band at default sizes, and its ends
        assert float(dynamics._kth(x, k)) == float(ordered[k - 1])
        assert torch.equal(dynamics._kth(x, k, count=3), ordered[k - 1: k + 2])  # up to the end at the top


@pytest.mark.parametrize("sample", [64, 1])
def test_banded_selection_equals_kthvalue_at_every_rank(sample):
    # the banded `_kth` against the plain `torch.kthvalue` form at every rank of a tensor with
    # heavy ties and a run of equal values, the band forced on (band_above=0); a one-entry sample
    # gives a band that almost never holds the rank, so the fallback is checked as well
    g = torch.Generator().manual_seed(5)
    x = torch.cat([torch.randint(0, 40, (1200,), generator=g).float() / 4, torch.full((300,), 2.5),
                   torch.randn(500, generator=g)])[torch.randperm(2000, generator=g)]
    for k in range(1, x.numel() + 1):
        plain = dynamics._kth_plain(x, k, count=2)
        fast = dynamics._kth(x, k, count=2, band_above=0, sample=sample)
        assert torch.equal(fast, plain), (k, fast, plain)
        assert torch.equal(dynamics._kth(x, k, band_above=0, sample=sample), plain[0])
    assert torch.equal(dynamics._kth_plain(x, 1999, count=5), torch.sort(x).values[1998:])  # the top end


def test_unravel_equals_torch_unravel_index():
    for shape in [(7,), (3, 5), (2, 3, 4), (1, 6, 1, 5)]:
        n = math.prod(shape)
        for flat in range(n):
            expected = tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), shape))
            assert dynamics._unravel(flat, shape) == expected


def test_capture_with_a_kind_per_module_equals_separate_captures():
    model, t = sequence_model(), tokens()
    kinds = {"blocks.0": "output", "blocks.1.mixer": "input", "blocks.1": "output"}
    together = dynamics.capture(model, t, kind=kinds)
    assert list(together) == list(kinds)
    for name, kind in kinds.items():
        assert torch.equal(together[name], dynamics.capture(model, t, [name], kind=kind)[name])
    with pytest.raises(layerlab.errors.UnknownNameError):
        dynamics.capture(model, t, kind={"blocks.0": "outputs"})


def test_packing_and_pattern_counting_equal_their_plain_forms():
    # the bit-plane OR packing against the weighted sum, for bytes and 63-bit words, unit counts
    # that are and are not whole words, bool input viewed as bytes; the byte-packed count against
    # torch.unique on the unpacked rows
    g = torch.Generator().manual_seed(2)
    for U in (1, 7, 8, 16, 63, 64, 100, 130):
        bits = torch.rand(50, U, generator=g) > 0.5
        bits = torch.cat([bits, bits[:10]])  # repeated rows
        for width, dtype in ((8, torch.uint8), (63, torch.int64)):
            assert torch.equal(dynamics._pack(bits, width, dtype), dynamics._pack_plain(bits, width, dtype)), (U, width)
        blocks = [bits[:, : U // 2], bits[:, U // 2:]] if U > 1 else [bits]
        assert dynamics._count_patterns(blocks) == dynamics._count_patterns_plain(blocks) == \
            len({tuple(r) for r in bits.tolist()})
    few = torch.zeros(30, 12, dtype=torch.bool)
    few[10:, 3] = True  # two patterns among 30 rows
    assert dynamics._count_patterns([few[:, :5], few[:, 5:]]) == dynamics._count_patterns_plain([few]) == 2


def test_activation_patterns_count_equals_the_distinct_int64_codes():
    # byte-packed rows against the documented 63-bit codes, for unit counts that are not
    # multiples of 8 or 63, with repeated points among the data
    for hidden in (5, 63, 100):
        torch.manual_seed(hidden)
        net = nn.Sequential(nn.Linear(3, hidden), nn.ReLU(), nn.Linear(hidden, 7), nn.ReLU())
        x = torch.randn(40, 3)
        x = torch.cat([x, x[:9]])  # 9 repeats
        codes = dynamics.activation_codes(net, x)
        assert dynamics.activation_patterns(net, x) == torch.unique(codes, dim=0).shape[0]
        pre = dynamics.capture(net, x, dynamics.threshold_modules(net), kind="input")
        assert dynamics.activation_patterns(None, None, preactivations=pre) == torch.unique(codes, dim=0).shape[0]
        assert torch.equal(dynamics.activation_codes(None, None, preactivations=pre), codes)


def test_block_massive_activations_reads_the_residual_stream():
    model = sequence_model()
    with torch.no_grad():
        model.embed.weight[3, 5] = 5000.0  # a planted massive activation in the stream
    t = tokens()
    t[t == 3] = 4
    t[1, 4] = 3  # the only position that carries the planted value
    stats = dynamics.block_massive_activations(model, t)
    assert list(stats) == ["blocks.0", "blocks.1"]
    # the residual stream by hand; instruments run attention on its math backend (as here), which
    # rounds differently from the fused kernel by ~1e-16
    with torch.no_grad(), sdpa_kernel([SDPBackend.MATH]):
        x = model.embed(t) + model.pos(torch.arange(t.shape[1]))
        for i, block in enumerate(model.blocks):
            x = block(x)
            mag = x.abs().flatten()
            assert stats[f"blocks.{i}"]["max"] == mag.max().item()
            srt = mag.sort().values  # an even count (3 x 9 x 16): the mean of the middle two
            assert stats[f"blocks.{i}"]["median"] == ((srt[215] + srt[216]) / 2).item()
    assert stats["blocks.1"]["index"][:2] == (1, 4) and stats["blocks.1"]["count"] >= 1
    with pytest.raises(ConfigError, match="blocks"):
        dynamics.block_massive_activations(nn.Linear(2, 2), torch.zeros(1, 2))


# --- attention entropy ----------------------------------------------------------------------

@pytest.mark.parametrize("options", [{}, {"rope": True}, {"rope": True, "rope_fraction": 0.5}])
def test_attention_probs_reproduce_the_reference_mixer_output(options):
    model = sequence_model(**options)
    mixers = {n: m for n, m in model.named_modules() if isinstance(m, CausalSelfAttention)}
    assert list(mixers) == ["blocks.0.mixer.f", "blocks.1.mixer.f"]
    inputs = dynamics.capture(model, tokens(), list(mixers), kind="input")
    with torch.no_grad():
        for n, m in mixers.items():
            x = inputs[n]
            B, L, D = x.shape
            p = dynamics.attention_probs(m, x)
            assert p.shape == (B, 4, L, L) and p.dtype == DT
            v = m.w_qkv(x).view(B, L, 3, 4, 4)[:, :, 2].transpose(1, 2)  # (B, h, L, d_h)
            y = m.w_o((p @ v).transpose(1, 2).reshape(B, L, D))
            ref = m(x, mode="reference")
            assert (y - ref).abs().max() <= 1e-10 * ref.abs().max()
            assert (y - m(x)).abs().max() <= 1e-10 * ref.abs().max()  # the sdpa form too
            assert torch.allclose(p.sum(-1), torch.ones(B, 4, L, dtype=DT), atol=1e-14)
            assert (p.triu(diagonal=1) == 0).all()


def test_attention_entropy_of_uniform_attention_is_log_t_plus_1():
    model = sequence_model(rope=True)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, CausalSelfAttention):
                m.w_qkv.weight[: 2 * m.d_model] = 0.0  # W^Q = W^K = 0: all scores 0, uniform rows
    L = 9
    expected = torch.log(torch.arange(1, L + 1, dtype=DT))
    per_pos = dynamics.attention_entropy(model, tokens(L=L), reduce="position")
    for n, ent in per_pos.items():
        assert ent.shape == (4, L)
        assert (ent - expected).abs().max() <= 1e-12, (n, (ent - expected).abs().max())
    mean = dynamics.attention_entropy(model, tokens(L=L))
    assert all((e - expected.mean()).abs().max() <= 1e-12 for e in mean.values())


def test_attention_entropy_against_the_explicit_sum():
    model = sequence_model()
    t = tokens(seed=2)
    ents = dynamics.attention_entropy(model, t, reduce="none")
    mean = dynamics.attention_entropy(model, t)
    inputs = dynamics.capture(model, t, list(ents), kind="input")
    mods = dict(model.named_modules())
    for n, ent in ents.items():
        p = dynamics.attention_probs(mods[n], inputs[n]).detach()
        B, h, L, _ = p.shape
        ref = torch.zeros(B, h, L, dtype=DT)
        for s in range(L):  # reference: sum over the visible keys only
            ps = p[..., s:, s]
            ref[..., s:] -= ps * ps.log()
        assert (ent - ref).abs().max() <= 1e-12
        assert (mean[n] - ref.mean(dim=(0, 2))).abs().max() <= 1e-12
        assert (ent >= -1e-15).all() and (ent <= torch.log(torch.arange(1, L + 1, dtype=DT)) + 1e-12).all()
        assert ent.std() > 1e-3  # not uniform: the check above is not a degenerate case
    with pytest.raises(ConfigError, match="reduction"):
        dynamics.attention_entropy(model, t, reduce="sum")
    with pytest.raises(ConfigError, match="attention_probabilities"):
        dynamics.attention_entropy(nn.Linear(2, 2), torch.zeros(1, 2))


class UniformAttention(nn.Module):
    """A stand-in attention module: no layerlab class, only the method the lens looks for
    (uniform causal weights over h heads) and an identity forward."""

    def __init__(self, heads: int = 2) -> None:
        super().__init__()
        self.heads = heads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def attention_probabilities(self, x: torch.Tensor) -> torch.Tensor:
        B, L, _ = x.shape
        causal = torch.ones(L, L, dtype=x.dtype).tril()
        return (causal / causal.sum(-1, keepdim=True)).expand(B, self.heads, L, L)


def test_attention_modules_are_found_by_their_attention_probabilities_method():
    model = nn.Sequential(nn.Linear(3, 4), UniformAttention(), nn.Linear(4, 4), UniformAttention(heads=3))
    assert dynamics.attention_modules(model) == ["1", "3"]
    x = torch.randn(2, 6, 3, dtype=DT)
    ent = dynamics.attention_entropy(model.to(DT), x, reduce="position")
    expected = torch.log(torch.arange(1, 7, dtype=DT))
    assert ent["1"].shape == (2, 6) and ent["3"].shape == (3, 6)
    assert all((e - expected).abs().max() <= 1e-12 for e in ent.values())
    # the real attention mixer is found the same way
    assert dynamics.attention_modules(sequence_model()) == ["blocks.0.mixer.f", "blocks.1.mixer.f"]

    class Wrong(UniformAttention):
        def attention_probabilities(self, x: torch.Tensor) -> torch.Tensor:
            return super().attention_probabilities(x)[..., :-1]  # not (B, h, L, L)

    with pytest.raises(ShapeError, match=r"\(B, h, L, L\)"):
        dynamics.attention_entropy(nn.Sequential(Wrong()), x)
    with pytest.raises(ConfigError, match="attention_probabilities"):
        dynamics.attention_probs(nn.Linear(3, 3), x)


class Rectifier(nn.Module):
    """A stand-in registered activation: only the class attribute ``layerlab.register`` sets."""

    registry_kind = "activation"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.clamp_min(0)


def test_activation_units_are_torch_rectifiers_and_registered_activations():
    net = nn.Sequential(nn.Linear(2, 5), Rectifier(), nn.Linear(5, 5), nn.SiLU(), nn.Linear(5, 5), nn.Tanh(),
                        nn.Linear(5, 3), nn.Softmax(-1))
    assert dynamics.threshold_modules(net) == ["1", "3"]  # not Tanh, not Softmax, not Linear
    assert all(dynamics.is_activation_unit(m) for m in (nn.ReLU(), nn.GELU(), nn.LeakyReLU(), nn.ELU()))
    assert dynamics.threshold_modules(layerlab.build("channel", "mlp", 4, hidden=6, activation="gelu")) == ["act"]
    x = torch.randn(64, 2)
    with torch.no_grad():
        z1 = net[0](x)
        z2 = net[2](net[1](z1))
    expected = len({tuple(r) for r in torch.cat((z1 > 0, z2 > 0), 1).tolist()})
    assert dynamics.activation_patterns(net, x) == expected


def test_no_lens_module_imports_the_blocks():
    # the lens finds blocks by what they expose (DESIGN.md); an import of layerlab.blocks would fail here
    import ast
    from pathlib import Path

    root = Path(dynamics.__file__).parent
    bad = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                target = node.module or ""
                if node.level:  # relative: resolve against layerlab.lens[.sub]
                    package = ["layerlab", "lens", *path.relative_to(root).parts[:-1]]
                    target = ".".join(package[: len(package) - node.level + 1] + ([target] if target else []))
                names = [target] + [f"{target}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            bad += [f"{path.name}:{node.lineno}" for n in names if n == "layerlab.blocks" or n.startswith("layerlab.blocks.")]
    assert not bad, bad


# --- activation patterns --------------------------------------------------------------------

def test_activation_patterns_of_a_one_hidden_layer_relu_net_on_a_line():
    # Unit i is on for w_i x + b_i > 0: its pattern changes only at the kink x = -b_i / w_i, so
    # the patterns on [lo, hi] are 1 + (number of distinct kinks inside) (each interval between
    # kinks has its own pattern: the unit whose kink separates two intervals differs).
    torch.manual_seed(0)
    m = 12
    net = nn.Sequential(nn.Linear(1, m), nn.ReLU(), nn.Linear(m, 1)).to(DT)
    with torch.no_grad():
        net[0].weight[1] = 2.0 * net[0].weight[0]  # same kink as unit 0, same orientation
        net[0].bias[1] = 2.0 * net[0].bias[0]
        net[0].weight[2] = -net[0].weight[0]  # same kink as unit 0, opposite orientation
        net[0].bias[2] = -net[0].bias[0]
        net[0].bias[3] = -5.0 * net[0].weight[3, 0]  # kink at x = 5, outside the grid
    lo, hi, n = -3.0, 3.0, 60001
    x = torch.linspace(lo, hi, n, dtype=DT)[:, None]
    kinks = torch.unique(-net[0].bias.detach() / net[0].weight.detach()[:, 0])
    inside = kinks[(kinks > lo) & (kinks < hi)]
    spacing = (hi - lo) / (n - 1)
    assert torch.diff(torch.cat((torch.tensor([lo], dtype=DT), inside, torch.tensor([hi], dtype=DT)))).min() > 2 * spacing
    assert len(inside) < m - 1  # the duplicated and the outside kinks are really excluded
    assert dynamics.activation_patterns(net, x) == 1 + len(inside)


def test_activation_codes_against_unpacked_bits_and_a_set_of_tuples():
    torch.manual_seed(1)
    width = 100  # two packed words per pattern
    net = nn.Sequential(nn.Linear(2, width), nn.ReLU(), nn.Linear(width, width), nn.GELU(),
                        nn.Linear(width, 1)).to(DT)
    x = torch.randn(400, 2, dtype=DT) * 0.3
    codes = dynamics.activation_codes(net, x)
    assert codes.shape == (400, 4) and codes.dtype == torch.int64 and (codes >= 0).all()
    with torch.no_grad():
        z1 = net[0](x)
        z2 = net[2](torch.relu(z1))
    bits = torch.cat((z1 > 0, z2 > 0), dim=1)  # (400, 200)
    unpacked = torch.cat([(codes[:, w:w + 1] >> torch.arange(63)) & 1 for w in range(4)], dim=1)[:, :200]
    assert torch.equal(unpacked.bool(), bits)
    reference = len({tuple(row) for row in bits.tolist()})
    assert dynamics.activation_patterns(net, x) == reference
    assert 1 < reference < 400  # neither trivial nor one pattern per point
    only_first = dynamics.activation_patterns(net, x, modules=["1"])
    assert only_first == len({tuple(row) for row in (z1 > 0).tolist()})


def test_activation_patterns_find_layerlab_activations():
    torch.manual_seed(0)
    mlp = layerlab.build("channel", "mlp", 4, hidden=6, activation="relu").to(DT)
    x = torch.randn(50, 4, dtype=DT)
    with torch.no_grad():
        expected = len({tuple(r) for r in (mlp.fc1(x) > 0).tolist()})
    assert dynamics.activation_patterns(mlp, x) == expected
    with pytest.raises(ConfigError, match="activation unit"):
        dynamics.activation_patterns(nn.Linear(2, 2), torch.zeros(3, 2))
    with pytest.raises(ShapeError):
        dynamics.attention_probs(sequence_model().blocks[0].mixer.f, torch.zeros(2, 3, 5, dtype=DT))


# --- side effects ---------------------------------------------------------------------------

def test_side_effect_free():
    model = sequence_model(dropout=0.3)
    model.train()
    model.blocks[1].eval()
    model(tokens()).sum().backward()
    params = {n: p.detach().clone() for n, p in model.named_parameters()}
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    grad_objects = [p.grad for p in model.parameters()]
    modes = [m.training for m in model.modules()]
    rng = torch.get_rng_state()
    t = tokens()
    dynamics.capture(model, t)
    dynamics.gradient_norms(model, by="block")
    dynamics.block_massive_activations(model, t)
    dynamics.attention_entropy(model, t)
    dynamics.activation_patterns(model, t)
    dynamics.effective_lr(dynamics.snapshot(model), model)
    assert torch.equal(torch.get_rng_state(), rng)
    assert [m.training for m in model.modules()] == modes
    assert all(g is p.grad for g, p in zip(grad_objects, model.parameters()))
    for n, p in model.named_parameters():
        assert torch.equal(p, params[n]) and torch.equal(p.grad, grads[n])
    assert hooks_left(model) == 0
