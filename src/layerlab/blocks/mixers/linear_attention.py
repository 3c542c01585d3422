"""Causal linear attention with a positive feature map (a linear transformer as an RNN)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...errors import ConfigError
from ...kernels import linear_attention as linear_attention_kernel
from ...registry import Paper, register
from .._common import wide_dtype
from .base import MultiHeadMixer, State


def check_heads(name: str, d_model: int, n_heads: int) -> None:
    """``n_heads >= 1`` dividing ``d_model``, or a ConfigError that says how to fix it."""
    if int(n_heads) < 1:
        raise ConfigError(f"{name}: n_heads must be >= 1, got {n_heads}")
    if d_model % n_heads != 0:
        divisors = [h for h in range(1, min(d_model, 16) + 1) if d_model % h == 0]
        raise ConfigError(
            f"{name}: d_model={d_model} is not divisible by n_heads={n_heads}; choose d_model a "
            f"multiple of {n_heads} (e.g. {math.ceil(d_model / n_heads) * n_heads}) or n_heads among "
            f"the divisors of {d_model} ({', '.join(map(str, divisors))})"
        )


def check_chunk_size(name: str, chunk_size: int) -> None:
    if int(chunk_size) < 1:
        raise ConfigError(f"{name}: chunk_size must be >= 1 (e.g. 64), got {chunk_size}")


def elu_feature_map(x: Tensor) -> Tensor:
    """phi(x) = elu(x) + 1 > 0 (Katharopoulos et al. 2020, Sec. 3.2.1)."""
    return F.elu(x) + 1.0


@register("mixer", "linear_attention",
          paper=Paper("Transformers are RNNs: Fast Autoregressive Transformers with Linear Attention",
                      2020, "2006.16236"))
class LinearAttention(MultiHeadMixer):
    r"""Causal multi-head linear attention with the feature map ``phi(x) = elu(x) + 1``.

    Paper: Katharopoulos, Vyas, Pappas & Fleuret, "Transformers are RNNs: Fast Autoregressive
    Transformers with Linear Attention", 2020, arXiv:2006.16236 (Sec. 3.2: the feature map;
    Sec. 3.3: causal masking; Sec. 3.4: the RNN form).

    Equation, per head with ``d_h = d_model / h`` and ``Q = X W_Q, K = X W_K, V = X W_V``::

        V'_i = phi(Q_i)^T sum_{j <= i} phi(K_j) V_j^T  /  phi(Q_i)^T sum_{j <= i} phi(K_j)
        y = Concat(heads) W_O

    As a recurrence (Sec. 3.4): ``s_i = s_{i-1} + phi(K_i) V_i^T``, ``z_i = z_{i-1} + phi(K_i)``,
    ``V'_i = phi(Q_i)^T s_i / (phi(Q_i)^T z_i + eps)``. The denominator runs through the same
    kernel as the numerator: the kernel gets the values ``[V_i, 1]`` (a ones column appended), so
    the last column of its state is ``z_i`` and the last column of its output the denominator.
    ``normalize=False`` drops the denominator (the kernel's plain ``phi(Q)^T s_i``).

    Shape: ``(B, L, D) -> (B, L, D)``; output ``t`` depends on inputs ``<= t``.

    Modes: ``"chunk"`` (default): the chunked kernel (``chunk_size`` tokens per chunk);
    ``"reference"``: the kernel's token-by-token recurrence. ``step`` runs the recurrence on the state
    ``(s | z)`` of shape ``(B, h, d_h, d_h + 1)`` (``(B, h, d_h, d_h)`` without ``normalize``).

    Initialization: ``W_Q, W_K, W_V, W_O`` i.i.d. normal with std ``d_model^(-1/2)`` (fan-in, as
    ``attention``), biases zero.

    Options: ``n_heads``, ``normalize`` (the paper's denominator, default True), ``eps`` (added
    to the denominator as in the authors' release; the paper's equation has none — it keeps a
    vanishing ``phi(Q)^T z`` finite), ``bias`` (on the projections), ``chunk_size``, ``device``,
    ``dtype``.

    Differences from the paper: the kernel runs in float32 or wider (float64 stays float64) and
    the output is cast back to the input dtype; no positional information inside the block.
    """

    modes = ("chunk", "reference")
    recurrent = True

    def __init__(
        self,
        d_model: int,
        *,
        n_heads: int = 4,
        normalize: bool = True,
        eps: float = 1e-6,
        bias: bool = False,
        chunk_size: int = 64,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(d_model)
        check_heads("linear_attention", d_model, n_heads)
        check_chunk_size("linear_attention", chunk_size)
        if not eps >= 0:
            raise ConfigError(f"linear_attention: eps must be >= 0 (e.g. 1e-6), got {eps}")
        factory = {"device": device, "dtype": dtype}
        self.n_heads = int(n_heads)
        self.d_head = d_model // self.n_heads
        self.normalize = bool(normalize)
        self.eps = float(eps)
        self.chunk_size = int(chunk_size)
        self.w_qkv = nn.Linear(d_model, 3 * d_model, bias=bias, **factory)
        self.w_o = nn.Linear(d_model, d_model, bias=bias, **factory)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for linear in (self.w_qkv, self.w_o):
            nn.init.normal_(linear.weight, mean=0.0, std=self.d_model ** -0.5)
            if linear.bias is not None:
                nn.init.zeros_(linear.bias)

    def features(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(B, L, D) -> phi(Q), phi(K), V' each (B, h, L, d_h) (V' = [V, 1] with ``normalize``,
        last dim d_h + 1), in float32 or wider."""
        B, L, _ = x.shape
        wide = wide_dtype(x.dtype)
        qkv = self.w_qkv(x).to(wide).view(B, L, 3, self.n_heads, self.d_head)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        if self.normalize:
            v = torch.cat((v, v.new_ones(*v.shape[:-1], 1)), dim=-1)
        return elu_feature_map(q), elu_feature_map(k), v

    def _read(self, out: Tensor) -> Tensor:
        """Kernel output (..., d_h [+ 1]) -> the head's output (..., d_h): numerator / denominator."""
        if not self.normalize:
            return out
        return out[..., :-1] / (out[..., -1:] + self.eps)

    def _forward(self, x: Tensor, mode: str) -> Tensor:
        B, L, D = x.shape
        q, k, v = self.features(x)
        out, _ = linear_attention_kernel(q, k, v, mode="chunk" if mode == "chunk" else "recurrent",
                                         chunk_size=self.chunk_size)
        heads = self._read(out).transpose(1, 2).reshape(B, L, D)
        return self.w_o(heads.to(x.dtype))

    def init_state(self, batch_size: int, *, device: torch.device | str | None = None,
                   dtype: torch.dtype | None = None) -> State:
        f = self._factory(device, dtype)
        wide = wide_dtype(f["dtype"])
        d_v = self.d_head + (1 if self.normalize else 0)
        return (torch.zeros(batch_size, self.n_heads, self.d_head, d_v, device=f["device"], dtype=wide),)

    def _step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        (s,) = state
        q, k, v = (t[:, :, 0] for t in self.features(x_t[:, None]))  # (B, h, d_h[+1])
        s = s + k[..., :, None] * v[..., None, :]  # s_i = s_{i-1} + phi(K_i) [V_i, 1]^T
        out = (q[..., :, None] * s).sum(-2)  # phi(Q_i)^T s_i
        y = self._read(out).reshape(x_t.shape[0], self.d_model)
        return self.w_o(y.to(x_t.dtype)), (s,)

    def extra_repr(self) -> str:
        return (f"d_model={self.d_model}, n_heads={self.n_heads}, normalize={self.normalize}, "
                f"chunk_size={self.chunk_size}, modes={self.modes}")
