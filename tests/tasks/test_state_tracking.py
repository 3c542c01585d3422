"""Parity, running counts mod m, permutation composition: targets, extrapolation splits,
disjointness, oracle, chance."""
from __future__ import annotations

import pytest
import torch

from layerlab.errors import ConfigError
from layerlab.tasks import Batch, build_task

from layerlab.tasks.state_tracking import permutation_group

from .helpers import OracleModel, rows, train_rows

TASKS = [("parity", {}, 2), ("mod_count", {}, 3), ("mod_count", {"m": 5}, 5), ("permutation", {"group": "S3"}, 6)]


def plain_states(task, tokens: list[int]) -> list[int]:
    """Running states written plainly: sums mod m, or permutations composed as tuples."""
    out = []
    if task.name == "permutation":
        elements, _ = permutation_group(task.group)
        state = tuple(range(len(elements[0])))
        for tok in tokens:
            g = elements[tok]
            state = tuple(g[state[i]] for i in range(len(state)))  # g after the prefix
            out.append(elements.index(state))
        return out
    total = 0
    for tok in tokens:
        total = (total + tok) % task.n_symbols
        out.append(total)
    return out


@pytest.mark.parametrize("name, extra, m", TASKS)
def test_shapes_dtypes_and_targets(name: str, extra: dict, m: int) -> None:
    task = build_task(name, length=16, n_eval=50, extrapolate=[], **extra)
    b = task.train_batch(32, torch.Generator().manual_seed(0))
    for batch, n in ((b, 32), (task.eval_set("val"), 50), (task.eval_set("test"), 50)):
        assert batch.inputs.shape == batch.targets.shape == batch.mask.shape == (n, 16)
        assert batch.inputs.dtype == batch.targets.dtype == torch.int64
        assert batch.mask.dtype == torch.bool and batch.mask.all()
        assert set(batch.inputs.unique().tolist()) == set(range(m))
        for r in range(3):  # the target at every position, by a plain loop
            assert batch.targets[r].tolist() == plain_states(task, batch.inputs[r].tolist())
    assert (task.vocab_size, task.n_outputs, task.max_length) == (m, m, 16)
    assert task.chance == pytest.approx(1 / m)
    assert task.eval_splits == ("val", "test")


@pytest.mark.parametrize("name, extra, m", TASKS)
def test_extrapolation_splits(name: str, extra: dict, m: int) -> None:
    task = build_task(name, length=16, n_eval=20, **extra)
    assert task.eval_splits == ("val", "test", "test@32", "test@64"), "default: 2L and 4L"
    assert task.max_length == 64
    for n in (32, 64):
        long = task.eval_set(f"test@{n}")
        assert long.inputs.shape == long.targets.shape == long.mask.shape == (20, n)
        assert torch.equal(task.oracle(long), long.targets)
    assert build_task(name, length=16, extrapolate=[3], **extra).eval_splits == ("val", "test", "test@48")
    assert task.eval_set("val").inputs.shape == (20, 16)
    assert task.train_batch(4, torch.Generator().manual_seed(0)).inputs.shape == (4, 16)
    with pytest.raises(ConfigError, match="no split"):
        task.eval_set("test@41")
    with pytest.raises(ConfigError, match="no split"):
        task.eval_set("nonsense")


@pytest.mark.parametrize("name, extra, m", TASKS)
def test_determinism(name: str, extra: dict, m: int) -> None:
    params = dict(length=16, extrapolate=[2], n_eval=20, **extra)
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
    task = build_task(name, length=16, extrapolate=[2], n_eval=40, **extra)
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
        ("parity", dict(length=16, extrapolate=[1]), ["extrapolate", "multiples >= 2"]),
        ("mod_count", dict(length=16, extrapolate=[2, 2]), ["extrapolate", "distinct"]),
        ("permutation", dict(group="S6"), ["permutation group", "S5"]),
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
    # says so when the task is built (issue 21: before a suite writes its runs), not an endless loop
    with pytest.raises(ConfigError, match="no input of this size falls in the 'val' split.*too small"):
        build_task("parity", length=3, n_eval=10)


@pytest.mark.parametrize("group, order", [("S3", 6), ("A4", 12), ("A5", 60), ("S4", 24)])
def test_permutation_groups_are_groups(group: str, order: int) -> None:
    elements, table = permutation_group(group)
    assert len(elements) == order and table.shape == (order, order)
    assert elements[0] == tuple(range(len(elements[0]))), "token 0 is the identity"
    assert torch.equal(table[0], torch.arange(order)) and torch.equal(table[:, 0], torch.arange(order))
    for row in table:  # closure and cancellation: every row is a permutation of the group
        assert sorted(row.tolist()) == list(range(order))
    a, b, c = torch.meshgrid(torch.arange(order), torch.arange(order), torch.arange(order), indexing="ij")
    assert torch.equal(table[table[a, b], c], table[a, table[b, c]]), "associative"
    assert not torch.equal(table, table.T), "non-abelian"


def test_a5_is_the_even_permutations_and_composition_order() -> None:
    elements, table = permutation_group("A5")
    assert all(sum(p[i] > p[j] for i in range(5) for j in range(i + 1, 5)) % 2 == 0 for p in elements)
    i, j = elements.index((1, 2, 0, 3, 4)), elements.index((0, 2, 3, 1, 4))
    # table[a, b] = b ∘ a: apply a first. (1,2,0,3,4) then (0,2,3,1,4): 0->1->2, 1->2->3, 2->0->0, 3->3->1
    assert elements[int(table[i, j])] == (2, 3, 0, 1, 4)


def test_group_table_is_real_even_when_first_built_under_a_meta_device() -> None:
    permutation_group.cache_clear()
    with torch.device("meta"):  # the arena sizes models under a meta device; tasks are built there too
        build_task("permutation", group="A4", length=4, extrapolate=[]).n_symbols
    assert permutation_group("A4")[1].device.type == "cpu"
