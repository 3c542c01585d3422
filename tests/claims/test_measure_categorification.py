"""diagram_factored_evaluation: every family is visited, the error is at rounding level, and a wrong
factored form (a diagram's output legs swapped) would be reported."""
import pytest
import torch

from layerlab.blocks.equivariant import PartitionLinear
from layerlab.claims.measures import get_measure
from layerlab.errors import ConfigError

MEASURE = get_measure("diagram_factored_evaluation")


def test_families_and_error():
    outs = [MEASURE(s) for s in range(5)]
    assert sorted(o["family"] for o in outs) == [0, 1, 2, 3, 4]
    assert all(o["error"] < 1e-12 and o["diagrams"] >= 1 for o in outs)


def test_a_wrong_factorisation_is_reported(monkeypatch):
    """A factored form that reverses the output legs (a different diagram) gives a large error."""
    right = PartitionLinear.apply

    def wrong(self, d, x, k=None, l=None):
        y = right(self, d, x, k, l)
        return y.flip(-1)

    monkeypatch.setattr(PartitionLinear, "apply", wrong)
    out = MEASURE(0)  # seed 0 -> the partition family
    assert out["family"] == 0 and out["error"] > 1e-3


def test_bad_options_and_rng():
    state = torch.random.get_rng_state()
    MEASURE(0)
    assert torch.equal(state, torch.random.get_rng_state())
    with pytest.raises(ConfigError, match="families"):
        MEASURE(0, families=("unitary",))
