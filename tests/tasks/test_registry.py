"""The task registry: strict building, helpful errors, and the contract every task keeps."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import ClassVar

import pytest
import torch

import layerlab.tasks as tasks_module
from layerlab.errors import ConfigError, UnknownNameError
from layerlab.tasks import Batch, Task, build_task, register_task, task_names

ALL = ["antiderivative", "digits", "distinct_digits", "domain_shift", "in_context_regression", "linear_teacher", "mod_count", "modular", "mqar", "parity", "permutation",
       "permuted_digits", "phase_signal", "poisson1d", "selective_copy", "symbolic", "text"]
CLASSIFICATION = [n for n in ALL if n not in ("antiderivative", "in_context_regression", "linear_teacher", "poisson1d",
                                              "symbolic")]


def small_params(name: str, shakespeare: Path) -> dict:
    return {
        "mqar": dict(vocab=32, length=24, pairs=4, n_eval=32),
        "selective_copy": dict(vocab=8, length=16, n_tokens=4, n_eval=32),
        "parity": dict(length=12, extrapolate=[2], n_eval=32),
        "permutation": dict(group="A5", length=8, extrapolate=[], n_eval=32),
        "mod_count": dict(length=12, n_eval=32),
        "modular": dict(p=11),
        "antiderivative": dict(m=6, n_train=8, n_eval=8),
        "digits": {},
        "distinct_digits": dict(set_size=4, n_eval=32),
        "domain_shift": {},
        "permuted_digits": dict(phases=2, phase_steps=3),
        "phase_signal": dict(length=8, n_eval=16),
        "poisson1d": dict(n=7, n_train=8, n_eval=8),
        "linear_teacher": dict(in_features=4, out_features=3, singular_values=[2, 1], n_train=8, n_eval=16),
        "symbolic": dict(n_train=16, n_eval=16),
        "in_context_regression": dict(dim=3, context=4, n_eval=16),
        "text": dict(path=str(shakespeare), length=32, eval_tokens=256),
    }[name]


def test_names() -> None:
    assert task_names() == ALL


def test_unknown_task_suggests_close_match() -> None:
    with pytest.raises(UnknownNameError) as info:
        build_task("mqr")
    msg = str(info.value)
    assert "'mqar'" in msg and "did you mean" in msg
    assert isinstance(info.value, ConfigError)
    for name in ALL:
        assert name in msg  # lists the valid names


def test_unknown_param_names_key_and_valid_keys() -> None:
    with pytest.raises(ConfigError) as info:
        build_task("mqar", pair=4)
    msg = str(info.value)
    assert "'pair'" in msg and "did you mean 'pairs'" in msg
    assert "task 'mqar'" in msg
    for key in ("vocab", "length", "pairs", "n_eval", "data_seed"):
        assert key in msg


def test_param_types_are_checked() -> None:
    with pytest.raises(ConfigError, match="expected int"):
        build_task("mqar", pairs="8")
    with pytest.raises(ConfigError, match="expected str"):
        build_task("modular", op=1)
    assert build_task("parity", length=8, extrapolate=[]).eval_splits == ("val", "test")


@pytest.mark.parametrize("name", ALL)
def test_class_contract(name: str) -> None:
    cls = tasks_module.get_task_class(name)
    assert issubclass(cls, Task) and dataclasses.is_dataclass(cls)
    assert cls.name == name
    assert cls.metric in ("accuracy", "bpc", "mse", "rmse", "rel_l2")
    assert isinstance(cls.higher_is_better, bool)
    assert cls.__doc__ and "chance" in cls.__doc__.lower()
    fields = dataclasses.fields(cls)
    assert all(f.default is not dataclasses.MISSING for f in fields)  # every parameter has a default
    assert "data_seed" in {f.name for f in fields}


@pytest.mark.parametrize("name", CLASSIFICATION)
def test_data_contract(name: str, shakespeare_path: Path) -> None:
    task = build_task(name, **small_params(name, shakespeare_path))
    assert task.input_kind in ("tokens", "vector", "set")  # a class constant, or a property of the parameters
    batch = task.train_batch(8, torch.Generator().manual_seed(0))
    for b in [batch] + [task.eval_set(s) for s in task.eval_splits]:
        assert isinstance(b, Batch) and len(b) > 0
        if task.input_kind == "tokens":
            assert b.inputs.dtype == b.targets.dtype == torch.int64
            assert b.mask is not None and b.mask.dtype == torch.bool and b.mask.shape == b.inputs.shape
            assert b.mask.any(dim=1).all()  # every row has a scored position
            assert 0 <= int(b.inputs.min()) and int(b.inputs.max()) < task.vocab_size
            assert 0 <= int(b.targets[b.mask].min()) and int(b.targets[b.mask].max()) < task.n_outputs
            assert b.inputs.shape[1] <= task.max_length
        elif task.input_kind == "set":  # (B, n, F) elements, one label per set
            assert b.inputs.dtype == torch.float32 and b.inputs.dim() == 3 and b.inputs.shape[2] == task.input_dim
            assert b.targets.shape == (len(b),) and b.mask is None
        else:
            assert b.inputs.dtype == torch.float32 and b.inputs.shape[1] == task.input_dim
            assert b.targets.shape == (len(b),)
            # a vector batch has no mask, except one marking its labelled rows (domain_shift's unlabelled target rows)
            assert b.mask is None or (b.mask.dtype == torch.bool and b.mask.shape == (len(b),) and bool(b.mask.any()))
    assert task.eval_splits[:2] == ("val", "test")
    with pytest.raises(ConfigError, match="no split"):
        task.eval_set("train")
    if task.higher_is_better:
        assert 0.0 < task.chance < 1.0
    else:
        assert task.chance > 1.0
    # the loss works on model-shaped logits and equals log(C) for equal logits
    shape = (len(batch), task.n_outputs) if task.input_kind != "tokens" else (*batch.inputs.shape, task.n_outputs)
    loss = task.loss(torch.zeros(shape), batch)
    assert loss.item() == pytest.approx(torch.log(torch.tensor(float(task.n_outputs))).item(), rel=1e-6)
    metrics = task.summarize({"ce": 2.0, "n": 4.0, "correct": 1.0, "seqs": 2.0, "exact": 0.0})
    assert task.metric in metrics


def test_regression_data_contract(shakespeare_path: Path) -> None:
    task = build_task("linear_teacher", **small_params("linear_teacher", shakespeare_path))
    assert task.input_kind == "vector" and not task.higher_is_better and task.chance > 0
    batch = task.train_batch(3, torch.Generator().manual_seed(0))
    for b in [batch] + [task.eval_set(s) for s in task.eval_splits]:
        assert b.inputs.is_floating_point() and b.inputs.shape == (len(b), task.input_dim)
        assert b.targets.shape == (len(b), task.n_outputs) and b.mask is None
    # the loss of predicting zero is half the mean squared norm of the targets
    loss = task.loss(torch.zeros(len(batch), task.n_outputs, dtype=torch.float64), batch)
    assert loss.item() == pytest.approx(0.5 * batch.targets.square().sum(1).mean().item(), rel=1e-12)
    assert task.summarize({"se": 3.0, "n": 4.0})[task.metric] == 0.75


@pytest.mark.parametrize("name", ALL)
def test_checksum_is_stable(name: str, shakespeare_path: Path) -> None:
    params = small_params(name, shakespeare_path)
    a, b = build_task(name, **params), build_task(name, **params)
    assert a.checksum() == b.checksum() and len(a.checksum()) == 64


def test_register_rejects_duplicates_and_non_tasks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tasks_module.TASKS, "_entries", dict(tasks_module.TASKS._entries))  # undone after

    @dataclasses.dataclass
    class Other(Task):
        name: ClassVar[str] = "mqar"

    with pytest.raises(ConfigError, match="registered twice"):
        register_task("mqar")(Other)

    class NotADataclass(Task):
        pass

    with pytest.raises(ConfigError, match="dataclass"):
        register_task("plain")(NotADataclass)

    @dataclasses.dataclass
    class Fresh(Task):
        size: int = 3

    register_task("fresh")(Fresh)
    assert Fresh.name == "fresh" and "fresh" in task_names()
    assert tasks_module.TASKS.entry("fresh").source_file == str(Path(__file__).resolve())
    assert tasks_module.TASKS.entry("mqar").source_file == "tasks/recall.py"
    assert build_task("fresh", size=4).size == 4
    with pytest.raises(ConfigError, match="'width'"):
        build_task("fresh", width=4)


@pytest.mark.parametrize("name", ALL)
def test_full_batch_only_for_finite_training_sets(name: str, shakespeare_path: Path) -> None:
    task = build_task(name, **small_params(name, shakespeare_path))
    if name in ("antiderivative", "poisson1d", "modular", "digits", "linear_teacher", "domain_shift", "permuted_digits", "symbolic"):  # a fixed training table: batch_size <= 0 is all of it
        full = task.train_batch(0, torch.Generator())
        assert len(full) == len(task.train_batch(-1, torch.Generator())) >= 8
    else:  # fresh draws: there is no "whole training set"
        with pytest.raises(ConfigError, match="batch_size must be >= 1"):
            task.train_batch(0, torch.Generator())
