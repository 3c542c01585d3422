"""The task-structure geometry measurement (Alleman et al. 2024, arXiv:2401.13558)."""
import pytest
import torch

from layerlab.claims.measures import get_measure
from layerlab.claims.measures.task_structure import CODES, condition_inputs
from layerlab.errors import ConfigError
from layerlab.lens import similarity


def test_alignment_one_makes_inputs_the_label_geometry_and_zero_removes_it():
    g = torch.Generator().manual_seed(0)
    assert similarity.cka(condition_inputs(1.0, 32, g), CODES) == pytest.approx(1.0, abs=1e-12)
    # alpha = 0: inputs are 8 random directions, unrelated to the codes (alignment well below 1)
    assert similarity.cka(condition_inputs(0.0, 32, g), CODES) < 0.6


def test_error_is_the_worst_gap_difference():
    out = get_measure("task_structure_geometry")(0, alphas=(0.3, 0.7), steps=20, samples=4)
    assert out["error"] == pytest.approx(max(out["gap_difference_alpha0.3"], out["gap_difference_alpha0.7"]), abs=0)
    gap = lambda a, act: out[f"ka_target_{act}_alpha{a}"] - out[f"ka_input_{act}_alpha{a}"]  # noqa: E731
    assert out["gap_difference_alpha0.3"] == pytest.approx(gap(0.3, "relu") - gap(0.3, "tanh"), abs=1e-12)


def test_rejects_an_alignment_outside_the_unit_interval():
    with pytest.raises(ConfigError, match="alphas in"):
        get_measure("task_structure_geometry")(0, alphas=(1.5,))
