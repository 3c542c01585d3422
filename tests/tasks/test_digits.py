"""Digits: vector batches, stratified disjoint splits, determinism, evaluation of vector tasks."""
from __future__ import annotations

import math

import pytest
import torch
from sklearn.datasets import load_digits
from torch import Tensor, nn

from layerlab.errors import ConfigError
from layerlab.tasks import build_task

from .helpers import ConstantModel


@pytest.fixture(scope="module")
def task():
    return build_task("digits")


def test_shapes_and_dtypes(task) -> None:
    b = task.train_batch(32, torch.Generator().manual_seed(0))
    assert b.inputs.shape == (32, 64) and b.inputs.dtype == torch.float32
    assert b.targets.shape == (32,) and b.targets.dtype == torch.int64
    assert b.mask is None
    for split, n in (("val", 270), ("test", 270)):
        e = task.eval_set(split)
        assert e.inputs.shape == (n, 64) and e.targets.shape == (n,) and e.mask is None
    full = task.train_batch(0, torch.Generator())
    assert len(full) == 1257
    x = torch.cat([full.inputs, task.eval_set("val").inputs, task.eval_set("test").inputs])
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    assert (task.input_kind, task.input_dim, task.n_outputs, task.chance) == ("vector", 64, 10, 0.1)


def test_splits_disjoint_stratified_and_complete(task) -> None:
    idx = {s: set(task.split_indices(s).tolist()) for s in ("train", "val", "test")}
    assert [len(idx[s]) for s in ("train", "val", "test")] == [1257, 270, 270]
    assert not (idx["train"] & idx["val"]) and not (idx["train"] & idx["test"]) and not (idx["val"] & idx["test"])
    assert idx["train"] | idx["val"] | idx["test"] == set(range(1797))
    # stratified: every digit is ~10% of each split
    for split in ("val", "test"):
        counts = torch.bincount(task.eval_set(split).targets, minlength=10)
        assert counts.min() >= 26 and counts.max() <= 29
    # each split's rows are the dataset's rows at its indices
    x, y = load_digits(return_X_y=True)
    for split in ("val", "test"):
        ix = task.split_indices(split).numpy()
        e = task.eval_set(split)
        assert torch.equal(e.inputs, torch.from_numpy(x[ix] / 16.0).float())
        assert torch.equal(e.targets, torch.from_numpy(y[ix]).long())


def rows_of(x: Tensor) -> set[tuple]:
    return {tuple(r) for r in x.tolist()}


def test_train_batches_come_from_train_rows(task) -> None:
    train = rows_of(task.train_batch(0, torch.Generator()).inputs)
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        assert rows_of(task.train_batch(64, g).inputs) <= train


def test_determinism(task) -> None:
    a = task.train_batch(32, torch.Generator().manual_seed(7))
    b = task.train_batch(32, torch.Generator().manual_seed(7))
    c = task.train_batch(32, torch.Generator().manual_seed(8))
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.targets, b.targets)
    assert not torch.equal(a.inputs, c.inputs)
    other = build_task("digits")
    assert torch.equal(task.eval_set("test").inputs, other.eval_set("test").inputs)
    assert task.checksum() == other.checksum()
    reseeded = build_task("digits", data_seed=1)
    assert set(task.split_indices("val").tolist()) != set(reseeded.split_indices("val").tolist())


class Lookup(nn.Module):
    """Answers from a table of known rows: a perfect model on the rows it was given."""

    def __init__(self, inputs: Tensor, targets: Tensor) -> None:
        super().__init__()
        self.table = {tuple(r): int(t) for r, t in zip(inputs.tolist(), targets.tolist())}
        self.anchor = nn.Parameter(torch.zeros(()))

    def forward(self, x: Tensor) -> Tensor:
        labels = torch.tensor([self.table[tuple(r)] for r in x.tolist()])
        return torch.nn.functional.one_hot(labels, 10).float() * 50.0


def test_evaluate_vector_task(task) -> None:
    val = task.eval_set("val")
    metrics = task.evaluate(Lookup(val.inputs, val.targets), "val", batch_size=64)
    assert metrics["accuracy"] == 1.0 and metrics["loss"] < 1e-6
    assert "exact_match" not in metrics
    uniform = task.evaluate(ConstantModel(10), "val")
    assert uniform["loss"] == pytest.approx(math.log(10), rel=1e-6)
    assert uniform["accuracy"] == pytest.approx(float((val.targets == 0).float().mean()))
    assert abs(uniform["accuracy"] - task.chance) < 0.01


def test_no_oracle(task) -> None:
    with pytest.raises(NotImplementedError, match="without an oracle"):
        task.oracle(task.eval_set("val"))


def test_bad_parameters() -> None:
    with pytest.raises(ConfigError, match="data_seed"):
        build_task("digits", data_seed=-1)
    with pytest.raises(ConfigError, match="'length'"):
        build_task("digits", length=3)
