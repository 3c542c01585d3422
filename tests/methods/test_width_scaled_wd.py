"""Width-scaled AdamW (Fan et al. 2025, arXiv:2510.15262): per-group lr and wd against the rule."""
import math

import pytest
import torch
import torch.nn.functional as F

from layerlab.errors import ConfigError
from layerlab.methods import build_method
from layerlab.methods.width_scaled_wd import LayerwiseAdamW
from layerlab.models import Classifier
from layerlab.spec import MethodSpec, ModelSpec, OptimSpec, RunSpec, TaskSpec, TrainSpec
from layerlab.train import MemoryRecorder, Trainer
from layerlab.train.optim import build_optimizer
from tests.conftest import kill_and_resume


def _classifier(d):
    torch.manual_seed(0)
    return Classifier(ModelSpec(backbone="classifier", channel="mlp", d_model=d), in_features=64, n_classes=10)


def _optimizer(model, base_width=64, lr=2e-3, wd=0.1, **options):
    method = build_method("width_scaled_wd", base_width=base_width, **options)
    return method.make_optimizer(model, lambda: build_optimizer(model, OptimSpec(lr=lr, weight_decay=wd)))


@pytest.mark.parametrize("d", [64, 256])
def test_groups_follow_the_rule_at_two_widths(d):
    model = _classifier(d)
    opt = _optimizer(model)
    groups = {g["name"]: g for g in opt.param_groups}
    m = d / 64
    assert groups["matrix"]["lr_scale"] == pytest.approx(1 / m, rel=1e-15)          # eta_2 = eta d0/d
    assert groups["matrix"]["weight_decay"] == pytest.approx(0.1 * math.sqrt(m), rel=1e-15)  # lambda_2 = lambda sqrt(d/d0)
    assert groups["vector"]["lr_scale"] == 1.0 and groups["vector"]["weight_decay"] == 0.0
    matrix = {id(p) for p in groups["matrix"]["params"]}
    vector = {id(p) for p in groups["vector"]["params"]}
    assert id(model.head.weight) in matrix and id(model.proj.weight) in vector  # output vs input layer
    for name, p in model.named_parameters():
        assert (id(p) in matrix) == (p.ndim >= 2 and not name.startswith("proj.")), name
    assert len(matrix) + len(vector) == len(list(model.parameters()))


def test_wd_exponent_one_gives_lambda_proportional_to_width():
    opt = _optimizer(_classifier(128), wd_exponent=1.0)
    assert {g["name"]: g["weight_decay"] for g in opt.param_groups}["matrix"] == pytest.approx(0.2)


def test_step_uses_scaled_learning_rate_and_decay_and_restores_the_group_lr():
    """One step of each group equals torch's AdamW with lr * lr_scale and the group's wd (float64)."""
    model = _classifier(256).double()
    ref = _classifier(256).double()
    x, y = torch.randn(8, 64, dtype=torch.float64), torch.randint(0, 10, (8,))
    opt = _optimizer(model, lr=3e-3, wd=0.1)
    groups = [{"params": [dict(ref.named_parameters())[n] for n, p in model.named_parameters()
                          if any(p is q for q in g["params"])],
               "lr": 3e-3 * g["lr_scale"], "weight_decay": g["weight_decay"]} for g in opt.param_groups]
    ref_opt = torch.optim.AdamW(groups, lr=3e-3)
    for _ in range(3):
        for mod, o in ((model, opt), (ref, ref_opt)):
            o.zero_grad()
            F.cross_entropy(mod(x), y).backward()
            o.step()
    assert [g["lr"] for g in opt.param_groups] == [3e-3, 3e-3]  # the schedule's value is left as it was
    for (n, p), q in zip(model.named_parameters(), ref.parameters()):
        assert torch.allclose(p, q, rtol=1e-10, atol=1e-14), n
    assert not torch.allclose(model.proj.weight, _classifier(256).double().proj.weight)


def test_strict_options_and_optimizer():
    with pytest.raises(ConfigError, match="base_width must be an integer"):
        build_method("width_scaled_wd", base_width=0)
    with pytest.raises(ConfigError, match="wd_exponent"):
        build_method("width_scaled_wd", wd_exponent=float("nan"))
    model = _classifier(64)
    with pytest.raises(ConfigError, match="optim.name = 'adamw'"):
        build_method("width_scaled_wd").make_optimizer(model, lambda: build_optimizer(model, OptimSpec(name="sgd")))
    with pytest.raises(ConfigError, match="input_layers names 'embed'"):
        _optimizer(model, input_layers=["embed"])
    with pytest.raises(ConfigError, match="has no d_model"):
        build_method("width_scaled_wd").make_optimizer(torch.nn.Linear(3, 3), lambda: torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))]))


def resumes_identically(spec, tmp_path):
    """Train `spec` straight, and killed at step 47 then resumed (checkpoint at 40): the curves agree."""
    ref = MemoryRecorder()
    Trainer(spec, recorder=ref).fit()
    rec, _ = kill_and_resume(spec, tmp_path / "run.pt", kill_at=47)
    curve = [v for _, v in ref.series("train", "loss")]
    assert [v for _, v in rec.series("train", "loss")] == curve and len(curve) == 60
    return curve


def digits_spec(methods, d=64):
    return RunSpec(task=TaskSpec("digits"), model=ModelSpec(backbone="classifier", channel="mlp", d_model=d, n_layers=1),
                   optim=OptimSpec(lr=3e-3, weight_decay=0.1, warmup_steps=5),
                   train=TrainSpec(steps=60, batch_size=32, eval_every=20, log_every=1), seed=3, methods=methods)


def test_trains_and_resumes_through_the_trainer(tmp_path):
    spec = digits_spec((MethodSpec("width_scaled_wd", {"base_width": 32}),))
    curve = resumes_identically(spec, tmp_path)
    plain = MemoryRecorder()
    Trainer(digits_spec(()), recorder=plain).fit()
    assert curve != [v for _, v in plain.series("train", "loss")]  # the rule changes training at d != d0
    assert curve[-1] < curve[0]
