"""SortedNet: nested sub-networks along width, trained together with the full model.

Valipour, Rezagholizadeh, Rajabzadeh, Kavehzadeh, Tahaei, Chen & Ghodsi, "SortedNet, a Place for
Every Network and Every Network in its Place: Towards a Generalized Solution for Training
Many-in-One Neural Networks" (2023, arXiv:2309.00255; v3 is titled "SortedNet: A Scalable and
Generalized Framework for Training Modular Deep Neural Networks").

A *sorted* architecture nests its sub-models: sub-model ``n`` keeps the first units of each
sorted dimension, ``θ_1 ⊂ θ_2 ⊂ ... ⊂ θ_K = θ`` (shared parameters). Training samples
sub-models at random and accumulates their gradients before one update, so the objective is

    min_θ  L(f(x; θ)) + Σ_{i=1}^{m} L(f(x; θ_{b_i})),    b_i ~ U(widths)

(the full model's loss, the run's own, plus ``m = samples`` sampled sub-models per step; summing
the losses before one backward pass accumulates exactly the gradients of separate backward
passes). Every prefix width is then usable at inference without any search.

Which width: the paper sorts any dimension (depth, width, attention heads); for CNNs "width" is
the channels of the layers. In an MLP channel mixer ``W_2 act(W_1 x + b_1) + b_2`` the width is
its hidden units, and that is what is sorted here: the sub-model of fraction ``w`` uses hidden
units ``1..k``, ``k = max(1, round(w · hidden))``, in every MLP (``mlp``, ``swiglu``) of the
model::

    MLP_k(x) = W_2[:, :k] act(W_1[:k] x + b_1[:k]) + b_2

``d_model`` (the residual stream that the input projection, every norm and the head read) is kept
whole: a prefix of it would change every RMS/LayerNorm statistic, so it is not a sub-network of
the same architecture in this backbone.

Forms: training sub-models run with the sliced weights (``torch.func.functional_call``), which is
exactly the forward of a smaller model holding copies of the prefix weights (tested bitwise) and
costs only its width. ``eval_width`` < 1 makes the model *evaluate* at that prefix (hidden units
beyond ``k`` zeroed by a forward hook on each MLP's activation, active only in eval mode; equal to
the sliced form to rounding), so the arena records a prefix width's accuracy; with ``samples = 0``
the method trains only the full model (ordinary training, bit-identical) and evaluates at
``eval_width``: the paper's baseline of truncating a normally trained network.

Options: ``widths`` (fractions in (0, 1], default ``[0.25, 0.5, 0.75]``), ``samples`` (sub-models
per step, default 1, >= 0), ``eval_width`` (default 1.0: the full model). Widths come from the
method's own generator (carried in checkpoints).
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call

from ..blocks.channels.mlp import MLP, SwiGLU
from ..errors import ConfigError
from ..registry import Paper, register
from .base import Method, RunContext

PAPER = Paper("SortedNet, a Place for Every Network and Every Network in its Place: Towards a Generalized "
              "Solution for Training Many-in-One Neural Networks", 2023, "2309.00255")

# per channel class: (layers whose output rows are hidden units, layers whose input columns are,
# the submodule whose output is masked in eval mode)
_SORTED = {MLP: (("fc1",), ("fc2",), "act"), SwiGLU: (("w", "v"), ("w2",), "v")}


def sorted_channels(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The (qualified name, module) of every MLP channel mixer whose hidden width can be sorted."""
    return [(name, m) for name, m in model.named_modules() if type(m) in _SORTED]


def prefix_width(hidden: int, fraction: float) -> int:
    """Hidden units kept at width fraction `fraction`: max(1, round(fraction * hidden))."""
    return max(1, min(hidden, round(fraction * hidden)))


def prefix_parameters(model: nn.Module, fraction: float) -> dict[str, Tensor]:
    """The sliced parameters of the sub-model at `fraction` (views of the model's own, so gradients
    flow into their prefix): rows ``:k`` of each MLP's first layer(s), columns ``:k`` of its last."""
    out: dict[str, Tensor] = {}
    for name, m in sorted_channels(model):
        rows, cols, _ = _SORTED[type(m)]
        k = prefix_width(m.hidden, fraction)
        for layer in rows:
            lin = getattr(m, layer)
            out[f"{name}.{layer}.weight"] = lin.weight[:k]
            if lin.bias is not None:
                out[f"{name}.{layer}.bias"] = lin.bias[:k]
        for layer in cols:
            out[f"{name}.{layer}.weight"] = getattr(m, layer).weight[:, :k]
    return out


def forward_at_width(model: nn.Module, x: Tensor, fraction: float) -> Tensor:
    """The output of the nested sub-model at width `fraction` (fraction 1: the model itself)."""
    if fraction >= 1.0:
        return model(x)
    return functional_call(model, prefix_parameters(model, fraction), (x,))


@contextlib.contextmanager
def evaluated_at_width(model: nn.Module, fraction: float) -> Iterator[None]:
    """Within the block, the model in eval mode computes its prefix sub-model at `fraction`."""
    handles = install_eval_width(model, fraction)
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def install_eval_width(model: nn.Module, fraction: float) -> list[Any]:
    """Forward hooks that zero the hidden units beyond the prefix of every sorted MLP, in eval mode
    only (training is untouched); returns their handles."""
    handles = []
    for _, m in sorted_channels(model):
        k = prefix_width(m.hidden, fraction)
        point = getattr(m, _SORTED[type(m)][2])

        def mask(module: nn.Module, args: Any, output: Tensor, k: int = k, owner: nn.Module = m) -> Tensor | None:
            if owner.training:
                return None
            keep = torch.zeros(output.shape[-1], dtype=output.dtype, device=output.device)
            keep[:k] = 1
            return output * keep

        handles.append(point.register_forward_hook(mask))
    return handles


def _check_fraction(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 < value <= 1) \
            or not math.isfinite(value):
        raise ConfigError(f"sortednet: {what} must be a width fraction in (0, 1] (e.g. 0.25 keeps a quarter of "
                          f"each MLP's hidden units), got {value!r}")
    return float(value)


@register("method", "sortednet", paper=PAPER)
class SortedNet(Method):
    """SortedNet (Valipour et al., "SortedNet, a Place for Every Network and Every Network in its Place:
    Towards a Generalized Solution for Training Many-in-One Neural Networks", 2023, arXiv:2309.00255):
    nested sub-models θ_1 ⊂ ... ⊂ θ_K share parameters; each step minimises
    L(f(x; θ)) + Σ_{i=1}^{m} L(f(x; θ_{b_i})), b_i ~ U(widths), i.e. accumulates the gradients of
    sampled sub-models with the full model's. Width = the first k hidden units of every MLP channel
    mixer (``mlp``, ``swiglu``). Hooks: setup, loss. Options: ``widths`` (fractions in (0, 1]),
    ``samples`` (sub-models per step, >= 0; 0 = ordinary training), ``eval_width`` (the prefix the
    model is evaluated at; 1 = full).
    """

    def __init__(self, *, widths: Sequence[float] = (0.25, 0.5, 0.75), samples: int = 1,
                 eval_width: float = 1.0) -> None:
        if isinstance(widths, (str, bytes)) or not isinstance(widths, Sequence) or len(widths) == 0:
            raise ConfigError(f"sortednet: widths must be a non-empty list of width fractions in (0, 1], "
                              f"e.g. [0.25, 0.5, 0.75]; got {widths!r}")
        self.widths = tuple(_check_fraction(w, "each of widths") for w in widths)
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < 0:
            raise ConfigError(f"sortednet: samples (sub-models drawn per step) must be an integer >= 0, "
                              f"got {samples!r}")
        self.samples = samples
        self.eval_width = _check_fraction(eval_width, "eval_width")
        self.model: nn.Module | None = None
        self.last_widths: tuple[float, ...] = ()  # the sub-models of the latest step (for tests and logs)

    def setup(self, model: nn.Module, run: RunContext) -> None:
        channels = sorted_channels(model)
        if not channels:
            raise ConfigError("sortednet sorts the hidden units of MLP channel mixers and this model has none; "
                              "use channel = 'mlp' or 'swiglu'")
        for name, m in channels:
            act = getattr(m, "act", None)
            if act is not None and any(True for _ in act.parameters()):
                raise ConfigError(f"sortednet: the activation of {name or 'the MLP'} ({m.activation!r}) has "
                                  "parameters of the full hidden width, so a prefix of it is not a sub-network; "
                                  "use a parameter-free activation (gelu, relu, silu, selu)")
        self.model = model
        if self.eval_width < 1.0:
            install_eval_width(model, self.eval_width)

    def draw(self) -> list[float]:
        """This step's sub-model widths: `samples` draws, uniform over `widths`, from the method's generator."""
        if self.samples == 0:
            return []
        idx = torch.randint(len(self.widths), (self.samples,), generator=self.generator,
                            device=self.generator.device)
        return [self.widths[i] for i in idx.tolist()]

    def transform_loss(self, loss: Tensor, outputs: Tensor, batch: Any, step: int) -> Tensor:
        widths = self.last_widths = tuple(self.draw())
        if not widths:
            return loss
        x = batch.inputs.to(self.run.dtype) if batch.inputs.is_floating_point() else batch.inputs
        for w in widths:
            loss = loss + self.run.loss(forward_at_width(self.model, x, w), batch)
        return loss
