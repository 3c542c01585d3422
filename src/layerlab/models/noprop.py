"""NoProp-DT: T blocks, each learning on its own to denoise a noisy label embedding given the input.

Li, Teh & Pascanu, "NoProp: Training Neural Networks without Back-propagation or
Forward-propagation" (2025, arXiv:2503.24322), the discrete-time variant NoProp-DT.

Notation (the paper's): labels ``y`` with embeddings ``u_y`` (rows of ``W_Embed``); latents
``z_0, ..., z_T`` with ``z_0`` pure noise and ``z_T`` the least noisy; the fixed variational
process ``q(z_t | y) = N(sqrt(ᾱ_t) u_y, (1 - ᾱ_t) I)`` with ``q(z_{t-1} | z_t) =
N(sqrt(α_{t-1}) z_t, (1 - α_{t-1}) I)``, i.e. ``ᾱ_{t-1} = α_{t-1} ᾱ_t``, and
``SNR(t) = ᾱ_t / (1 - ᾱ_t)``.

Block ``t`` (``t = 1..T``) predicts the clean embedding from the previous latent and the input,
``û_θt(z_{t-1}, x)``; here a small MLP whose class probabilities weight the embeddings,

    û_θt(z, x) = softmax(W_o GELU(W_h [GELU(W_x x + b_x); GELU(W_z z + b_z)] + b_h) + b_o) W_Embed.

Inference (``forward``) runs the chain from noise and classifies the last latent:

    z_0 ~ N(0, I),  z_t = a_t û_θt(z_{t-1}, x) + b_t z_{t-1} + sqrt(c_t) ε_t,  ŷ = argmax p̂_θout(y | z_T),

with ``a_t, b_t, c_t`` the mean coefficients and variance of ``q(z_t | z_{t-1}, y)`` (Gaussian
conditioning, ``u_y`` replaced by the block's prediction)::

    a_t = sqrt(ᾱ_t) (1 - α_{t-1}) / (1 - ᾱ_{t-1}),  b_t = sqrt(α_{t-1}) (1 - ᾱ_t) / (1 - ᾱ_{t-1}),
    c_t = (1 - ᾱ_t) (1 - α_{t-1}) / (1 - ᾱ_{t-1}).

Training objective (the paper's Eq. for NoProp-DT; ``losses`` returns its parts, the ``noprop``
training method (``layerlab.methods.noprop``) sums them):

    L = E_{q(z_T|y)}[-log p̂_θout(y | z_T)] + D_KL(q(z_0|y) || p(z_0))
        + (T/2) η E_{t ~ U{1..T}} E_{q(z_{t-1}|y)} [(SNR(t) - SNR(t-1)) ||û_θt(z_{t-1}, x) - u_y||²],

where each block's input ``z_{t-1}`` is *sampled from q given the label*, never computed by another
block, so block ``t``'s loss has no gradient path into any other block (tested): each block is
trained on its own, with no forward or backward pass through the stack. Here all T terms are
summed at every step (``T E_t[.] = Σ_t``), which equals the paper's per-block loop in expectation.

Choices (``ModelSpec``): ``n_layers`` = T blocks, ``d_model`` = each block's hidden width; the
label embedding is one-hot and fixed (``W_Embed = I``, the paper's "one-hot" setting, embedding
dimension = classes); the noise schedule is the cosine schedule in the paper's order,
``ᾱ_t = cos²(π/2 · (T - t + 1)/(T + 1))``, so ``ᾱ_0 = 0`` (``z_0`` carries no label:
``q(z_0|y) = p(z_0)``, KL 0) and ``ᾱ_T = cos²(π/(2(T+1)))`` < 1 (finite SNR). Inference noise
comes from a generator seeded with 0 at every call (or one passed in), so evaluation is
deterministic and the global RNG is untouched. The classifier ``p̂_θout`` is a linear layer on
``z_T``. Parameters: PyTorch's ``nn.Linear`` initialization. Shape: ``(B, F) -> (B, n_classes)``.
Trained without the ``noprop`` method, this model is the same stack trained end-to-end by
back-propagation through the sampled chain (not NoProp).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError, ShapeError

INFERENCE_SEED = 0


def cosine_alpha_bar(T: int) -> Tensor:
    """ᾱ_t for t = 0..T (float64): cos²(π/2 · (T - t + 1)/(T + 1)); ᾱ_0 = 0, increasing to ᾱ_T < 1."""
    t = torch.arange(T + 1, dtype=torch.float64)
    alpha_bar = torch.cos(0.5 * math.pi * (T - t + 1) / (T + 1)) ** 2
    alpha_bar[0] = 0.0  # cos(π/2) is 6e-17 in floating point: z_0 is exactly the prior
    return alpha_bar


def posterior_coefficients(alpha_bar: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(a_t, b_t, c_t) for t = 1..T from ᾱ_0..ᾱ_T: q(z_t | z_{t-1}, y) = N(a_t u_y + b_t z_{t-1}, c_t I)."""
    ab_t, ab_prev = alpha_bar[1:], alpha_bar[:-1]
    alpha_prev = ab_prev / ab_t  # α_{t-1} = ᾱ_{t-1} / ᾱ_t
    a = ab_t.sqrt() * (1 - alpha_prev) / (1 - ab_prev)
    b = alpha_prev.sqrt() * (1 - ab_t) / (1 - ab_prev)
    c = (1 - ab_t) * (1 - alpha_prev) / (1 - ab_prev)
    return a, b, c


class DenoisingBlock(nn.Module):
    """û(z, x) = softmax(W_o GELU(W_h [GELU(W_x x + b_x); GELU(W_z z + b_z)] + b_h) + b_o) W_Embed."""

    def __init__(self, in_features: int, embed_dim: int, hidden: int, n_classes: int) -> None:
        super().__init__()
        self.x_in = nn.Linear(in_features, hidden)
        self.z_in = nn.Linear(embed_dim, hidden)
        self.mix = nn.Linear(2 * hidden, hidden)
        self.out = nn.Linear(hidden, n_classes)

    def forward(self, z: Tensor, x: Tensor, embedding: Tensor) -> Tensor:
        h = torch.cat([F.gelu(self.x_in(x)), F.gelu(self.z_in(z))], dim=-1)
        return torch.softmax(self.out(F.gelu(self.mix(h))), dim=-1) @ embedding


@dataclass
class NoPropLosses:
    """The parts of the NoProp-DT objective on one batch."""

    blocks: Tensor  # (T,): ||û_θt(z_{t-1}, x) - u_y||² per block, mean over the batch
    weights: Tensor  # (T,): SNR(t) - SNR(t-1)
    cross_entropy: Tensor  # -log p̂_θout(y | z_T), z_T ~ q(z_T | y)
    kl: Tensor  # D_KL(q(z_0|y) || N(0, I))

    def total(self, eta: float) -> Tensor:
        return self.cross_entropy + self.kl + 0.5 * eta * (self.weights * self.blocks).sum()


class NoProp(nn.Module):
    """NoProp-DT classifier (Li, Teh & Pascanu, "NoProp: Training Neural Networks without
    Back-propagation or Forward-propagation", 2025, arXiv:2503.24322): T denoising blocks
    û_θt(z_{t-1}, x), inference z_t = a_t û_θt(z_{t-1}, x) + b_t z_{t-1} + sqrt(c_t) ε_t from
    z_0 ~ N(0, I), logits = p̂_θout(z_T). Train it with the ``noprop`` method (local losses).
    See the module docstring for the equations and choices."""

    def __init__(self, spec: Any, *, in_features: int, n_classes: int) -> None:
        super().__init__()
        if in_features < 1 or n_classes < 2:
            raise ConfigError(f"NoProp needs in_features >= 1 and a classification task with n_classes >= 2; "
                              f"got {in_features}, {n_classes}")
        self.spec = spec
        self.in_features, self.n_classes, self.T = int(in_features), int(n_classes), int(spec.n_layers)
        self.register_buffer("embedding", torch.eye(n_classes))  # W_Embed: one-hot, fixed
        self.blocks = nn.ModuleList(DenoisingBlock(in_features, n_classes, spec.d_model, n_classes)
                                    for _ in range(self.T))
        self.classifier = nn.Linear(n_classes, n_classes)  # p̂_θout(y | z_T)
        alpha_bar = cosine_alpha_bar(self.T)
        a, b, c = posterior_coefficients(alpha_bar)
        snr = alpha_bar / (1 - alpha_bar)
        self.register_buffer("alpha_bar", alpha_bar.float())
        self.register_buffer("a", a.float())
        self.register_buffer("b", b.float())
        self.register_buffer("c", c.float())
        self.register_buffer("snr_gain", (snr[1:] - snr[:-1]).float())  # SNR(t) - SNR(t-1), t = 1..T

    def _check(self, x: Tensor) -> None:
        if x.dim() != 2 or x.shape[1] != self.in_features:
            raise ShapeError(f"NoProp expects input of shape (B, F) with F = in_features = {self.in_features}; "
                             f"got {tuple(x.shape)}")

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        self._check(x)
        if generator is None:
            generator = torch.Generator(device=x.device).manual_seed(INFERENCE_SEED)
        shape = (x.shape[0], self.n_classes)
        z = torch.randn(shape, generator=generator, device=x.device, dtype=x.dtype)
        for t, block in enumerate(self.blocks):
            u_hat = block(z, x, self.embedding)
            noise = torch.randn(shape, generator=generator, device=x.device, dtype=x.dtype)
            z = self.a[t] * u_hat + self.b[t] * z + self.c[t].sqrt() * noise
        return self.classifier(z)

    def sample_q(self, u: Tensor, t: int, generator: torch.Generator) -> Tensor:
        """z_t ~ q(z_t | y) = N(sqrt(ᾱ_t) u_y, (1 - ᾱ_t) I)."""
        eps = torch.randn(u.shape, generator=generator, device=u.device, dtype=u.dtype)
        return self.alpha_bar[t].sqrt() * u + (1 - self.alpha_bar[t]).sqrt() * eps

    def losses(self, x: Tensor, y: Tensor, generator: torch.Generator) -> NoPropLosses:
        """The parts of the NoProp-DT objective on (x, y); noise from `generator`."""
        self._check(x)
        u = self.embedding[y]
        per_block = []
        for t, block in enumerate(self.blocks, start=1):
            z_prev = self.sample_q(u, t - 1, generator).detach()  # the block's input: a sample, not another block's output
            per_block.append(((block(z_prev, x, self.embedding) - u) ** 2).sum(-1).mean())
        z_T = self.sample_q(u, self.T, generator).detach()
        ce = F.cross_entropy(self.classifier(z_T), y)
        ab0, e = self.alpha_bar[0], u.shape[-1]
        # KL(N(sqrt(ab0) u, (1 - ab0) I) || N(0, I)); 0 with this schedule (ab0 = 0)
        kl = 0.5 * (ab0 * (u ** 2).sum(-1) + e * (1 - ab0) - e - e * torch.log1p(-ab0)).mean()
        return NoPropLosses(torch.stack(per_block), self.snr_gain, ce, kl)
