"""kv_bottleneck_class_incremental: the protocol is class-incremental (no replay), both models learn a
joint task, results are deterministic and leave the global RNG alone."""
import pytest
import torch

from layerlab.claims.measures import get_measure
from layerlab.errors import ConfigError

FAST = {"steps_per_task": 40, "kmeans_steps": 3}


def test_joint_task_learns_and_class_incremental_linear_head_forgets():
    """One task with all classes: both models learn, nothing to forget. Ten tasks of one class at the
    same large step: without replay the linear head loses part of what it learned (a joint-training
    bug would leave it at its joint accuracy with zero forgetting)."""
    joint = get_measure("kv_bottleneck_class_incremental")(1, n_tasks=1, lrs=[10.0], **FAST)
    assert joint["accuracy_linear"] > 0.85 and joint["accuracy_dkvb"] > 0.8
    assert joint["forgetting_linear"] == 0.0 and joint["forgetting_dkvb"] == 0.0
    assert joint["gap"] == pytest.approx(joint["accuracy_linear"] - joint["accuracy_dkvb"])
    split = get_measure("kv_bottleneck_class_incremental")(1, n_tasks=10, lrs=[10.0], **FAST)
    assert split["forgetting_linear"] > 0.1
    assert split["accuracy_linear"] < joint["accuracy_linear"] - 0.1


def test_deterministic_and_global_rng_untouched():
    state = torch.random.get_rng_state()
    a = get_measure("kv_bottleneck_class_incremental")(2, lrs=[1.0], steps_per_task=5, kmeans_steps=1)
    assert a == get_measure("kv_bottleneck_class_incremental")(2, lrs=[1.0], steps_per_task=5, kmeans_steps=1)
    assert torch.equal(state, torch.random.get_rng_state())


def test_bad_options():
    with pytest.raises(ConfigError, match="n_tasks"):
        get_measure("kv_bottleneck_class_incremental")(0, n_tasks=3)
    with pytest.raises(ConfigError, match="lrs"):
        get_measure("kv_bottleneck_class_incremental")(0, lrs=[])
