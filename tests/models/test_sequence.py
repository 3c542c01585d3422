"""The sequence backbone: shapes, norm placements, block init kept, causality, modes, limits."""
from types import SimpleNamespace

import pytest
import torch

from layerlab.blocks.channels import MLP, SwiGLU
from layerlab.blocks.mixers import CausalSelfAttention
from layerlab.blocks.norms import LayerNorm, RMSNorm
from layerlab.errors import ConfigError, ShapeError
from layerlab.models import build_model
from layerlab.models.classifier import Classifier
from layerlab.models.deep_linear import DeepLinear
from layerlab.models.sequence import Residual, SequenceModel
from layerlab.spec import ModelSpec

PLACES = ("pre", "post", "peri")
V, N_OUT, MAX_L = 11, 7, 16


def model(seed=0, **spec):
    torch.manual_seed(seed)
    spec = {"d_model": 16, "n_layers": 2, "mixer_options": {"n_heads": 4}} | spec
    return SequenceModel(ModelSpec(**spec), vocab_size=V, n_outputs=N_OUT, max_length=MAX_L)


def tokens(B=3, L=MAX_L, seed=1):
    return torch.randint(0, V, (B, L), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("channel", ["mlp", "swiglu"])
@pytest.mark.parametrize("norm", ["rmsnorm", "layernorm"])
@pytest.mark.parametrize("place", PLACES)
def test_logits_shape(place, norm, channel):
    m = model(norm_place=place, norm=norm, channel=channel)
    for L in (1, 5, MAX_L):
        out = m(tokens(L=L))
        assert out.shape == (3, L, N_OUT) and torch.isfinite(out).all()


def test_placements_differ_as_functions():
    """Same seed: identical embeddings, mixers and channels (norms draw nothing) — only the
    placement differs, and the outputs do."""
    x = tokens()
    outs = {p: model(seed=0, norm_place=p)(x) for p in PLACES}
    assert torch.equal(model(seed=0, norm_place="pre").embed.weight, model(seed=0, norm_place="peri").embed.weight)
    for a, b in (("pre", "post"), ("pre", "peri"), ("post", "peri")):
        assert not torch.allclose(outs[a], outs[b], atol=1e-3), (a, b)


@pytest.mark.parametrize("place", PLACES)
def test_residual_computes_its_placement(place):
    torch.manual_seed(2)
    f = MLP(8, dtype=torch.float64)
    r = Residual(f, place=place, make_norm=lambda: LayerNorm(8, dtype=torch.float64))
    with torch.no_grad():  # distinct norms, so a swapped norm would show
        for p in r.parameters():
            p.add_(0.3 * torch.randn_like(p))
    x = 2 * torch.randn(4, 8, dtype=torch.float64)
    expected = {
        "pre": lambda: x + f(r.norm_in(x)),
        "post": lambda: r.norm_post(x + f(x)),
        "peri": lambda: x + r.norm_out(f(r.norm_in(x))),
    }[place]()
    torch.testing.assert_close(r(x), expected, rtol=0, atol=0)
    present = {n for n in ("norm_in", "norm_out", "norm_post") if getattr(r, n) is not None}
    assert present == {"pre": {"norm_in"}, "post": {"norm_post"}, "peri": {"norm_in", "norm_out"}}[place]
    with pytest.raises(ConfigError, match="did you mean 'peri'"):
        Residual(f, place="perri", make_norm=lambda: LayerNorm(8))


def _sublayer_io(m):
    """(input, output) of every Residual of `m` in one forward."""
    seen = []
    hooks = [mod.register_forward_hook(lambda mod, args, out: seen.append((args[0], out)))
             for mod in m.modules() if isinstance(mod, Residual)]
    m(tokens())
    for h in hooks:
        h.remove()
    return seen


# eps = 1e-12: at init the residual stream (embeddings of std 0.02) and the block outputs are
# small, where RMSNorm's default eps = 1e-6 visibly moves the RMS off 1 (sqrt(ms / (ms + eps))).
EXACT_RMS = {"norm": "rmsnorm", "norm_options": {"eps": 1e-12}, "n_layers": 3}


def test_post_normalizes_every_sublayer_output():
    m = model(norm_place="post", **EXACT_RMS)
    io = _sublayer_io(m)
    assert len(io) == 6
    for _, out in io:
        assert (out.pow(2).mean(-1).sqrt() - 1).abs().max() <= 1e-5
    assert isinstance(m.norm, torch.nn.Identity)


def test_peri_normalizes_every_increment_and_pre_does_not():
    io = _sublayer_io(model(norm_place="peri", **EXACT_RMS))
    assert len(io) == 6
    for x, out in io:
        assert ((out - x).pow(2).mean(-1).sqrt() - 1).abs().max() <= 1e-5
    io = _sublayer_io(model(norm_place="pre", **EXACT_RMS))
    assert max(((out - x).pow(2).mean(-1).sqrt() - 1).abs().max() for x, out in io) > 0.5


def test_final_norm_only_for_pre_and_peri():
    assert isinstance(model(norm_place="pre").norm, RMSNorm)
    assert isinstance(model(norm_place="peri").norm, RMSNorm)
    assert isinstance(model(norm_place="post").norm, torch.nn.Identity)


SENTINEL = {CausalSelfAttention: 0.125, MLP: -0.25, SwiGLU: 0.375, RMSNorm: 1.5}


@pytest.mark.parametrize("channel", ["mlp", "swiglu"])
@pytest.mark.parametrize("place", PLACES)
def test_backbone_keeps_block_initialization(monkeypatch, place, channel):
    for cls, value in SENTINEL.items():
        def fill(self, value=value):
            with torch.no_grad():
                for p in self.parameters():
                    p.fill_(value)
        monkeypatch.setattr(cls, "reset_parameters", fill)
    m = model(norm_place=place, channel=channel)
    n_checked = 0
    for mod in m.modules():
        if type(mod) in SENTINEL:
            for p in mod.parameters(recurse=False) if type(mod) is RMSNorm else mod.parameters():
                assert torch.all(p == SENTINEL[type(mod)]), f"{type(mod).__name__} re-initialized"
                n_checked += 1
    assert n_checked > 0
    # the backbone did initialize its own parts
    assert abs(m.embed.weight.std().item() - 1.0) < 0.25
    assert abs(m.head.weight.std().item() - 0.02) < 0.01 and torch.count_nonzero(m.head.bias) == 0


@pytest.mark.parametrize("place", PLACES)
def test_model_is_causal(place):
    m = model(norm_place=place)
    x = tokens(B=2)
    y = m(x)
    for t in (0, 6, MAX_L - 1):
        x2 = x.clone()
        x2[:, t] = (x2[:, t] + 1) % V
        y2 = m(x2)
        assert torch.equal(y2[:, :t], y[:, :t]), f"logits before {t} changed"
        assert not torch.equal(y2[:, t], y[:, t])


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-4)], ids=["f64", "f32"])
@pytest.mark.parametrize("place", PLACES)
def test_reference_mode_agrees_with_default(place, dtype, tol):
    m = model(norm_place=place).to(dtype)
    x = tokens()
    fast, ref = m(x), m(x, mode="reference")
    assert ((fast - ref).norm() / ref.norm()).item() <= tol
    with pytest.raises(ConfigError, match="sdpa"):
        m(x, mode="scan")


def test_input_checks():
    m = model()
    with pytest.raises(ShapeError, match="max_length 16"):
        m(tokens(L=MAX_L + 1))
    with pytest.raises(ShapeError, match="integer tokens"):
        m(torch.zeros(2, 4))
    with pytest.raises(ShapeError):
        m(tokens()[0])
    # without learned positions nothing limits the length (length-extrapolation tasks)
    m = model(positions="none")
    assert m.pos is None and m(tokens(L=2 * MAX_L)).shape == (3, 2 * MAX_L, N_OUT)


def test_block_options_reach_the_blocks():
    m = model(d_model=24, mixer_options={"n_heads": 2}, channel_options={"expansion": 2.0},
              norm="layernorm", norm_options={"eps": 1e-3})
    assert m.blocks[0].mixer.f.n_heads == 2
    assert m.blocks[1].channel.f.hidden == 48
    assert m.blocks[0].mixer.norm_in.eps == 1e-3 and m.norm.eps == 1e-3
    assert len(m.blocks) == 2
    with pytest.raises(ConfigError, match="n_heads"):
        model(mixer_options={"heads": 2})


def test_build_model_dispatch():
    tok = SimpleNamespace(name="tok", input_kind="tokens", vocab_size=V, n_outputs=N_OUT, max_length=MAX_L)
    vec = SimpleNamespace(name="vec", input_kind="vector", input_dim=6, n_outputs=3)
    assert isinstance(build_model(ModelSpec(d_model=16), tok), SequenceModel)
    assert isinstance(build_model(ModelSpec(backbone="classifier", d_model=16), vec), Classifier)
    dl = build_model(ModelSpec(backbone="deep_linear", d_model=8, n_layers=3), vec)
    assert isinstance(dl, DeepLinear) and dl.depth == 3 and dl.width == 8
    with pytest.raises(ConfigError, match="classifier"):
        build_model(ModelSpec(), vec)
    with pytest.raises(ConfigError):
        build_model(ModelSpec(backbone="classifier"), tok)


def test_trains():
    """A few steps of Adam lower the loss of predicting the previous token."""
    m = model(n_layers=1)
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    x = tokens(B=16)
    target = torch.roll(x, 1, dims=1) % N_OUT
    losses = []
    for _ in range(30):
        loss = torch.nn.functional.cross_entropy(m(x)[:, 1:].reshape(-1, N_OUT), target[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
