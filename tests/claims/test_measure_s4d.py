"""The S4D convolution measurement: the Vandermonde kernel against the impulse response of the
recurrence, and a wrong discretization is caught."""
import pytest
import torch

from layerlab.blocks.mixers.s4d import S4D
from layerlab.claims.measures import get_measure
from layerlab.claims.measures.s4d import causal_convolution, vandermonde_kernel
from layerlab.errors import ConfigError


def test_vandermonde_kernel_is_the_impulse_response_of_the_recurrence():
    block = S4D(3, d_state=8, mixing="none", generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    L = 12
    impulse = torch.zeros(1, L, 3, dtype=torch.float64)
    impulse[0, 0] = 1.0
    with torch.no_grad():
        response = block(impulse, mode="reference")[0].T - block.D.unsqueeze(-1) * impulse[0].T  # (H, L)
        K = vandermonde_kernel(block, L)
    assert (K - response).abs().max().item() < 1e-12


def test_causal_convolution_is_causal_and_exact_on_a_small_case():
    K = torch.tensor([[1.0, 2.0, 3.0]], dtype=torch.float64)
    u = torch.tensor([[[1.0], [0.0], [-1.0]]], dtype=torch.float64)
    y = causal_convolution(K, u)
    assert y[0, :, 0].tolist() == [1.0, 2.0, 3.0 - 1.0]


def test_measurement_is_small_and_catches_a_wrong_bbar(monkeypatch):
    assert get_measure("s4d_vandermonde_convolution")(0, d_model=4, d_state=8, length=32)["error"] < 1e-12
    original = S4D.discretize

    def euler(self, cdtype):  # Bbar = Delta B (Euler) instead of the zero-order hold
        Abar, _, C = original(self, cdtype)
        return Abar, torch.exp(self.log_dt.to(torch.float64)).unsqueeze(-1).to(Abar.dtype).expand_as(Abar), C

    monkeypatch.setattr(S4D, "discretize", euler)
    assert get_measure("s4d_vandermonde_convolution")(0, d_model=4, d_state=8, length=32)["error"] > 1e-3


def test_bad_options_name_the_problem():
    with pytest.raises(ConfigError, match="length"):
        get_measure("s4d_vandermonde_convolution")(0, length=1)
