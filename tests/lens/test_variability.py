"""The Variability Collapse Index (lens.variability) against exact computations."""
from __future__ import annotations

import pytest
import torch

from layerlab.errors import ConfigError, ShapeError
from layerlab.lens import collapse, variability


def _data(n_per: int = 30, k: int = 4, d: int = 6, spread: float = 1.0, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    means = 2.0 * torch.randn(k, d, generator=g, dtype=torch.float64)
    y = torch.arange(k).repeat_interleave(n_per)
    h = means[y] + spread * torch.randn(len(y), d, generator=g, dtype=torch.float64)
    return h, y


def test_fast_form_equals_the_formula_and_lies_in_unit_interval():
    for seed, (n_per, d) in enumerate([(30, 6), (5, 40), (3, 7)]):  # N > d, N < d (singular Σ_T)
        h, y = _data(n_per=n_per, d=d, seed=seed)
        v, ref = variability.vci(h, y), variability.vci_reference(h, y)
        assert v == pytest.approx(ref, abs=1e-10)
        assert 0.0 <= v <= 1.0
    # imbalanced classes: weights p_k, still 0 at collapse
    h, y = _data(seed=3)
    keep = torch.cat([torch.arange(30), torch.arange(30, 40), torch.arange(60, 120)])
    assert variability.vci(h[keep], y[keep]) == pytest.approx(variability.vci_reference(h[keep], y[keep]), abs=1e-10)


def test_zero_when_features_equal_class_means_and_one_without_class_signal():
    h, y = _data()
    means = torch.stack([h[y == c].mean(0) for c in range(4)])
    assert variability.vci(means[y], y) == pytest.approx(0.0, abs=1e-12)
    # class means all equal to the global mean: nothing explained -> VCI = 1
    x = h - torch.stack([h[y == c].mean(0) for c in range(4)])[y]
    x[:, 0] += 1e-3 * (y == 0)  # Σ_B of rank one, tiny: Tr(Σ_T^† Σ_B) tiny
    assert variability.vci(x, y) == pytest.approx(1.0, abs=1e-5)


def test_invariant_under_invertible_affine_maps_where_nc1_is_not():
    g = torch.Generator().manual_seed(5)
    for n_per, d in [(30, 6), (4, 30)]:
        h, y = _data(n_per=n_per, d=d, seed=1)
        a = torch.randn(d, d, generator=g, dtype=torch.float64) + 0.5 * torch.eye(d, dtype=torch.float64)
        assert torch.linalg.cond(a) < 1e4
        b = torch.randn(d, generator=g, dtype=torch.float64)
        moved = h @ a.T + b
        assert variability.vci(moved, y) == pytest.approx(variability.vci(h, y), abs=1e-10)
        w = torch.randn(4, d, generator=g, dtype=torch.float64)
        nc1, nc1_moved = collapse.metrics(h, y, w)["nc1"], collapse.metrics(moved, y, w)["nc1"]
        assert abs(nc1_moved - nc1) / nc1 > 0.05


def test_equals_the_least_squares_probe_loss_over_its_constant_baseline():
    for seed, spread in enumerate([0.3, 1.0, 3.0]):
        h, y = _data(spread=spread, seed=seed)
        k = 4
        loss = variability.linear_probe_loss(h, y)
        assert variability.vci(h, y) == pytest.approx(loss / ((k - 1) / k), abs=1e-10)


def test_errors():
    h, y = _data()
    with pytest.raises(ShapeError, match=r"\(N, d\)"):
        variability.vci(h[0], y)
    with pytest.raises(ShapeError, match="integer"):
        variability.vci(h, y.double())
    with pytest.raises(ConfigError, match="two classes"):
        variability.vci(h, torch.zeros_like(y))


def test_probe_reads_the_head_input():
    from layerlab.lens.dynamics import capture
    from layerlab.lens.probes import PROBES, ProbeContext, ProbeRunner
    from layerlab.spec import ModelSpec, RunSpec, TaskSpec, TrainSpec
    from layerlab.train import Trainer

    trainer = Trainer(RunSpec(task=TaskSpec("digits"), model=ModelSpec(backbone="classifier", d_model=16, n_layers=1),
                              train=TrainSpec(steps=3, batch_size=16, eval_every=0)))
    trainer.fit()
    runner = ProbeRunner(("variability",), {}, trainer.task, batch_size=64, device=torch.device("cpu"),
                         dtype=torch.float32)
    ctx = ProbeContext(model=trainer.model, task=trainer.task, batch=runner.batch, step=3, lr=1e-3, state={},
                       load_array=lambda s, k: None)
    got = PROBES["variability"](ctx).scalars["vci"]
    feats = capture(trainer.model, runner.batch.inputs, ["head"], kind="input")["head"]
    assert got == pytest.approx(variability.vci(feats, runner.batch.targets), abs=1e-12)
    assert 0.0 < got < 1.0
