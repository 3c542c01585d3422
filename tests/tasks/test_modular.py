"""Modular arithmetic: table, disjoint pair splits, full batch, oracle, division, bad parameters."""
from __future__ import annotations

import pytest
import torch

from layerlab.errors import ConfigError
from layerlab.tasks import Batch, build_task
from layerlab.tasks.modular import is_prime

from .helpers import OracleModel, rows


def pairs(task, split: str) -> set[tuple]:
    return rows(task.split_pairs(split))


def test_shapes_dtypes_and_layout() -> None:
    task = build_task("modular", p=13)
    b = task.train_batch(32, torch.Generator().manual_seed(0))
    for batch in (b, task.eval_set("val"), task.eval_set("test")):
        n = len(batch)
        assert batch.inputs.shape == batch.targets.shape == batch.mask.shape == (n, 4)
        assert batch.inputs.dtype == batch.targets.dtype == torch.int64
        assert batch.mask.dtype == torch.bool
        assert (batch.inputs[:, 1] == 13).all() and (batch.inputs[:, 3] == 14).all()
        assert (batch.inputs[:, [0, 2]] < 13).all()
        assert batch.mask[:, 3].all() and not batch.mask[:, :3].any()
        assert (batch.targets[:, 3] < task.n_outputs).all()
    assert (task.vocab_size, task.n_outputs, task.max_length) == (15, 13, 4)
    assert task.chance == pytest.approx(1 / 13)


@pytest.mark.parametrize("op, fn", [("+", lambda a, b, p: (a + b) % p), ("-", lambda a, b, p: (a - b) % p),
                                    ("*", lambda a, b, p: (a * b) % p)])
def test_targets_by_hand(op: str, fn) -> None:
    task = build_task("modular", p=11, op=op)
    for split in ("train", "val", "test"):
        x = task.split_pairs(split)
        batch = task.eval_set(split) if split != "train" else task.train_batch(0, torch.Generator())
        assert torch.equal(batch.inputs[:, [0, 2]], x)
        for (a, b), c in zip(x.tolist(), batch.targets[:, 3].tolist()):
            assert c == fn(a, b, 11)


def test_division_uses_the_inverse() -> None:
    task = build_task("modular", p=7, op="/")
    assert task.n_pairs == 7 * 6
    everything = torch.cat([task.split_pairs(s) for s in ("train", "val", "test")])
    assert (everything[:, 1] != 0).all()  # no division by zero
    batch = task.train_batch(0, torch.Generator())
    a, b, c = batch.inputs[:, 0], batch.inputs[:, 2], batch.targets[:, 3]
    assert torch.equal((c * b) % 7, a)  # c = a / b  <=>  c * b = a (mod 7)


@pytest.mark.parametrize("op", ["+", "-", "*", "/"])
def test_splits_disjoint_and_cover_the_table(op: str) -> None:
    task = build_task("modular", p=13, op=op, train_fraction=0.4)
    train, val, test = pairs(task, "train"), pairs(task, "val"), pairs(task, "test")
    n = task.n_pairs
    assert len(train) == int(0.4 * n) and len(val) == (n - len(train)) // 2
    assert len(train) + len(val) + len(test) == n
    assert not (train & val) and not (train & test) and not (val & test)
    # sampled training batches use training pairs only
    g = torch.Generator().manual_seed(0)
    seen = set()
    for _ in range(20):
        seen |= rows(task.train_batch(16, g).inputs[:, [0, 2]])
    assert seen <= train and len(seen) > len(train) // 2


def test_full_batch_is_fixed_and_sampling_is_seeded() -> None:
    task = build_task("modular", p=11)
    full = task.train_batch(0, torch.Generator().manual_seed(0))
    assert len(full) == task.n_train
    assert torch.equal(full.inputs, task.train_batch(-1, torch.Generator().manual_seed(5)).inputs)
    assert torch.equal(full.inputs, task.train_batch(10_000, torch.Generator().manual_seed(5)).inputs)
    a = task.train_batch(8, torch.Generator().manual_seed(1))
    b = task.train_batch(8, torch.Generator().manual_seed(1))
    c = task.train_batch(8, torch.Generator().manual_seed(2))
    assert len(a) == 8 and torch.equal(a.inputs, b.inputs) and not torch.equal(a.inputs, c.inputs)


def test_determinism_across_builds() -> None:
    a, b = build_task("modular", p=11), build_task("modular", p=11)
    for split in ("train", "val", "test"):
        assert torch.equal(a.split_pairs(split), b.split_pairs(split))
    assert a.checksum() == b.checksum()
    c = build_task("modular", p=11, data_seed=1)
    assert pairs(a, "train") != pairs(c, "train")
    assert a.checksum() != c.checksum()


@pytest.mark.parametrize("op", ["+", "-", "*", "/"])
def test_oracle(op: str) -> None:
    task = build_task("modular", p=13, op=op)
    for split in ("val", "test"):
        batch = task.eval_set(split)
        pred = task.oracle(Batch(batch.inputs, torch.full_like(batch.targets, -1), None))
        assert torch.equal(pred[batch.mask], batch.targets[batch.mask])
        assert torch.equal(pred, batch.targets)
        metrics = task.evaluate(OracleModel(task), split, batch_size=50)
        assert metrics["accuracy"] == 1.0 and metrics["exact_match"] == 1.0


def test_is_prime() -> None:
    assert [n for n in range(30) if is_prime(n)] == [2, 3, 5, 7, 11, 13, 17, 19, 23, 29]


def test_non_prime_allowed_without_division() -> None:
    assert build_task("modular", p=12, op="*").n_outputs == 12


@pytest.mark.parametrize(
    "params, words",
    [
        (dict(p=91, op="/"), ["prime", "91"]),
        (dict(op="^"), ["op", "'^'"]),
        (dict(train_fraction=1.0), ["train_fraction"]),
        (dict(train_fraction=0.0), ["train_fraction"]),
        (dict(p=1), ["p must be >= 2"]),
        (dict(p=2, train_fraction=0.9), ["empty"]),
    ],
)
def test_bad_parameters(params: dict, words: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        build_task("modular", **params)
    for w in words:
        assert w in str(info.value)


def test_onehot_encoding_same_pairs_as_vectors() -> None:
    tokens = build_task("modular", p=11, op="*", train_fraction=0.6)
    onehot = build_task("modular", p=11, op="*", train_fraction=0.6, encoding="onehot")
    assert (tokens.input_kind, onehot.input_kind, onehot.input_dim) == ("tokens", "vector", 22)
    for split in ("val", "test"):
        t, v = tokens.eval_set(split), onehot.eval_set(split)
        assert v.mask is None and v.inputs.dtype == torch.float32 and v.inputs.shape == (len(t), 22)
        assert torch.equal(v.inputs[:, :11].argmax(1), t.inputs[:, 0])  # a, then b, one-hot
        assert torch.equal(v.inputs[:, 11:].argmax(1), t.inputs[:, 2])
        assert torch.equal(v.inputs.sum(1), torch.full((len(t),), 2.0))
        assert torch.equal(v.targets, t.targets[:, 3])
        assert onehot.evaluate(OracleModel(onehot), split)["accuracy"] == 1.0
    b = onehot.train_batch(16, torch.Generator().manual_seed(0))
    assert b.inputs.shape == (16, 22) and b.mask is None
    with pytest.raises(ConfigError, match="onehot"):
        build_task("modular", p=11, encoding="one-hot")
