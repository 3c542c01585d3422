"""Selective copying: layout, masks, determinism, disjoint splits, oracle, chance, bad parameters."""
from __future__ import annotations

import pytest
import torch

from layerlab.errors import ConfigError
from layerlab.tasks import Batch, build_task

from .helpers import ConstantModel, OracleModel, rows, train_rows

SMALL = dict(vocab=8, length=20, n_tokens=4, n_eval=64)


def test_shapes_and_dtypes() -> None:
    task = build_task("selective_copy", **SMALL)
    b = task.train_batch(16, torch.Generator().manual_seed(0))
    for batch, n in ((b, 16), (task.eval_set("val"), 64), (task.eval_set("test"), 64)):
        assert batch.inputs.shape == batch.targets.shape == batch.mask.shape == (n, 20)
        assert batch.inputs.dtype == batch.targets.dtype == torch.int64
        assert batch.mask.dtype == torch.bool
        assert int(batch.inputs.max()) < task.vocab_size
        assert int(batch.targets[batch.mask].max()) < task.n_outputs
    assert (task.vocab_size, task.n_outputs, task.max_length) == (10, 8, 20)


def test_layout_and_mask() -> None:
    task = build_task("selective_copy", **SMALL)
    b = task.train_batch(256, torch.Generator().manual_seed(0))
    k, L = 4, 20
    head, tail = b.inputs[:, : L - k], b.inputs[:, L - k:]
    assert (tail == task.marker).all()
    is_data = head < task.vocab
    assert (is_data.sum(dim=1) == k).all()
    assert ((head == task.blank) | is_data).all()
    assert (b.mask[:, L - k:]).all() and not b.mask[:, : L - k].any()
    for r in range(len(b)):  # targets are the data tokens in order
        assert b.targets[r, L - k:].tolist() == head[r][is_data[r]].tolist()
    # the positions vary: not always the first k
    assert (~is_data[:, :k]).any()


def test_determinism() -> None:
    task = build_task("selective_copy", **SMALL)
    a = task.train_batch(32, torch.Generator().manual_seed(7))
    b = task.train_batch(32, torch.Generator().manual_seed(7))
    c = task.train_batch(32, torch.Generator().manual_seed(8))
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.targets, b.targets) and torch.equal(a.mask, b.mask)
    assert not torch.equal(a.inputs, c.inputs)
    other = build_task("selective_copy", **SMALL)
    for split in ("val", "test"):
        assert torch.equal(task.eval_set(split).inputs, other.eval_set(split).inputs)
    assert task.checksum() == other.checksum()
    assert task.checksum() != build_task("selective_copy", **{**SMALL, "data_seed": 1}).checksum()


def test_splits_disjoint() -> None:
    # C(6, 2) positions * 3^2 tokens = 135 sequences: training covers nearly all of them
    task = build_task("selective_copy", vocab=3, length=8, n_tokens=2, n_eval=30)
    val, test = rows(task.eval_set("val").inputs), rows(task.eval_set("test").inputs)
    train = train_rows(task, n_batches=40, batch_size=64)
    assert val and test and not (val & test)
    assert not (train & (val | test))
    assert len(train) + len(val | test) >= 125


def test_oracle_matches_targets() -> None:
    task = build_task("selective_copy", **SMALL)
    for batch in (task.eval_set("test"), task.train_batch(64, torch.Generator().manual_seed(3))):
        pred = task.oracle(Batch(batch.inputs, torch.full_like(batch.targets, -1), None))
        assert torch.equal(pred[batch.mask], batch.targets[batch.mask])
        assert torch.equal(pred, batch.targets)  # both hold the placeholder 0 where nothing is scored


def test_oracle_model_scores_one() -> None:
    task = build_task("selective_copy", **SMALL)
    metrics = task.evaluate(OracleModel(task), "val", batch_size=16)
    assert metrics["accuracy"] == 1.0 and metrics["exact_match"] == 1.0
    # always answering token 0 is right about 1/vocab of the time
    blind = task.evaluate(ConstantModel(task.n_outputs), "val")["accuracy"]
    assert abs(blind - task.chance) < 0.07


def test_chance() -> None:
    assert build_task("selective_copy").chance == pytest.approx(1 / 16)
    assert build_task("selective_copy", **SMALL).chance == pytest.approx(1 / 8)


@pytest.mark.parametrize(
    "params, words",
    [
        (dict(length=10, n_tokens=6), ["length >= 12"]),
        (dict(vocab=1), ["vocab"]),
        (dict(n_tokens=0), ["n_tokens"]),
        (dict(n_eval=-1), ["n_eval"]),
    ],
)
def test_bad_parameters(params: dict, words: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        build_task("selective_copy", **params)
    for w in words:
        assert w in str(info.value)


def test_edge_case_half_markers() -> None:
    task = build_task("selective_copy", vocab=4, length=8, n_tokens=4, n_eval=8)
    b = task.eval_set("val")
    assert (b.inputs[:, :4] < 4).all()  # every slot before the markers holds a data token
    assert torch.equal(task.oracle(b)[b.mask], b.targets[b.mask])
