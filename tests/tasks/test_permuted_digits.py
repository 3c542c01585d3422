"""permuted_digits: phases of permuted labels, the step count kept in the generator (exact resume)."""
import pytest
import torch

from layerlab.errors import ConfigError
from layerlab.tasks import build_task
from layerlab.tasks.digits import _load_digits
from layerlab.tasks.permuted_digits import draws_so_far


@pytest.fixture(scope="module")
def task():
    return build_task("permuted_digits", phases=4, phase_steps=3)


def label_map(task, batch):
    """The (true digit -> batch label) pairs of a batch, found by looking its rows up."""
    x, y = _load_digits()
    where = {tuple(r): int(c) for r, c in zip(x.tolist(), y.tolist())}
    return {(where[tuple(r)], int(t)) for r, t in zip(batch.inputs.tolist(), batch.targets.tolist())}


def test_permutations(task):
    perms = [task.permutation(k) for k in range(4)]
    assert torch.equal(perms[0], torch.arange(10))
    assert all(torch.equal(p.sort().values, torch.arange(10)) for p in perms)
    assert len({tuple(p.tolist()) for p in perms}) == 4
    assert torch.equal(task.permutation(2), build_task("permuted_digits", phases=4, phase_steps=3).permutation(2))
    assert not torch.equal(task.permutation(2), build_task("permuted_digits", phases=4, data_seed=1).permutation(2))
    with pytest.raises(ConfigError, match="phase must be in"):
        task.permutation(4)


def test_batch_t_carries_the_labels_of_its_phase(task):
    g = torch.Generator().manual_seed(7)
    for t in range(16):
        assert draws_so_far(g)[1] == t
        b = task.train_batch(64, g)
        phase = min(t // 3, 3)
        assert task.phase_of(t) == phase
        perm = task.permutation(phase)
        assert all(label == int(perm[digit]) for digit, label in label_map(task, b))


def test_count_lives_in_the_generator_state_so_resume_is_exact(task):
    g = torch.Generator().manual_seed(11)
    for _ in range(5):
        task.train_batch(8, g)
    saved = g.get_state()
    ahead = [task.train_batch(8, g) for _ in range(4)]
    h = torch.Generator()
    h.set_state(saved)  # what a resumed run restores from its checkpoint
    again = [task.train_batch(8, h) for _ in range(4)]
    for a, b in zip(ahead, again):
        assert torch.equal(a.inputs, b.inputs) and torch.equal(a.targets, b.targets)
    # a fresh generator starts at phase 0; other seeds draw other batches; no state on the task
    assert draws_so_far(torch.Generator().manual_seed(11)) [1] == 0
    a = task.train_batch(8, torch.Generator().manual_seed(1))
    b = task.train_batch(8, torch.Generator().manual_seed(2))
    assert not torch.equal(a.inputs, b.inputs)
    assert torch.equal(a.inputs, task.train_batch(8, torch.Generator().manual_seed(1)).inputs)


def test_eval_splits_score_the_final_and_first_phase_on_held_out_rows(task):
    x, y = _load_digits()
    train = {tuple(r) for r in task.train_batch(0, torch.Generator()).inputs.tolist()}
    for base in ("val", "test"):
        final, first = task.eval_set(base), task.eval_set(f"{base}@first")
        assert torch.equal(final.inputs, first.inputs) and len(final) == 270
        assert not any(tuple(r) in train for r in final.inputs.tolist())
        assert all(label == int(task.permutation(3)[d]) for d, label in label_map(task, final))
        assert all(label == d for d, label in label_map(task, first))
    assert not (set(map(tuple, task.eval_set("val").inputs.tolist())) & set(map(tuple, task.eval_set("test").inputs.tolist())))


def test_strict_parameters():
    with pytest.raises(ConfigError, match="phases must be >= 1"):
        build_task("permuted_digits", phases=0)
    with pytest.raises(ConfigError, match="phase_steps must be in"):
        build_task("permuted_digits", phase_steps=0)
    with pytest.raises(ConfigError, match="unknown"):
        build_task("permuted_digits", period=3)
