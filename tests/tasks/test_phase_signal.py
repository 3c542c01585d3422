"""phase_signal: the class lives in the phase coupling of the two components (not in amplitudes,
frequencies or the time shift), classes are uniform, splits are disjoint, parameters are strict."""
from __future__ import annotations

import math

import pytest
import torch

from layerlab.errors import ConfigError
from layerlab.tasks import build_task


def test_the_class_is_the_phase_coupling() -> None:
    """Without noise, a least-squares fit of a₁cos(ωt + φ₁) + a₂cos(2ωt + φ₂) (ω on a fine grid)
    recovers ψ = φ₂ - 2φ₁, whose nearest 2πc/C is the class; the signal's power is the same for
    every class (the class is in the phase, not in the amplitudes)."""
    n = 32
    task = build_task("phase_signal", length=n, classes=4, noise=0.0, n_eval=300)
    b = task.eval_set("test")
    x = b.inputs.double()
    t = torch.arange(n, dtype=torch.float64)
    best_res = torch.full((len(b),), math.inf, dtype=torch.float64)
    coef = torch.zeros(len(b), 4, dtype=torch.float64)
    for f in torch.linspace(1, n / 4, 3000, dtype=torch.float64):
        w = 2 * math.pi * f / n
        D = torch.stack([torch.cos(w * t), torch.sin(w * t), torch.cos(2 * w * t), torch.sin(2 * w * t)], 1)
        c = torch.linalg.lstsq(D, x.T).solution.T  # (B, 4)
        res = (x - c @ D.T).square().sum(1)
        better = res < best_res
        best_res = torch.where(better, res, best_res)
        coef[better] = c[better]
    phi1 = torch.atan2(-coef[:, 1], coef[:, 0])
    phi2 = torch.atan2(-coef[:, 3], coef[:, 2])
    guess = torch.round((phi2 - 2 * phi1) / (2 * math.pi / 4)).long() % 4
    assert (guess == b.targets).double().mean() > 0.97
    power = x.square().sum(1)
    means = torch.stack([power[b.targets == c].mean() for c in range(4)])
    assert (means.max() - means.min()) / means.mean() < 0.15


def test_classes_uniform_and_splits_disjoint() -> None:
    task = build_task("phase_signal", n_eval=200)
    train = task.train_batch(4000, torch.Generator().manual_seed(0))
    assert (torch.bincount(train.targets, minlength=4).double() / 4000 - 0.25).abs().max() < 0.03
    assert task.chance == 0.25 and train.inputs.dtype == torch.float32 and train.inputs.shape == (4000, 32)
    rows = lambda b: {tuple(r.tolist()) for r in b.inputs}  # noqa: E731
    val, test = task.eval_set("val"), task.eval_set("test")
    assert not rows(train) & rows(val) and not rows(train) & rows(test) and not rows(val) & rows(test)
    assert torch.equal(build_task("phase_signal", n_eval=200).eval_set("test").inputs, test.inputs)


def test_bad_parameters() -> None:
    with pytest.raises(ConfigError, match="length must be >= 8"):
        build_task("phase_signal", length=4)
    with pytest.raises(ConfigError, match="noise"):
        build_task("phase_signal", noise=-1.0)
    with pytest.raises(ConfigError, match="batch_size must be >= 1"):
        build_task("phase_signal").train_batch(0, torch.Generator())
