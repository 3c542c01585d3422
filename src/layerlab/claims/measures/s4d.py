"""S4D's convolution kernel is a Vandermonde product, and the convolution equals the recurrence.

Paper: Gu, Gupta, Goel & Ré, "On the Parameterization and Initialization of Diagonal State Space
Models", 2022, arXiv:2206.11893 (Sec. 3: S4D; the kernel of a diagonal SSM as a Vandermonde
matrix-vector product, "two lines of code", Fig. 1 and Listing 1).

A diagonal SSM discretized by zero-order hold, ``x_k = Abar x_{k-1} + Bbar u_k``,
``y_k = C x_k + D u_k`` (``Abar = exp(Delta A)``, ``Bbar = (Delta A)^{-1}(exp(Delta A) - I) Delta B``),
unrolls to the convolution ``y = K * u + D u`` with the kernel

    K_l = C Abar^l Bbar = sum_n C_n Bbar_n Abar_n^l,   i.e.  K = (C ⊙ Bbar) V_L(Abar),
    V_L(Abar)[n, l] = Abar_n^l   (a Vandermonde matrix)

(``K_l = 2 Re(...)`` over N/2 modes and their conjugates for a real SSM).

The measurement builds layerlab's ``s4d`` mixer without its output mixing (``mixing="none"``,
float64, S4D-Lin or S4D-Inv initialization drawn from the seed) and compares three forms on random
inputs: the recurrence run token by token (``mode="reference"``), the Vandermonde kernel applied
as a direct causal convolution sum written here, and the mixer's FFT convolution (its default).
``error`` is the largest relative error (max abs difference over max abs output) of the two
convolutions against the recurrence.
"""
from __future__ import annotations

import torch

from ...blocks.mixers.s4d import S4D
from ...errors import ConfigError
from ...registry import Paper
from . import register_measure


def vandermonde_kernel(block: S4D, L: int) -> torch.Tensor:
    """``K`` (H, L) from the discretized SSM: ``2 Re((C ⊙ Bbar) V_L(Abar))``, the Vandermonde product."""
    Abar, Bbar, C = block.discretize(torch.complex128)
    V = Abar.unsqueeze(-1) ** torch.arange(L, dtype=torch.float64)  # (H, N/2, L): Abar_n^l
    return 2 * torch.einsum("hn,hnl->hl", C * Bbar, V).real


def causal_convolution(K: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """``y_l = sum_{j <= l} K_j u_{l-j}`` per channel, written as a sum: u (B, L, H), K (H, L)."""
    B, L, H = u.shape
    y = torch.zeros_like(u)
    for j in range(L):
        y[:, j:] += K[:, j] * u[:, : L - j]
    return y


@register_measure("s4d_vandermonde_convolution", metric="error",
                  paper=Paper("On the Parameterization and Initialization of Diagonal State Space Models",
                              2022, "2206.11893"))
def s4d_vandermonde_convolution(seed: int, *, d_model: int = 16, d_state: int = 64, length: int = 256,
                                batch: int = 2, init: str = "lin") -> dict[str, float]:
    if d_model < 1 or length < 2 or batch < 1:
        raise ConfigError(f"s4d_vandermonde_convolution: need d_model >= 1, length >= 2, batch >= 1; "
                          f"got d_model={d_model}, length={length}, batch={batch}")
    g = torch.Generator().manual_seed(seed)
    block = S4D(d_model, d_state=d_state, init=init, mixing="none", generator=g, dtype=torch.float64)
    u = torch.randn(batch, length, d_model, generator=g, dtype=torch.float64)
    with torch.no_grad():
        y_rec = block(u, mode="reference")
        K = vandermonde_kernel(block, length)
        y_conv = causal_convolution(K, u) + block.D * u
        y_fft = block(u, mode="fft")
    scale = y_rec.abs().max().item()
    conv_err = (y_conv - y_rec).abs().max().item() / scale
    fft_err = (y_fft - y_rec).abs().max().item() / scale
    return {"error": max(conv_err, fft_err), "conv_error": conv_err, "fft_error": fft_err}
