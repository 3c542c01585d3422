"""domain_shift: source/target halves, unlabelled target rows, transformed target evaluation."""
import pytest
import torch

from layerlab.errors import ConfigError
from layerlab.tasks import build_task, domain_shift
from layerlab.tasks.digits import _load_digits
from layerlab.tasks.domain_shift import IGNORE, transform_images


@pytest.fixture(scope="module")
def task():
    return build_task("domain_shift", rotation=20.0, shift=0)


def test_batch_carries_labelled_source_then_unlabelled_target_rows(task):
    b = task.train_batch(24, torch.Generator().manual_seed(0))
    assert b.inputs.shape == (48, 64) and b.targets.shape == (48,) and b.mask.shape == (48,)
    assert b.mask[:24].all() and not b.mask[24:].any()
    assert (b.targets[24:] == IGNORE).all() and (b.targets[:24] >= 0).all() and (b.targets[:24] < 10).all()
    x, y = _load_digits()
    src_rows = {tuple(r) for r in x[task.role_indices("source")].tolist()}
    assert all(tuple(r) in src_rows for r in b.inputs[:24].tolist())  # source rows untransformed
    tgt = transform_images(x[task.role_indices("target")], rotation=20.0, shift=0, invert=False)
    tgt_rows = {tuple(r) for r in tgt.tolist()}
    assert all(tuple(r) in tgt_rows for r in b.inputs[24:].tolist())
    full = task.train_batch(0, torch.Generator())
    assert len(full) == 1257 and int(full.mask.sum()) == 628
    # the task's loss is the source rows' cross-entropy alone
    logits = torch.randn(48, 10, generator=torch.Generator().manual_seed(1))
    expected = torch.nn.functional.cross_entropy(logits[:24], b.targets[:24])
    assert torch.allclose(task.loss(logits, b), expected)


def test_roles_are_disjoint_and_cover_the_digits_split(task):
    idx = {r: set(task.role_indices(r).tolist()) for r in ("source", "target", "val", "test")}
    assert [len(idx[r]) for r in ("source", "target", "val", "test")] == [628, 629, 270, 270]
    roles = list(idx)
    assert all(not (idx[a] & idx[b]) for i, a in enumerate(roles) for b in roles[i + 1:])
    assert len(set().union(*idx.values())) == 1797
    assert idx["source"] != set(build_task("domain_shift", shift=1, data_seed=1).role_indices("source").tolist())


def test_evaluation_is_the_transformed_target_domain(task):
    x, y = _load_digits()
    for split in ("val", "test"):
        e = task.eval_set(split)
        index = task.role_indices(split)
        assert e.mask is None and torch.equal(e.targets, y[index])
        assert torch.equal(e.inputs, transform_images(x[index], rotation=20.0, shift=0, invert=False))
        assert not torch.equal(e.inputs, task.source_set(split).inputs)


def test_target_labels_are_never_read(task, monkeypatch):
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    ref = [task.train_batch(32, g1) for _ in range(3)] + [task.train_batch(0, g1)]
    x, y = _load_digits()
    bad = y.clone()
    tgt = task.role_indices("target")
    bad[tgt] = (bad[tgt] + 3) % 10
    monkeypatch.setattr(domain_shift, "_digits", lambda: (x, bad))
    again = [task.train_batch(32, g2) for _ in range(3)] + [task.train_batch(0, g2)]
    for a, b in zip(ref, again):
        assert torch.equal(a.inputs, b.inputs) and torch.equal(a.targets, b.targets) and torch.equal(a.mask, b.mask)
    # while a source label change does show: the seam is the one the batches read
    bad[task.role_indices("source")] = (y[task.role_indices("source")] + 1) % 10
    assert not torch.equal(task.train_batch(32, torch.Generator().manual_seed(5)).targets[:32], ref[0].targets[:32])


def test_transforms():
    x, _ = _load_digits()
    img = x[:5]
    assert torch.allclose(transform_images(img, rotation=0.0, shift=0, invert=True), 1 - img)
    shifted = transform_images(img, rotation=0.0, shift=1, invert=False).reshape(-1, 8, 8)
    assert torch.equal(shifted[:, 1:, 1:], img.reshape(-1, 8, 8)[:, :7, :7])
    assert (shifted[:, 0, :] == 0).all() and (shifted[:, :, 0] == 0).all()
    quarter = transform_images(img, rotation=90.0, shift=0, invert=False).reshape(-1, 8, 8)
    turned = [torch.rot90(img.reshape(-1, 8, 8), k, dims=(1, 2)) for k in (1, -1)]
    assert min((quarter - t).abs().max().item() for t in turned) < 1e-5


def test_strict_parameters():
    with pytest.raises(ConfigError, match="target domain equals the source"):
        build_task("domain_shift", shift=0)
    with pytest.raises(ConfigError, match="shift must be 0..4"):
        build_task("domain_shift", shift=5)
    with pytest.raises(ConfigError, match="rotation must be degrees"):
        build_task("domain_shift", rotation=400.0)
    with pytest.raises(ConfigError, match="unknown"):
        build_task("domain_shift", angle=3)
