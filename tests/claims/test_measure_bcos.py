"""bcos_dynamic_linear: contributions sum to the output (float64), and the check sees a wrong W(x)."""
import pytest
import torch

from layerlab.blocks.channels.bcos import BcosMLP
from layerlab.claims.measures import get_measure


@pytest.mark.parametrize("B,max_out", [(1.0, 1), (2.0, 1), (2.5, 2)])
def test_contributions_sum_to_output(B, max_out):
    out = get_measure("bcos_dynamic_linear")(0, d_model=16, B=B, max_out=max_out)
    assert out["error"] <= 1e-12 and out["output_scale"] > 0.1


def test_measure_detects_a_wrong_dynamic_weight(monkeypatch):
    """Dropping the |cos|^(B-1) scale (the static unit-row weight) must be caught."""
    def static(self, x):
        h = self.gain1 * self.fc1(x)
        w1, w2 = self.fc1.unit_weight(), self.fc2.unit_weight()
        return (self.gain2 * w2) @ (self.gain1 * w1) + 0 * h.sum()

    monkeypatch.setattr(BcosMLP, "dynamic_weight", static)
    assert get_measure("bcos_dynamic_linear")(0, d_model=16)["error"] > 0.1


def test_deterministic_and_global_rng_untouched():
    state = torch.random.get_rng_state()
    a = get_measure("bcos_dynamic_linear")(5, d_model=8)
    assert a == get_measure("bcos_dynamic_linear")(5, d_model=8)
    assert torch.equal(state, torch.random.get_rng_state())
