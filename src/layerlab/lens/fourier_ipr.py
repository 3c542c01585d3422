r"""Fourier localisation of weights: the inverse participation ratio (IPR) in the DFT basis.

Paper: Doshi, Das, He & Gromov, "To grok or not to grok: Disentangling generalization and
memorization on corrupted algorithmic datasets", 2023 (ICLR 2024), arXiv:2310.13061. A network
trained on modular arithmetic ``a + b mod p`` generalizes with *periodic* neurons, whose weights
over the ``p`` residues are a few Fourier modes, and memorizes (corrupted labels) with neurons whose
weights are not; the paper tells them apart by the inverse participation ratio of a neuron's weights
in the Fourier basis,

    IPR_r(nu) = (||nu||_{2r} / ||nu||_2)^{2r} = sum_k |nu_k|^{2r} / (sum_k |nu_k|^2)^r,   r = 2,

with ``nu`` the discrete Fourier transform of the weight vector: high IPR (localised in frequency)
= generalizing, low IPR = memorizing, and pruning the low-IPR neurons lowers the accuracy on the
corrupted training labels while keeping or raising the clean accuracy. (Verified: the abstract and
the ICLR abstract page -- two-layer MLP and Transformer on modular arithmetic with a fraction xi of
corrupted labels, neurons identified and pruned; the IPR formula with ``r = 2`` is the usual
definition, which the stored summary and our notes give; the paper's body was not readable here.)

Conventions of this module (the DFT is unitary, ``nu_k = p^{-1/2} sum_j w_j e^{-2 pi i jk/p}``, so
``sum_k |nu_k|^2 = ||w||^2``):

- ``fold=False``: the IPR of the ``p`` complex coefficients. A real vector has ``|nu_k| = |nu_{p-k}|``,
  so one real sinusoid ``cos(2 pi k j / p + phi)`` (``0 < k < p/2``) has IPR exactly ``1/2``, a one-hot
  (delta) vector ``1/p``, a constant vector ``1``.
- ``fold=True`` (default): the IPR of the *frequency powers* ``P_0 = |nu_0|^2``, ``P_k = |nu_k|^2 +
  |nu_{p-k}|^2`` (``0 < k < p/2``; for even ``p`` also ``P_{p/2} = |nu_{p/2}|^2``), i.e. of
  ``sqrt(P_k)``: ``sum_k P_k^2 / (sum_k P_k)^2``. One sinusoid of any phase has IPR exactly 1, and a
  delta ``(2p - 1) / p^2`` for odd ``p``. This is the phase-free form we use on real weights.

For a two-layer MLP on the concatenated one-hot codes of the operands (input weights ``U`` of shape
``(N, n_operands * p)``, readout ``W`` of shape ``(p_out, N)``), ``neuron_ipr`` gives each neuron's IPR
of each operand block ``U[n, i*p:(i+1)*p]`` and of its readout column ``W[:, n]``; averaging them into
one score per neuron is the measurement's choice (``claims/measures/grok_or_not.py``).

Reference form ``dft_reference`` (the sum over ``j`` written out with the Fourier matrix) beside the
fast form ``dft`` (``torch.fft``); tested equal. These are pure functions of weight tensors (they
never touch a model, its gradients or RNG), so they are side-effect free by construction.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from ..errors import ConfigError, ShapeError

__all__ = ["dft", "dft_reference", "dominant_frequency", "fourier_ipr", "frequency_power", "ipr", "neuron_ipr"]


def _real(w: Tensor, what: str) -> Tensor:
    if not isinstance(w, Tensor):
        raise ConfigError(f"{what}: expected a tensor, got {type(w).__name__}")
    if w.is_complex():
        raise ConfigError(f"{what}: expected real weights, got dtype {w.dtype}")
    return w.detach().to(torch.float64)


def dft_reference(w: Tensor, dim: int = -1) -> Tensor:
    """``nu_k = p^{-1/2} sum_j w_j exp(-2 pi i j k / p)`` along ``dim``, by the Fourier matrix (reference form)."""
    w = _real(w, "dft_reference")
    p = w.shape[dim]
    j = torch.arange(p, dtype=torch.float64)
    angle = -2.0 * math.pi * torch.outer(j, j) / p
    fourier = torch.polar(torch.ones_like(angle), angle) / math.sqrt(p)  # F[j, k]
    return torch.movedim(torch.movedim(w, dim, -1).to(torch.complex128) @ fourier, -1, dim)


def dft(w: Tensor, dim: int = -1) -> Tensor:
    """The unitary DFT along ``dim`` (``torch.fft``; equal to ``dft_reference``)."""
    return torch.fft.fft(_real(w, "dft"), dim=dim, norm="ortho")


def frequency_power(w: Tensor, dim: int = -1) -> Tensor:
    """Power per frequency ``P_k``, ``k = 0 .. floor(p/2)``, the conjugate pair ``k, p - k`` summed;
    ``sum_k P_k = ||w||^2``. Shape: ``w``'s with ``dim`` of size ``floor(p/2) + 1``."""
    power = torch.movedim(dft(w, dim).abs().square(), dim, -1)
    p = power.shape[-1]
    folded = power[..., : p // 2 + 1].clone()
    k = torch.arange(1, (p + 1) // 2)  # 0 < k < p/2: the pairs (k, p - k)
    folded[..., k] = folded[..., k] + power[..., p - k]
    return torch.movedim(folded, -1, dim)


def ipr(v: Tensor, r: float = 2, dim: int = -1) -> Tensor:
    """``IPR_r(v) = sum_k |v_k|^{2r} / (sum_k |v_k|^2)^r`` along ``dim`` (NaN for a zero vector)."""
    if not (isinstance(r, (int, float)) and not isinstance(r, bool) and r >= 1):
        raise ConfigError(f"ipr: r must be a number >= 1 (the paper uses r = 2), got {r!r}")
    a = v.detach().abs().to(torch.float64)
    a2 = (a / a.amax(dim, keepdim=True)).square()  # scaled first: tiny weights (1e-200) must not underflow to 0/0
    share = a2 / a2.sum(dim, keepdim=True)
    return (share ** r).sum(dim)


def fourier_ipr(w: Tensor, dim: int = -1, *, r: float = 2, fold: bool = True) -> Tensor:
    """The IPR of ``w``'s DFT along ``dim``: of the powers per frequency (``fold=True``: 1 for one
    sinusoid of any phase) or of the ``p`` complex coefficients (``fold=False``: 1/2 for a sinusoid)."""
    if w.shape[dim] < 2:
        raise ShapeError(f"fourier_ipr: need at least 2 residues along dim {dim}, got shape {tuple(w.shape)}")
    w = _real(w, "fourier_ipr")
    w = w / w.abs().amax(dim, keepdim=True)  # IPR is scale-free; this keeps |w|^4 of tiny weights from underflowing
    if fold:
        return ipr(frequency_power(w, dim).sqrt(), r, dim)
    return ipr(dft(w, dim), r, dim)


def dominant_frequency(w: Tensor, dim: int = -1) -> Tensor:
    """The frequency ``k in 0 .. floor(p/2)`` with the largest power ``P_k`` (long tensor)."""
    return frequency_power(w, dim).argmax(dim)


def neuron_ipr(first: Tensor, second: Tensor | None = None, *, p: int, r: float = 2, fold: bool = True) -> Tensor:
    """Per neuron of a two-layer MLP on one-hot operands: the Fourier IPR of each operand block of its
    input weights and (``second`` given) of its readout column.

    ``first``: ``(N, n_operands * p)`` input weights; ``second``: ``(p_out, N)`` readout weights with
    ``p_out >= 2`` (the residues of the answer). Returns ``(N, n_operands [+ 1])``.
    """
    if not isinstance(p, int) or p < 2:
        raise ConfigError(f"neuron_ipr: p (the modulus) must be an integer >= 2, got {p!r}")
    if first.ndim != 2 or first.shape[1] % p != 0:
        raise ShapeError(f"neuron_ipr: first-layer weights must be (N, n_operands * p) with p = {p}, "
                         f"got shape {tuple(first.shape)}")
    n = first.shape[0]
    blocks = first.reshape(n, first.shape[1] // p, p)  # (N, n_operands, p)
    out = fourier_ipr(blocks, -1, r=r, fold=fold)
    if second is None:
        return out
    if second.ndim != 2 or second.shape[1] != n:
        raise ShapeError(f"neuron_ipr: readout weights must be (p_out, N) with N = {n}, got shape {tuple(second.shape)}")
    return torch.cat([out, fourier_ipr(second.T, -1, r=r, fold=fold)[:, None]], 1)
