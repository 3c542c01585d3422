"""Parity and running counts mod m: targets, extrapolation split, disjointness, oracle, chance."""
from __future__ import annotations

import pytest
import torch

from layerlab.errors import ConfigError
from layerlab.tasks import Batch, build_task

from .helpers import OracleModel, rows, train_rows

TASKS = [("parity", {}, 2), ("mod_count", {}, 3), ("mod_count", {"m": 5}, 5)]


@pytest.mark.parametrize("name, extra, m", TASKS)
def test_shapes_dtypes_and_targets(name: str, extra: dict, m: int) -> None:
    task = build_task(name, length=16, n_eval=50, **extra)
    b = task.train_batch(32, torch.Generator().manual_seed(0))
    for batch, n in ((b, 32), (task.eval_set("val"), 50), (task.eval_set("test"), 50)):
        assert batch.inputs.shape == batch.targets.shape == batch.mask.shape == (n, 16)
        assert batch.inputs.dtype == batch.targets.dtype == torch.int64
        assert batch.mask.dtype == torch.bool and batch.mask.all()
        assert set(batch.inputs.unique().tolist()) == set(range(m))
        # the target at position t is the running sum mod m, checked by a plain loop
        for r in range(3):
            total = 0
            for t in range(16):
                total = (total + int(batch.inputs[r, t])) % m
                assert int(batch.targets[r, t]) == total
    assert (task.vocab_size, task.n_outputs, task.max_length) == (m, m, 16)
    assert task.chance == pytest.approx(1 / m)
    assert task.eval_splits == ("val", "test")


@pytest.mark.parametrize("name, extra, m", TASKS)
def test_extrapolation_split(name: str, extra: dict, m: int) -> None:
    task = build_task(name, length=16, eval_length=40, n_eval=20, **extra)
    assert task.eval_splits == ("val", "test", "test@40")
    assert task.max_length == 40
    long = task.eval_set("test@40")
    assert long.inputs.shape == long.targets.shape == long.mask.shape == (20, 40)
    assert torch.equal(task.oracle(long), long.targets)
    assert task.eval_set("val").inputs.shape == (20, 16)
    assert task.train_batch(4, torch.Generator().manual_seed(0)).inputs.shape == (4, 16)
    with pytest.raises(ConfigError, match="no split"):
        task.eval_set("test@41")


@pytest.mark.parametrize("name, extra, m", TASKS)
def test_determinism(name: str, extra: dict, m: int) -> None:
    params = dict(length=16, eval_length=24, n_eval=20, **extra)
    task, other = build_task(name, **params), build_task(name, **params)
    a = task.train_batch(32, torch.Generator().manual_seed(7))
    b = task.train_batch(32, torch.Generator().manual_seed(7))
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.targets, b.targets)
    assert not torch.equal(a.inputs, task.train_batch(32, torch.Generator().manual_seed(8)).inputs)
    for split in task.eval_splits:
        assert torch.equal(task.eval_set(split).inputs, other.eval_set(split).inputs)
    assert task.checksum() == other.checksum()
    assert task.checksum() != build_task(name, **{**params, "data_seed": 1}).checksum()


@pytest.mark.parametrize("name, params, space", [("parity", dict(length=8), 2**8), ("mod_count", dict(length=5), 3**5)])
def test_splits_disjoint(name: str, params: dict, space: int) -> None:
    # small spaces: training batches cover nearly every sequence, so a leak would show
    task = build_task(name, n_eval=30, **params)
    val, test = rows(task.eval_set("val").inputs), rows(task.eval_set("test").inputs)
    train = train_rows(task, n_batches=40, batch_size=64)
    assert val and test and not (val & test)
    assert not (train & (val | test))
    assert len(train) + len(val | test) >= 0.9 * space


@pytest.mark.parametrize("name, extra, m", TASKS)
def test_oracle_matches_targets_and_scores_one(name: str, extra: dict, m: int) -> None:
    task = build_task(name, length=16, eval_length=24, n_eval=40, **extra)
    for split in task.eval_splits:
        batch = task.eval_set(split)
        pred = task.oracle(Batch(batch.inputs, torch.full_like(batch.targets, -1), None))
        assert torch.equal(pred[batch.mask], batch.targets[batch.mask])
        metrics = task.evaluate(OracleModel(task), split, batch_size=16)
        assert metrics["accuracy"] == 1.0 and metrics["exact_match"] == 1.0


def test_parity_has_no_m_parameter() -> None:
    with pytest.raises(ConfigError, match="'m'"):
        build_task("parity", m=3)


@pytest.mark.parametrize(
    "name, params, words",
    [
        ("parity", dict(length=16, eval_length=16), ["eval_length", "greater than length"]),
        ("mod_count", dict(length=16, eval_length=8), ["eval_length"]),
        ("mod_count", dict(m=1), ["m must be >= 2"]),
        ("parity", dict(length=0), ["length"]),
        ("parity", dict(n_eval=0), ["n_eval"]),
    ],
)
def test_bad_parameters(name: str, params: dict, words: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        build_task(name, **params)
    for w in words:
        assert w in str(info.value)


def test_too_small_input_space_is_reported() -> None:
    # none of the 2^3 parity sequences hashes into the val or test bucket: a ConfigError that
    # says so, not an endless loop
    task = build_task("parity", length=3, n_eval=10)
    for split in ("val", "test"):
        with pytest.raises(ConfigError, match="too small"):
            task.eval_set(split)
