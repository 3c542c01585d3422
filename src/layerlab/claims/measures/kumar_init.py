r"""Kumar's initialization in a deep random network: does the activation variance stay put?

Paper: Kumar, "On weight initialization in deep neural networks", 2017, arXiv:1704.08863 (Sec. 3):
for an activation g differentiable at 0, linearising g(x) ≈ g(0) + g'(0) x, a layer keeps the
variance of its activations when its weights (fan-in N) have

    Var(w) = 1 / (N g'(0)² (1 + g(0)²))

(tanh: 1/N; sigmoid: 12.8/N, σ_w ≈ 3.6/√N), where Xavier's 2/(N + M) = 1/N at N = M ignores g(0)
and g'(0).

The measurement forwards ``batch`` inputs x ~ N(0, I) through ``depth`` layers h_l = g(W_l h_{l-1})
of ``width`` units (no biases, float64), each W_l drawn by ``scheme`` (``layerlab.methods.
initializers.weight_variance``) from a generator seeded by ``seed``, and records the activation
variance v_l = Var(h_l) over units and examples. ``error = max_l |ln(v_l / v_1)|``: how far (as
a log factor) the activation variance moves from its first layer's over the depth. Also: v_1,
v_depth, the pre-activation variances of the first and last layer, and the same error under
``compare`` (Xavier by default) on the same inputs.
"""
from __future__ import annotations

import math

import torch

from ...errors import ConfigError
from ...methods.initializers import SCHEMES, activation_function, weight_variance
from ...registry import Paper
from . import register_measure

PAPER = Paper("On weight initialization in deep neural networks", 2017, "1704.08863")


def activation_variances(x: torch.Tensor, activation: str, scheme: str, depth: int,
                         generator: torch.Generator) -> tuple[list[float], list[float]]:
    """Per-layer variances of the activations h_l and pre-activations z_l = W_l h_{l-1}."""
    g = activation_function(activation)
    width = x.shape[1]
    std = math.sqrt(weight_variance(scheme, width, width, activation))
    h, acts, pres = x, [], []
    for _ in range(depth):
        w = std * torch.randn(width, width, generator=generator, dtype=x.dtype)
        z = h @ w.T
        h = g(z)
        pres.append(z.var().item())
        acts.append(h.var().item())
    return acts, pres


def drift(variances: list[float]) -> float:
    """max_l |ln(v_l / v_1)| (inf once a variance is 0 or not finite)."""
    v1 = variances[0]
    if not all(math.isfinite(v) and v > 0 for v in variances):
        return math.inf
    return max(abs(math.log(v / v1)) for v in variances)


@register_measure("kumar_init_variance", metric="error", paper=PAPER)
def kumar_init_variance(seed: int, *, activation: str = "sigmoid", scheme: str = "kumar", compare: str = "xavier",
                        depth: int = 100, width: int = 256, batch: int = 512) -> dict[str, float]:
    if depth < 1 or width < 1 or batch < 2:
        raise ConfigError(f"kumar_init_variance: need depth >= 1, width >= 1, batch >= 2; got {depth}, {width}, {batch}")
    for name, s in (("scheme", scheme), ("compare", compare)):
        if s not in SCHEMES:
            raise ConfigError(f"kumar_init_variance: {name} must be one of {', '.join(SCHEMES)}, got {s!r}")
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, width, generator=gen, dtype=torch.float64)
    acts, pres = activation_variances(x, activation, scheme, depth, gen)
    other, _ = activation_variances(x, activation, compare, depth, gen)
    return {"error": drift(acts), "var_first": acts[0], "var_last": acts[-1], "pre_var_first": pres[0],
            "pre_var_last": pres[-1], "compare_error": drift(other), "compare_var_first": other[0],
            "compare_var_last": other[-1]}
