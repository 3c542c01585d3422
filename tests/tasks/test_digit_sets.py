"""distinct_digits: targets are the true distinct-digit counts, counts are uniform, images of the
evaluation splits never appear in training sets, strict parameters."""
from __future__ import annotations

import pytest
import torch

from layerlab.errors import ConfigError
from layerlab.tasks import build_task
from layerlab.tasks.digit_sets import image_labels
from layerlab.tasks.digits import _load_digits

pytestmark = pytest.mark.usefixtures("one_thread")


def test_targets_are_the_number_of_distinct_digits_minus_one() -> None:
    task = build_task("distinct_digits", set_size=5, n_eval=200)
    for batch in (task.train_batch(300, torch.Generator().manual_seed(0)), task.eval_set("val"), task.eval_set("test")):
        labels = image_labels(batch.inputs)
        distinct = torch.tensor([len(set(row.tolist())) for row in labels])
        assert torch.equal(batch.targets, distinct - 1)
        assert torch.equal(task.oracle(batch), batch.targets)
        assert batch.inputs.shape[1:] == (5, 64) and int(batch.targets.max()) < task.n_outputs


def test_counts_are_uniform_and_order_carries_no_information() -> None:
    task = build_task("distinct_digits", set_size=4)
    batch = task.train_batch(8000, torch.Generator().manual_seed(1))
    freq = torch.bincount(batch.targets, minlength=4).double() / 8000
    assert (freq - 0.25).abs().max() < 0.02  # c uniform in 1..4: a constant guess scores 1/4 = chance
    assert task.chance == 0.25
    # the first element is not more often a "new" digit than the last (elements are shuffled)
    labels = image_labels(batch.inputs)
    first_unique = (labels[:, :1] != labels[:, 1:]).all(1).double().mean()
    last_unique = (labels[:, -1:] != labels[:, :-1]).all(1).double().mean()
    assert abs(first_unique - last_unique) < 0.03


def test_evaluation_images_never_appear_in_training_sets() -> None:
    task = build_task("distinct_digits", set_size=6, n_eval=300)
    x, _ = _load_digits()
    row_of = {bytes(r.numpy().tobytes()): i for i, r in enumerate(x)}

    def rows(batch):
        return {row_of[bytes(r.numpy().tobytes())] for r in batch.inputs.reshape(-1, 64)}

    train = rows(task.train_batch(2000, torch.Generator().manual_seed(2)))
    val, test = rows(task.eval_set("val")), rows(task.eval_set("test"))
    assert train and val and test
    assert not train & val and not train & test and not val & test
    assert torch.equal(task.eval_set("val").inputs, build_task("distinct_digits", set_size=6, n_eval=300).eval_set("val").inputs)


def test_bad_parameters_are_clear_errors() -> None:
    with pytest.raises(ConfigError, match="set_size must be in 2..10"):
        build_task("distinct_digits", set_size=11)
    with pytest.raises(ConfigError, match="n_eval"):
        build_task("distinct_digits", n_eval=0)
    with pytest.raises(ConfigError, match="batch_size must be >= 1"):
        build_task("distinct_digits").train_batch(0, torch.Generator())
