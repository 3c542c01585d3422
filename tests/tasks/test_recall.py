"""MQAR: layout, masks, determinism, disjoint splits, oracle, chance, bad parameters."""
from __future__ import annotations

import math

import pytest
import torch

from layerlab.errors import ConfigError
from layerlab.tasks import Batch, build_task
from layerlab.tasks.base import random_subsets
from layerlab.tasks.recall import MQAR

from .helpers import ConstantModel, OracleModel, rows, train_rows

SMALL = dict(vocab=32, length=24, pairs=4, n_eval=64)


def test_shapes_and_dtypes() -> None:
    task = build_task("mqar", **SMALL)
    b = task.train_batch(16, torch.Generator().manual_seed(0))
    for batch, n in ((b, 16), (task.eval_set("val"), 64), (task.eval_set("test"), 64)):
        assert batch.inputs.shape == batch.targets.shape == batch.mask.shape == (n, 24)
        assert batch.inputs.dtype == batch.targets.dtype == torch.int64
        assert batch.mask.dtype == torch.bool
        assert int(batch.inputs.max()) < task.vocab_size
        assert int(batch.targets[batch.mask].max()) < task.n_outputs
    assert (task.vocab_size, task.n_outputs, task.max_length) == (32, 32, 24)
    assert task.eval_splits == ("val", "test")


def test_layout_and_mask_at_query_positions() -> None:
    task = build_task("mqar", **SMALL)
    b = task.train_batch(256, torch.Generator().manual_seed(0))
    P = task.pairs
    keys, values = b.inputs[:, 0:2 * P:2], b.inputs[:, 1:2 * P:2]
    assert ((keys >= 1) & (keys < 16)).all()  # first half of the vocab, without the blank 0
    assert ((values >= 16) & (values < 32)).all()  # second half
    assert (keys.sort(dim=1).values.diff(dim=1) != 0).all()  # distinct within a row
    assert not b.mask[:, :2 * P].any()
    assert (b.mask.sum(dim=1) == P).all()
    # the mask is exactly the non-blank positions after the pairs
    assert torch.equal(b.mask[:, 2 * P:], b.inputs[:, 2 * P:] != 0)
    # every key is queried exactly once, with its value as target
    for r in range(len(b)):
        queried = b.inputs[r][b.mask[r]]
        assert sorted(queried.tolist()) == sorted(keys[r].tolist())
        bound = dict(zip(keys[r].tolist(), values[r].tolist()))
        assert b.targets[r][b.mask[r]].tolist() == [bound[k] for k in queried.tolist()]
    # the query order is shuffled, not always the order of the pairs
    first_query = b.inputs.gather(1, b.mask.long().argmax(dim=1, keepdim=True)).squeeze(1)
    assert (first_query != keys[:, 0]).any()


def test_determinism() -> None:
    task = build_task("mqar", **SMALL)
    a = task.train_batch(32, torch.Generator().manual_seed(7))
    b = task.train_batch(32, torch.Generator().manual_seed(7))
    c = task.train_batch(32, torch.Generator().manual_seed(8))
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.targets, b.targets) and torch.equal(a.mask, b.mask)
    assert not torch.equal(a.inputs, c.inputs)
    other = build_task("mqar", **SMALL)
    for split in ("val", "test"):
        assert torch.equal(task.eval_set(split).inputs, other.eval_set(split).inputs)
        assert torch.equal(task.eval_set(split).targets, other.eval_set(split).targets)
    assert task.checksum() == other.checksum()
    reseeded = build_task("mqar", **{**SMALL, "data_seed": 1})
    assert not torch.equal(task.eval_set("val").inputs, reseeded.eval_set("val").inputs)
    assert task.checksum() != reseeded.checksum()


def test_splits_disjoint() -> None:
    # a space of 3*2 key orders * 4^2 values * 2 query orders = 192 sequences: training batches
    # cover nearly all of it, so any leak of a val/test sequence into training would show
    task = build_task("mqar", vocab=8, length=6, pairs=2, n_eval=30)
    val, test = rows(task.eval_set("val").inputs), rows(task.eval_set("test").inputs)
    train = train_rows(task, n_batches=40, batch_size=64)
    assert val and test and not (val & test)
    assert not (train & (val | test))
    assert len(train) + len(val | test) >= 170


def test_oracle_matches_targets() -> None:
    task = build_task("mqar", **SMALL)
    for batch in (task.eval_set("val"), task.train_batch(64, torch.Generator().manual_seed(3))):
        pred = task.oracle(Batch(batch.inputs, torch.full_like(batch.targets, -1), None))
        assert torch.equal(pred[batch.mask], batch.targets[batch.mask])
        assert torch.equal(pred, batch.targets)  # both hold the placeholder 0 where nothing is scored


def test_oracle_scores_one_and_blank_scores_zero() -> None:
    task = build_task("mqar", **SMALL)
    metrics = task.evaluate(OracleModel(task), "test", batch_size=16)
    assert metrics["accuracy"] == 1.0 and metrics["exact_match"] == 1.0
    # one-hot logits: cross-entropy log(C - 1 + e) - 1 at every scored position
    assert metrics["loss"] == pytest.approx(math.log(task.n_outputs - 1 + math.e) - 1, rel=1e-5)
    # predicting the blank everywhere never hits a value
    assert task.evaluate(ConstantModel(task.n_outputs), "test")["accuracy"] == 0.0


def test_chance() -> None:
    task = build_task("mqar")
    assert task.chance == pytest.approx(1 / 64)
    values = task.eval_set("val").targets[task.eval_set("val").mask]
    assert values.unique().numel() == 64  # values are spread over all 64 value tokens
    assert build_task("mqar", vocab=9, pairs=2, n_eval=10).chance == pytest.approx(1 / 5)


@pytest.mark.parametrize(
    "params, words",
    [
        (dict(length=20, pairs=8), ["length", "24"]),
        (dict(vocab=16, pairs=8), ["vocab", "7 key tokens"]),
        (dict(vocab=6), ["vocab"]),
        (dict(pairs=0), ["pairs"]),
        (dict(n_eval=0), ["n_eval"]),
    ],
)
def test_bad_parameters(params: dict, words: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        build_task("mqar", **params)
    for w in words:
        assert w in str(info.value)


def test_direct_construction_validates() -> None:
    with pytest.raises(ConfigError, match="3 \\* pairs"):
        MQAR(length=10, pairs=4)


def test_random_subsets_distinct_uniform_and_chunked() -> None:
    g = torch.Generator().manual_seed(0)
    big = random_subsets(5, 1 << 21, 6, g)  # 2 rows per chunk: exercises the chunking
    assert big.shape == (5, 6) and (big.sort(dim=1).values.diff(dim=1) != 0).all()
    small = random_subsets(20000, 5, 2, g)
    assert (small[:, 0] != small[:, 1]).all() and small.min() >= 0 and small.max() < 5
    # every ordered pair of 5 items is equally likely (20 of them)
    counts = torch.bincount(small[:, 0] * 5 + small[:, 1], minlength=25).float()
    nonzero = counts[counts > 0]
    assert len(nonzero) == 20 and (nonzero / 1000 - 1).abs().max() < 0.15
    assert torch.equal(random_subsets(7, 9, 3, torch.Generator().manual_seed(1)),
                       random_subsets(7, 9, 3, torch.Generator().manual_seed(1)))
