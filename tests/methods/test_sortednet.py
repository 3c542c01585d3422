"""SortedNet: a prefix sub-model is the smaller model, sub-model gradients accumulate, resume is exact."""
import dataclasses

import pytest
import torch
import torch.nn.functional as F

from layerlab.errors import ConfigError
from layerlab.methods import RunContext, build_method
from layerlab.methods.sortednet import forward_at_width, prefix_width
from layerlab.models import Classifier
from layerlab.spec import MethodSpec, ModelSpec, OptimSpec, RunSpec, TaskSpec, TrainSpec
from layerlab.tasks.base import Batch
from layerlab.train import MemoryRecorder, Trainer
from tests.conftest import kill_and_resume


def spec(channel="mlp", d=8, hidden=12, layers=2, **options):
    opts = {"hidden": hidden, **options}
    return ModelSpec(backbone="classifier", channel=channel, d_model=d, n_layers=layers, channel_options=opts)


def model(channel="mlp", hidden=12, dtype=torch.float64, seed=0, **options):
    torch.manual_seed(seed)
    return Classifier(spec(channel, hidden=hidden, **options), in_features=5, n_classes=3).to(dtype)


def copied_small(big: torch.nn.Module, channel: str, k: int, **options) -> torch.nn.Module:
    """A separately built model of hidden width k holding copies of the big model's prefix weights."""
    small = model(channel, hidden=k, seed=1, **options)
    big_sd, small_sd = big.state_dict(), small.state_dict()
    for name, t in small_sd.items():
        src = big_sd[name]
        t.copy_(src[tuple(slice(0, n) for n in t.shape)])  # rows :k, columns :k, or all
    small.load_state_dict(small_sd)
    return small


def run_ctx(dtype=torch.float64, seed=0):
    return RunContext(seed=seed, steps=10, device=torch.device("cpu"), dtype=dtype,
                      loss=lambda out, b: F.cross_entropy(out, b.targets), input_kind="vector", n_outputs=3)


def attached(m, seed=0, **options):
    method = build_method("sortednet", **options)
    method.attach(run_ctx(seed=seed), 0)
    method.setup(m, run_ctx(seed=seed))
    return method


@pytest.mark.parametrize("channel,options", [("mlp", {}), ("mlp", {"activation": "relu"}), ("swiglu", {"bias": True})])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_prefix_sub_model_is_exactly_the_smaller_model_with_copied_weights(channel, options, dtype):
    big = model(channel, dtype=dtype, **options).eval()
    x = torch.randn(7, 5, dtype=dtype)
    for fraction in (0.1, 0.25, 0.5, 0.75):
        k = prefix_width(12, fraction)
        small = copied_small(big, channel, k, **options).to(dtype).eval()
        assert small.layers[0].f.hidden == k < 12
        assert torch.equal(forward_at_width(big, x, fraction), small(x))  # bitwise: the same computation
    assert torch.equal(forward_at_width(big, x, 1.0), big(x))


def test_prefix_widths_round_and_keep_at_least_one_unit():
    assert [prefix_width(12, f) for f in (0.01, 0.25, 0.5, 0.75, 1.0)] == [1, 3, 6, 9, 12]


def test_eval_width_evaluates_the_prefix_and_leaves_training_untouched():
    big = model()
    reference = model()
    x = torch.randn(6, 5, dtype=torch.float64)
    attached(big, eval_width=0.25)
    small = copied_small(big, "mlp", 3).eval()
    big.eval()
    torch.testing.assert_close(big(x), small(x), rtol=1e-12, atol=1e-12)
    assert not torch.allclose(big(x), reference.eval()(x))  # the truncation changed the output
    big.train(), reference.train()
    assert torch.equal(big(x), reference(x))  # training mode sees the full model


def test_gradients_accumulate_over_the_sampled_sub_models():
    big = model()
    method = attached(big, widths=[0.25, 0.5], samples=3)
    x, y = torch.randn(9, 5, dtype=torch.float64), torch.randint(0, 3, (9,))
    batch = Batch(x, y)
    out = big(x)
    loss = method.transform_loss(F.cross_entropy(out, y), out, batch, 0)
    widths = method.last_widths
    assert len(widths) == 3 and set(widths) <= {0.25, 0.5}
    loss.backward()
    got = {n: p.grad.clone() for n, p in big.named_parameters()}

    # accumulate by hand: the full model's gradient plus each sub-model's, computed on a separate small model
    expected = {n: torch.zeros_like(p) for n, p in big.named_parameters()}
    big.zero_grad()
    F.cross_entropy(big(x), y).backward()
    for n, p in big.named_parameters():
        expected[n] += p.grad
    for w in widths:
        small = copied_small(big, "mlp", prefix_width(12, w))
        F.cross_entropy(small(x), y).backward()
        for n, p in small.named_parameters():
            expected[n][tuple(slice(0, s) for s in p.shape)] += p.grad
    for n in got:
        torch.testing.assert_close(got[n], expected[n], rtol=1e-10, atol=1e-12, msg=n)
    # the units beyond the widest sampled prefix learn only from the full model
    k = prefix_width(12, max(widths))
    big.zero_grad()
    F.cross_entropy(big(x), y).backward()
    assert torch.equal(got["layers.0.f.fc1.weight"][k:], big.layers[0].f.fc1.weight.grad[k:])
    assert not torch.equal(got["layers.0.f.fc1.weight"][:k], big.layers[0].f.fc1.weight.grad[:k])


def test_widths_are_drawn_uniformly_from_the_methods_generator():
    m = attached(model(), widths=[0.25, 0.5, 0.75], samples=4)
    draws = [w for _ in range(600) for w in m.draw()]
    counts = [draws.count(w) for w in (0.25, 0.5, 0.75)]
    assert all(700 < c < 900 for c in counts), counts  # 800 expected each, sd ~23
    a, b = attached(model(), samples=4), attached(model(), seed=5, samples=4)
    b.load_state_dict(a.state_dict())
    assert a.draw() == b.draw()


def test_samples_zero_returns_the_loss_unchanged():
    m = attached(model(), samples=0)
    loss = torch.tensor(1.5, dtype=torch.float64)
    x = torch.randn(2, 5, dtype=torch.float64)
    assert m.transform_loss(loss, None, Batch(x, torch.zeros(2, dtype=torch.long)), 0) is loss


@pytest.mark.parametrize("options,match", [
    ({"widths": []}, "non-empty list"), ({"widths": [0.5, 1.5]}, r"in \(0, 1\]"), ({"widths": "0.5"}, "list"),
    ({"samples": -1}, "samples"), ({"samples": 1.5}, "samples"), ({"eval_width": 0}, "eval_width"),
    ({"eval_width": True}, "eval_width")])
def test_bad_options_are_clear_errors(options, match):
    with pytest.raises(ConfigError, match=match):
        build_method("sortednet", **options)


def test_a_model_without_sortable_mlps_is_refused():
    kan = Classifier(ModelSpec(backbone="classifier", channel="kan", d_model=8, n_layers=1), in_features=5, n_classes=3)
    with pytest.raises(ConfigError, match="has none; use channel = 'mlp' or 'swiglu'"):
        attached(kan)
    with pytest.raises(ConfigError, match="parameter-free activation"):
        attached(model(activation="polyrelu", dtype=torch.float32))


# ---- through the one Trainer ---------------------------------------------------------------------
def digits_spec(*methods) -> RunSpec:
    return RunSpec(task=TaskSpec("digits"),
                   model=ModelSpec(backbone="classifier", channel="mlp", d_model=16, n_layers=1),
                   optim=OptimSpec(lr=3e-3, warmup_steps=5),
                   train=TrainSpec(steps=60, batch_size=32, eval_every=20, log_every=1),
                   methods=tuple(methods), seed=3)


def losses(rec: MemoryRecorder) -> list[float]:
    return [v for _, v in rec.series("train", "loss")]


def fit(spec, **kw):
    rec = MemoryRecorder()
    result = Trainer(spec, recorder=rec, **kw).fit()
    return rec, result


def test_sortednet_trains_through_the_trainer_and_resumes_after_a_kill_identically(tmp_path):
    spec = digits_spec(MethodSpec("sortednet", {"widths": [0.25, 0.5], "samples": 2}))
    ref, _ = fit(spec)
    plain, _ = fit(digits_spec())
    assert losses(ref) != losses(plain)
    rec, saved = kill_and_resume(spec, tmp_path / "run.pt", kill_at=47)
    assert saved["step"] == 40
    assert losses(rec) == losses(ref)
    assert [s for s, _ in rec.series("train", "loss")] == list(range(1, 61))


def test_samples_zero_trains_bit_identically_to_plain_and_eval_width_truncates_only_evaluation():
    plain_rec, plain = fit(digits_spec())
    trunc_rec, trunc = fit(digits_spec(MethodSpec("sortednet", {"samples": 0, "eval_width": 0.25})))
    assert losses(trunc_rec) == losses(plain_rec)
    assert trunc.results["test"]["accuracy"] != plain.results["test"]["accuracy"]
    full_rec, full = fit(digits_spec(MethodSpec("sortednet", {"samples": 0, "eval_width": 1.0})))
    assert full.results["test"] == plain.results["test"]
