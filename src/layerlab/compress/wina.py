r"""Training-free activation sparsity: WINA (weight-informed) and TEAL's magnitude-only rule.

Papers:
    Chen, Zhao, Ko, Banbury, Zhuang, Liang, Chen, "WINA: Weight Informed Neuron Activation for
    Accelerating Large Language Model Inference", 2025, arXiv:2505.19427.
    Liu, Ponnusamy, Cai, Guo, Kim, Athiwaratkun, "Training-Free Activation Sparsity in Large
    Language Models" (TEAL), 2024, arXiv:2408.14690.

For a linear layer ``y = W x + b`` with ``W ∈ R^{m×n}`` (PyTorch's ``weight``, ``out × in``), both
rules keep ``K`` of the ``n`` input coordinates and zero the rest, ``y_m = W (m ⊙ x) + b``:

    TEAL:  m_i = 1  iff  |x_i|        is among the top-K of |x|
    WINA:  m_i = 1  iff  |x_i| c_i    is among the top-K of |x ⊙ c|,   c_i = ‖W_{:,i}‖_2

(WINA's binary activation gate; ``c`` are the column-wise ℓ2 norms of ``W``, i.e. the norm of the
weights that input ``i`` feeds.) The error of the layer output is
``‖W x − W (m ⊙ x)‖_2 = ‖Σ_{i: m_i = 0} x_i W_{:,i}‖_2``; when the columns of ``W`` are orthogonal
(``Wᵀ W`` diagonal) it is ``(Σ_{i: m_i = 0} x_i² c_i²)^{1/2}`` and WINA's mask is the best of all
masks keeping ``K`` inputs, so its error is at most TEAL's (the paper's single-layer theorem, with
extensions to deep networks and monotone activations). For general ``W`` this optimality is not
guaranteed; the paper's "tensor transformation" makes the columns orthogonal first: with the SVD
``W = U Σ Vᵀ``, ``W' = W V`` has orthogonal columns ``σ_i u_i`` and ``W x = W' (Vᵀ x)``, so the gate
acts on ``x' = Vᵀ x`` with ``c_i = σ_i``. In a transformer the paper folds ``V`` into the previous
layer (computational invariance, as in SliceGPT); a nonlinearity between layers (our MLPs) does not
allow that, so ``transform=True`` here applies ``Vᵀ`` explicitly (an extra ``n × n`` product per
layer): an option for analysis, which saves no computation.

Sparsity level ``s``: each wrapped layer keeps ``K = n − round(s·n)`` inputs of every input row
(half rounded up), the same ``s`` for every layer. What was verified against the papers (search
tool: WINA's abstract, method summary and the authors' repository README; TEAL's abstract): the
gate ``top-K of |x ⊙ c|`` with ``c`` the column ℓ2 norms; TEAL's rule is magnitude-only; the
orthogonalising transformation ``W' = W V`` from the SVD. Differences from the papers:
- allocation: WINA (following TEAL) assigns a sparsity to each weight matrix by TEAL's block-wise
  greedy algorithm on calibration activations; here every layer gets the same ``s``
  (the WINA README's "uniform sparsity" setting);
- gate: the papers apply thresholds calibrated offline (per-token sparsity then varies around
  ``s``); the default here is the exact per-row top-K of the gate's definition; ``gate="threshold"``
  calibrates one threshold per layer on ``ctx.calibration`` (the ``s``-quantile of the layer's
  scores on the dense model's activations) and keeps the inputs whose score exceeds it;
- layers: every ``nn.Linear`` of the model except the output head (the last ``nn.Linear``
  registered; ``skip_head=False`` includes it): TEAL and WINA leave the LM head dense.

The wrapper ``SparseInputLinear`` keeps the original ``nn.Linear`` (``.linear``; ``weight`` and
``bias`` read through) and what the gate needs: ``rule``, ``sparsity``, ``kept`` (K),
``column_norm`` (a buffer, WINA), ``rotation`` (``V``, with ``transform``) or ``threshold``.
It computes the dense product of the masked input; the saving it stands for is the fraction of
weight columns a sparse kernel would skip, *measured* on the inputs it saw: ``measured_density()``
(kept inputs over all inputs, counted in forward).
"""
from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import ConfigError, ShapeError
from ..registry import Paper
from .registry import CompressContext, register_technique

WINA_PAPER = Paper("WINA: Weight Informed Neuron Activation for Accelerating Large Language Model Inference",
                   2025, "2505.19427")
TEAL_PAPER = Paper("Training-Free Activation Sparsity in Large Language Models", 2024, "2408.14690")
RULES = ("wina", "teal")
GATES = ("topk", "threshold")
LEVELS = (0.25, 0.4, 0.5, 0.65)


def n_kept(n: int, sparsity: float) -> int:
    """K = n − round(s n) with halves rounded up: the inputs kept at sparsity ``s``."""
    if not 0.0 <= sparsity <= 1.0:
        raise ConfigError(f"sparsity must be in [0, 1] (the fraction of inputs zeroed), got {sparsity}")
    return n - int(math.floor(sparsity * n + 0.5))


def column_norms(weight: Tensor) -> Tensor:
    """c_i = ‖W_{:,i}‖_2 for ``weight`` of shape (out, in), in float32 or wider."""
    w = weight.detach()
    return torch.linalg.vector_norm(w.to(torch.promote_types(w.dtype, torch.float32)), dim=0)


def gate_scores(x: Tensor, rule: str, column_norm: Tensor | None = None) -> Tensor:
    """|x| (TEAL) or |x| ⊙ c (WINA), in float32 or wider, shape of ``x``."""
    a = x.detach().abs().to(torch.promote_types(x.dtype, torch.float32))
    if rule == "teal":
        return a
    if rule == "wina":
        if column_norm is None:
            raise ConfigError("the WINA rule needs the column norms c_i = ||W_:,i||_2 (column_norms(weight))")
        return a * column_norm.to(a.dtype)
    raise ConfigError(f"unknown rule {rule!r}; use one of {RULES}")


def topk_mask(scores: Tensor, k: int) -> Tensor:
    """Boolean mask with exactly ``k`` True entries per row (last dim): the ``k`` largest scores."""
    n = scores.shape[-1]
    if not 0 <= k <= n:
        raise ConfigError(f"cannot keep k = {k} of {n} inputs; need 0 <= k <= {n}")
    mask = torch.zeros(scores.shape, dtype=torch.bool, device=scores.device)
    if k == 0:
        return mask
    return mask.scatter_(-1, scores.topk(k, dim=-1, sorted=False).indices, True)


class SparseInputLinear(nn.Module):
    r"""``y = W (m ⊙ x) + b`` with the gate ``m`` of ``rule`` ("wina" or "teal") at ``sparsity``.

    Shape: ``(*, in_features) -> (*, out_features)``; the gate acts on each input row (last dim).
    ``gate="topk"``: exactly ``kept`` inputs per row; ``gate="threshold"``: inputs whose score
    exceeds ``threshold`` (set by ``calibrate``). ``transform=True`` gates ``x' = Vᵀ x`` against
    ``W V`` (orthogonal columns; see the module docstring). Inputs kept and seen are counted in
    forward (``count_kept``, ``count_seen``): ``measured_density()``.
    """

    def __init__(self, linear: nn.Linear, *, rule: str, sparsity: float, gate: str = "topk",
                 transform: bool = False) -> None:
        super().__init__()
        if not isinstance(linear, nn.Linear):
            raise ConfigError(f"SparseInputLinear wraps an nn.Linear, got {type(linear).__name__}")
        if rule not in RULES:
            raise ConfigError(f"unknown rule {rule!r}; use one of {RULES}")
        if gate not in GATES:
            raise ConfigError(f"unknown gate {gate!r}; use one of {GATES}")
        if transform and rule != "wina":
            raise ConfigError("transform=True is WINA's column-orthogonalising step; TEAL has none (drop transform)")
        self.linear = linear
        self.rule, self.gate, self.transform = rule, gate, bool(transform)
        self.sparsity = float(sparsity)
        self.kept = n_kept(linear.in_features, self.sparsity)
        w = linear.weight.detach()
        wide = torch.promote_types(w.dtype, torch.float32)
        if self.transform:
            _, sv, vh = torch.linalg.svd(w.to(wide), full_matrices=True)
            v = vh.mT  # (in, in), orthogonal
            self.register_buffer("rotation", v)
            self.register_buffer("rotated_weight", (w.to(wide) @ v).to(w.dtype))
            c = torch.zeros(linear.in_features, dtype=wide, device=w.device)
            c[: sv.numel()] = sv  # the columns of W V are sigma_i u_i (zero beyond the rank)
            self.register_buffer("column_norm", c)
        else:
            self.rotation = None
            self.register_buffer("column_norm", column_norms(w) if rule == "wina" else None)
        self.register_buffer("threshold", None)
        # inputs kept / seen since construction: plain numbers (a 0-dim tensor once a threshold gate
        # has counted its mask, so that no forward waits for the device)
        self.count_kept: int | Tensor = 0
        self.count_seen = 0

    @property
    def weight(self) -> Tensor:
        return self.linear.weight

    @property
    def bias(self) -> Tensor | None:
        return self.linear.bias

    @property
    def in_features(self) -> int:
        return self.linear.in_features

    @property
    def out_features(self) -> int:
        return self.linear.out_features

    def scores(self, x: Tensor) -> Tensor:
        """The gate's scores of (already rotated, with ``transform``) inputs ``x``."""
        return gate_scores(x, self.rule, self.column_norm)

    def mask(self, x: Tensor) -> Tensor:
        """The gate ``m`` (bool, shape of ``x``) for inputs ``x`` (rotated, with ``transform``)."""
        s = self.scores(x)
        if self.gate == "threshold":
            if self.threshold is None:
                raise ConfigError("gate='threshold' needs calibrate(inputs) first (the technique does it "
                                  "on ctx.calibration)")
            return s > self.threshold.to(s.dtype)
        return topk_mask(s, self.kept)

    @torch.no_grad()
    def calibrate(self, inputs: Tensor) -> None:
        """Threshold = the ``sparsity``-quantile of the scores of ``inputs`` (rows of this layer's
        input on calibration data), so that a fraction ``sparsity`` of calibration scores is at or
        below it."""
        x = inputs.reshape(-1, self.in_features)
        if self.transform:
            x = x.to(self.rotation.dtype) @ self.rotation
        s = self.scores(x).flatten()
        drop = s.numel() - n_kept(s.numel(), self.sparsity)
        t = s.new_tensor(-1.0) if drop == 0 else s.kthvalue(drop).values
        self.threshold = t.to(self.column_norm.dtype if self.column_norm is not None else t.dtype)

    def measured_density(self) -> float:
        """Kept inputs / inputs seen since construction (or ``reset_counts``); NaN before any input."""
        seen = float(self.count_seen)
        return float(self.count_kept) / seen if seen else math.nan

    def reset_counts(self) -> None:
        self.count_kept, self.count_seen = 0, 0

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() < 1 or x.shape[-1] != self.in_features:
            raise ShapeError(f"SparseInputLinear expects input of shape (..., in_features = {self.in_features}); "
                             f"got {tuple(x.shape)}")
        if self.transform:
            x = (x.to(self.rotation.dtype) @ self.rotation).to(x.dtype)
            weight = self.rotated_weight
        else:
            weight = self.linear.weight
        self.count_seen += x.numel()
        if self.gate == "topk" and self.kept == self.in_features:  # s = 0: the layer unchanged
            xm = x
            self.count_kept += x.numel()
        elif self.gate == "topk":  # the same mask as self.mask(x), applied by gather/scatter
            idx = self.scores(x).topk(self.kept, dim=-1, sorted=False).indices
            xm = torch.zeros_like(x).scatter(-1, idx, x.gather(-1, idx))
            self.count_kept += idx.numel()
        else:
            m = self.mask(x)
            xm = x * m.to(x.dtype)
            self.count_kept = self.count_kept + m.sum().detach()
        return nn.functional.linear(xm, weight, self.linear.bias)

    def extra_repr(self) -> str:
        return (f"rule={self.rule}, sparsity={self.sparsity}, kept={self.kept}/{self.in_features}, gate={self.gate}"
                + (", transform=True" if self.transform else ""))


def _targets(model: nn.Module, skip_head: bool) -> list[str]:
    names = [n for n, m in model.named_modules() if type(m) is nn.Linear]
    if not names:
        raise ConfigError(f"{type(model).__name__} has no nn.Linear layers whose inputs could be sparsified")
    return names[:-1] if skip_head and len(names) > 1 else names


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, new)


def _calibration_inputs(model: nn.Module, names: list[str], ctx: CompressContext | None) -> dict[str, Tensor]:
    """Each named Linear's input on ``ctx.calibration.inputs`` through the dense model."""
    batch = getattr(ctx, "calibration", None)
    if batch is None or getattr(batch, "inputs", None) is None:
        raise ConfigError("gate='threshold' calibrates on ctx.calibration (a training batch with .inputs); "
                          "none was given. Pass a CompressContext with a calibration batch, or use gate='topk'")
    seen: dict[str, Tensor] = {}
    hooks = [model.get_submodule(n).register_forward_hook(
        lambda _m, args, _out, n=n: seen.__setitem__(n, args[0].detach())) for n in names]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(batch.inputs)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return seen


def sparsify_inputs(model: nn.Module, sparsity: float, rule: str, ctx: CompressContext | None = None, *,
                    gate: str = "topk", skip_head: bool = True, transform: bool = False) -> nn.Module:
    """A deep copy of ``model`` whose ``nn.Linear`` layers (the head too unless ``skip_head``) are
    wrapped in ``SparseInputLinear(rule, sparsity)``; ``model`` is not modified."""
    if not isinstance(model, nn.Module):
        raise ConfigError(f"expected an nn.Module, got {type(model).__name__}")
    n_kept(1, sparsity)  # range check with its message
    if gate not in GATES:
        raise ConfigError(f"unknown gate {gate!r}; use one of {GATES}")
    out = copy.deepcopy(model)
    names = _targets(out, skip_head)
    calib = _calibration_inputs(out, names, ctx) if gate == "threshold" else {}
    for name in names:
        wrapper = SparseInputLinear(out.get_submodule(name), rule=rule, sparsity=sparsity, gate=gate,
                                    transform=transform)
        if gate == "threshold":
            if name not in calib:
                raise ConfigError(f"layer {name!r} received no input on the calibration batch; cannot calibrate it")
            wrapper.calibrate(calib[name])
        _replace(out, name, wrapper)
    return out


@register_technique("wina", paper=WINA_PAPER, level_kind="sparsity", levels=LEVELS)
def wina(model: nn.Module, level: float, ctx: CompressContext | None, *, gate: str = "topk",
         skip_head: bool = True, transform: bool = False) -> nn.Module:
    """WINA: keep the inputs with the largest |x_i| ‖W_{:,i}‖_2 of each Linear layer, a fraction
    ``level`` zeroed (see the module docstring). Reads ``ctx.calibration`` only with
    ``gate="threshold"``."""
    return sparsify_inputs(model, level, "wina", ctx, gate=gate, skip_head=skip_head, transform=transform)


@register_technique("teal", paper=TEAL_PAPER, level_kind="sparsity", levels=LEVELS)
def teal(model: nn.Module, level: float, ctx: CompressContext | None, *, gate: str = "topk",
         skip_head: bool = True) -> nn.Module:
    """TEAL's magnitude rule: keep the inputs with the largest |x_i| of each Linear layer, a fraction
    ``level`` zeroed. Reads ``ctx.calibration`` only with ``gate="threshold"``."""
    return sparsify_inputs(model, level, "teal", ctx, gate=gate, skip_head=skip_head)


def wrapped_layers(model: nn.Module) -> dict[str, SparseInputLinear]:
    """The ``SparseInputLinear`` modules of ``model`` by name."""
    return {n: m for n, m in model.named_modules() if isinstance(m, SparseInputLinear)}


def measured_density(model: nn.Module) -> float:
    """Kept inputs / inputs seen, over every wrapped layer of ``model`` (weighted by the weight
    columns each input stands for: ``out_features`` per input), NaN before any input."""
    kept = seen = 0.0
    for m in wrapped_layers(model).values():
        kept += float(m.count_kept) * m.out_features
        seen += float(m.count_seen) * m.out_features
    return kept / seen if seen else math.nan


__all__: list[Any] = ["SparseInputLinear", "column_norms", "gate_scores", "measured_density", "n_kept",
                      "sparsify_inputs", "teal", "topk_mask", "wina", "wrapped_layers"]
