"""al_rnn_piecewise_linear: exact for the AL-RNN, catches a map that is not piecewise affine, counts regions."""
import pytest
import torch

from layerlab.claims.measures import get_measure
from layerlab.errors import ConfigError
from layerlab.models.al_rnn import ALRNN


def test_exact_and_region_count():
    state = torch.random.get_rng_state()
    out = get_measure("al_rnn_piecewise_linear")(0, M=6, P=2, n_states=512)
    assert out["error"] <= 1e-12
    assert out["regions"] == 4 and out["excess_regions"] == 0  # 512 Gaussian states visit all 2^2 patterns
    assert out["fixed_points"] >= 1
    assert torch.equal(state, torch.random.get_rng_state())


def test_detects_a_smooth_nonlinearity(monkeypatch):
    """With softplus instead of ReLU the map is not affine in any subregion: the error must be large."""
    def phi(self, z):
        k = self.M - self.P
        return torch.cat([z[..., :k], torch.nn.functional.softplus(z[..., k:])], dim=-1)

    monkeypatch.setattr(ALRNN, "phi", phi)
    assert get_measure("al_rnn_piecewise_linear")(0, M=6, P=2, n_states=512)["error"] > 1e-3


def test_bad_options():
    with pytest.raises(ConfigError, match="n_states"):
        get_measure("al_rnn_piecewise_linear")(0, n_states=0)
