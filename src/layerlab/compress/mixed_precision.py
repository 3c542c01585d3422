r"""Hessian-aware mixed-precision post-training quantization: per-layer bit widths from curvature,
augmented with inter-layer terms, under an average-bits budget.

Paper: Schaefer, Lambert-Shirzad, Zhang, Chou, Jablin, Li, Guo, Stanton, Joshi & Wang, "Augmenting
Hessians with Inter-Layer Dependencies for Mixed-Precision Post-Training Quantization", 2023,
arXiv:2306.04879. Verified (abstract): previous works "rely on layer-wise Hessian information to
determine numerical precision", but "Hessian estimation is typically insufficient in determining an
effective ordering of layer sensitivities"; the paper augments "the estimated Hessian with additional
information to capture inter-layer dependencies", and uses it to "guide a bisection search" for
configurations within a user-set accuracy-degradation range (ResNet50, MobileNetV2, BERT; latency
against a 16-bit baseline). The body of the paper (its exact augmentation and search) could not be
read here, so what follows is layerlab's form of the idea, stated in full:

Second-order model of the loss change when the weights ``w = (w_1, …, w_L)`` of the quantized
Linear layers move by their RTN errors :math:`\Delta_l(b_l) = Q_{b_l}(w_l) - w_l`
(``compress.quantize``; the gradient term dropped at a trained minimum, as in HAWQ):

.. math:: \Delta\mathcal L(b) \approx \tfrac12 \Delta^\top H \Delta
          = \sum_l \underbrace{\tfrac12 \Delta_l^\top H_{ll} \Delta_l}_{\Omega_l(b_l)}
          + \sum_{l < m} \underbrace{\Delta_l^\top H_{lm} \Delta_m}_{\text{inter-layer}}.

* layer-wise term (``curvature``): ``"block"`` (default) is the exact
  :math:`\tfrac12 \Delta_l^\top H_{ll} \Delta_l` from Hessian-vector products; ``"trace"`` is
  HAWQ-V2's (Dong et al. 2020, arXiv:1911.03852)
  :math:`\Omega_l = \tfrac12 \frac{\operatorname{tr} H_{ll}}{n_l} \|\Delta_l\|^2` with ``tr H_ll``
  estimated by Hutch++ (``lens.krylov.trace`` of the layer's ``HessianOperator``): the "layer-wise Hessian
  information" of the previous works, layer-wise only;
* inter-layer term (``interlayer=True``, with ``curvature="block"``): the exact cross terms
  :math:`\Delta_l^\top H_{l,l+1} \Delta_{l+1}` between *consecutive* Linear layers (module order,
  the data-flow order of an MLP), from the same products (one per layer and bit width). Longer-range
  pairs are left out, which keeps the allocation an exact dynamic program over the chain. The
  isotropic trace term with exact cross terms is refused: the mixed quadratic form is not
  positive, and in a pilot it chose fewer bits than the budget allowed (2.4 of 4) because negative
  cross terms outweighed the underestimated layer terms.

Allocation: minimise :math:`\sum_l \Omega_l(b_l) + \sum_l C_l(b_l, b_{l+1})` over
``b_l ∈ bit_choices`` subject to the average-bits budget :math:`\sum_l n_l b_l \le \bar b \sum_l n_l`
(``level`` = the average bits per quantized weight; biases and scales are not counted in it but are
in the measured savings). Solved exactly by dynamic programming over layers with states (bits of
the previous layer, bits used so far) (``allocate_bits``), tested equal to brute-force enumeration
(``allocate_bits_reference``). Where the paper searches for the cheapest configuration within an
accuracy target by bisection, this fixes the budget and minimises the modelled loss, so it can be
compared with uniform RTN at the same average bits (``rtn`` at ``level``).

All curvature is computed on ``ctx.calibration`` (a training batch) with ``ctx.loss_fn``, inside
``side_effect_free``; randomness (Hutch++ probes) from ``ctx.generator``.
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..lens import hessian, krylov
from ..lens._util import side_effect_free
from ..registry import Paper
from .quantize import check_bits, dequantize, quantizable_linears, quantize_linears, symmetric_rtn
from .registry import CompressContext, register_technique

PAPER = Paper("Augmenting Hessians with Inter-Layer Dependencies for Mixed-Precision Post-Training Quantization",
              2023, "2306.04879")
BIT_CHOICES = (2, 3, 4, 5, 6, 8)
CURVATURES = ("trace", "block")
LEVELS = (3, 4, 6)


# ---- the allocation: exact dynamic program and its reference ---------------------------------------
def _check_problem(sizes: Sequence[int], costs: Sequence[Sequence[float]], choices: Sequence[int],
                   pair_costs: Sequence[Sequence[Sequence[float]]] | None) -> None:
    L, B = len(sizes), len(choices)
    if L == 0 or B == 0:
        raise ConfigError("allocate_bits needs at least one layer and one bit choice")
    if any(int(n) != n or n < 1 for n in sizes):
        raise ConfigError(f"layer sizes must be positive integers, got {list(sizes)}")
    if len(costs) != L or any(len(c) != B for c in costs):
        raise ConfigError(f"costs must be {L} rows (layers) of {B} values (bit choices)")
    if pair_costs is not None and (len(pair_costs) != L - 1 or any(len(p) != B or any(len(r) != B for r in p)
                                                                   for p in pair_costs)):
        raise ConfigError(f"pair_costs must be {L - 1} tables (consecutive layers) of {B} x {B} values")


def allocate_bits(sizes: Sequence[int], costs: Sequence[Sequence[float]], choices: Sequence[int], budget: int,
                  pair_costs: Sequence[Sequence[Sequence[float]]] | None = None) -> tuple[tuple[int, ...], float]:
    """``(bits per layer, objective)`` minimising ``Σ_l costs[l][j_l] + Σ_l pair_costs[l][j_l][j_{l+1}]``
    subject to ``Σ_l sizes[l] * choices[j_l] <= budget``, exactly, by dynamic programming over layers
    (state: the previous layer's choice and the bits used). Ties go to the first found (choices in
    the given order). No feasible allocation: ConfigError."""
    _check_problem(sizes, costs, choices, pair_costs)
    L = len(sizes)
    low = min(choices)
    rest_min = [sum(sizes[k] * low for k in range(l + 1, L)) for l in range(L)]  # bits the later layers need at least
    states: dict[tuple[int, int], float] = {}
    parents: list[dict[tuple[int, int], tuple[int, int] | None]] = [{}]
    for j, b in enumerate(choices):
        used = sizes[0] * b
        if used + rest_min[0] <= budget and ((j, used) not in states or costs[0][j] < states[(j, used)]):
            states[(j, used)] = float(costs[0][j])
            parents[0][(j, used)] = None
    for l in range(1, L):
        nxt: dict[tuple[int, int], float] = {}
        par: dict[tuple[int, int], tuple[int, int] | None] = {}
        for (jp, used), c in states.items():
            for j, b in enumerate(choices):
                u = used + sizes[l] * b
                if u + rest_min[l] > budget:
                    continue
                v = c + float(costs[l][j]) + (float(pair_costs[l - 1][jp][j]) if pair_costs is not None else 0.0)
                if (j, u) not in nxt or v < nxt[(j, u)]:
                    nxt[(j, u)], par[(j, u)] = v, (jp, used)
        states = nxt
        parents.append(par)
    if not states:
        raise ConfigError(f"no allocation fits the budget of {budget} bits: even {low} bits everywhere needs "
                          f"{sum(sizes) * low}; raise the level or add a smaller bit choice")
    key = min(states, key=lambda k: states[k])
    best = states[key]
    picks = []
    for l in range(L - 1, -1, -1):
        picks.append(choices[key[0]])
        key = parents[l][key]  # type: ignore[assignment]
    return tuple(reversed(picks)), best


def allocate_bits_reference(sizes: Sequence[int], costs: Sequence[Sequence[float]], choices: Sequence[int],
                            budget: int, pair_costs: Sequence[Sequence[Sequence[float]]] | None = None
                            ) -> tuple[tuple[int, ...], float]:
    """The same problem by enumerating all ``len(choices)^L`` allocations (reference form)."""
    _check_problem(sizes, costs, choices, pair_costs)
    best: tuple[tuple[int, ...], float] | None = None
    for js in itertools.product(range(len(choices)), repeat=len(sizes)):
        if sum(n * choices[j] for n, j in zip(sizes, js)) > budget:
            continue
        v = sum(float(costs[l][j]) for l, j in enumerate(js))
        if pair_costs is not None:
            v += sum(float(pair_costs[l][js[l]][js[l + 1]]) for l in range(len(js) - 1))
        if best is None or v < best[1]:
            best = (tuple(choices[j] for j in js), v)
    if best is None:
        raise ConfigError(f"no allocation fits the budget of {budget} bits")
    return best


# ---- the sensitivities of a model --------------------------------------------------------------------
@dataclass(frozen=True)
class Allocation:
    """A mixed-precision plan: the quantized Linear ``names`` (module order), their weight counts
    ``sizes``, the chosen ``bits``, the modelled loss change ``objective``, the tables it minimised
    (``costs[l][j]``, ``pair_costs[l][j][k]`` or None) over ``choices``, and the budget in bits."""

    names: tuple[str, ...]
    sizes: tuple[int, ...]
    bits: tuple[int, ...]
    objective: float
    choices: tuple[int, ...]
    costs: tuple[tuple[float, ...], ...]
    pair_costs: tuple[tuple[tuple[float, ...], ...], ...] | None
    budget: int

    @property
    def average_bits(self) -> float:
        return sum(n * b for n, b in zip(self.sizes, self.bits)) / sum(self.sizes)

    def as_dict(self) -> dict[str, int]:
        return dict(zip(self.names, self.bits))


def _rtn_error(w: Tensor, bits: int) -> Tensor:
    codes, scale = symmetric_rtn(w, bits)
    return (dequantize(codes, scale, w.dtype) - w.detach()).reshape(-1)


def sensitivity_tables(model: nn.Module, ctx: CompressContext, names: Sequence[str], choices: Sequence[int], *,
                       curvature: str = "block", interlayer: bool = True, n_samples: int = 64
                       ) -> tuple[list[list[float]], list[list[list[float]]] | None]:
    """``costs[l][j]`` (layer ``names[l]`` at ``choices[j]``) and, with ``interlayer``, the consecutive
    cross terms ``pair_costs[l][j][k]`` of the second-order model, on ``ctx.calibration``."""
    if curvature not in CURVATURES:
        raise ConfigError(f"curvature must be one of {CURVATURES}, got {curvature!r}")
    if curvature == "trace" and interlayer:
        raise ConfigError("interlayer terms need the exact layer blocks: use curvature='block' with interlayer=True, "
                          "or curvature='trace' (HAWQ-V2, layer-wise only) with interlayer=False")
    mods = dict(model.named_modules())
    weights = [f"{n}.weight" for n in names]
    deltas = [[_rtn_error(mods[n].weight, b) for b in choices] for n in names]
    batches = [ctx.calibration]
    costs: list[list[float]] = []
    need_hvp = curvature == "block" or interlayer
    HV: list[list[Tensor]] = []
    slices: dict[str, slice] = {}
    with side_effect_free(model):
        if need_hvp:
            op = hessian.HessianOperator(model, ctx.loss_fn, batches, params=weights, mode="double-backward")
            slices = op.slices
            cols = []
            for w_name, per_bits in zip(weights, deltas):
                for d in per_bits:
                    v = torch.zeros(op.dim, dtype=op.dtype, device=op.device)
                    v[slices[w_name]] = d.to(op.dtype)
                    cols.append(v)
            prod = op.matmat(torch.stack(cols, dim=1))
            B = len(choices)
            HV = [[prod[:, l * B + j] for j in range(B)] for l in range(len(names))]
        for l, (w_name, per_bits) in enumerate(zip(weights, deltas)):
            if curvature == "trace":
                layer_op = hessian.HessianOperator(model, ctx.loss_fn, batches, params=w_name, mode="double-backward")
                tr, _ = krylov.trace(layer_op, n_samples=n_samples, method="hutch++", generator=ctx.generator)
                n = per_bits[0].numel()
                costs.append([0.5 * tr / n * float(d.double().square().sum()) for d in per_bits])
            else:
                s = slices[w_name]
                costs.append([0.5 * float(d.double() @ HV[l][j][s].double()) for j, d in enumerate(per_bits)])
    pair_costs = None
    if interlayer:
        pair_costs = []
        for l in range(len(names) - 1):
            s = slices[weights[l]]
            pair_costs.append([[float(deltas[l][j].double() @ HV[l + 1][k][s].double()) for k in range(len(choices))]
                               for j in range(len(choices))])
    for row in costs + [r for p in (pair_costs or []) for r in p]:
        if not all(math.isfinite(v) for v in row):
            raise ConfigError("the Hessian terms are not finite on the calibration batch (a diverged model?)")
    return costs, pair_costs


def _choices(bit_choices: Sequence[int] | str) -> tuple[int, ...]:
    if isinstance(bit_choices, str):
        bit_choices = [int(float(s)) for s in bit_choices.split(",") if s.strip()]
    out = tuple(sorted({check_bits(b, "each of bit_choices") for b in bit_choices}))
    if not out:
        raise ConfigError("bit_choices is empty; give the bit widths a layer may take, e.g. (2, 3, 4, 6, 8)")
    return out


def mixed_precision_allocation(model: nn.Module, level: float, ctx: CompressContext, *,
                               bit_choices: Sequence[int] | str = BIT_CHOICES, curvature: str = "block",
                               interlayer: bool = True, n_samples: int = 64,
                               exclude: tuple[str, ...] | str = ()) -> Allocation:
    """The bit width of each quantized Linear at average ``level`` bits (see the module docstring)."""
    avg = check_bits(level, "hessian_mixed_precision level (average bits per weight)")
    choices = _choices(bit_choices)
    if ctx is None or getattr(ctx, "calibration", None) is None:
        raise ConfigError("hessian_mixed_precision needs a CompressContext with a calibration batch and loss_fn "
                          "(its curvature comes from the training loss)")
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 3:
        raise ConfigError(f"n_samples (Hutch++ products per layer) must be an integer >= 3, got {n_samples!r}")
    names = tuple(quantizable_linears(model, exclude))
    if not names:
        raise ConfigError("hessian_mixed_precision found no nn.Linear to quantize (or all are excluded)")
    mods = dict(model.named_modules())
    sizes = tuple(mods[n].weight.numel() for n in names)
    budget = avg * sum(sizes)
    if avg < choices[0]:
        raise ConfigError(f"average {avg} bits is below the smallest bit choice {choices[0]}; "
                          f"raise the level or add a smaller choice to bit_choices")
    costs, pair_costs = sensitivity_tables(model, ctx, names, choices, curvature=curvature,
                                           interlayer=bool(interlayer), n_samples=n_samples)
    bits, objective = allocate_bits(sizes, costs, choices, budget, pair_costs)
    return Allocation(names, sizes, bits, objective, choices, tuple(map(tuple, costs)),
                      None if pair_costs is None else tuple(tuple(map(tuple, p)) for p in pair_costs), budget)


@register_technique("hessian_mixed_precision", paper=PAPER, level_kind="bits", levels=LEVELS)
def hessian_mixed_precision(model: nn.Module, level: float, ctx: CompressContext, *,
                            bit_choices: Sequence[int] | str = BIT_CHOICES, curvature: str = "block",
                            interlayer: bool = True, n_samples: int = 64,
                            exclude: tuple[str, ...] | str = ()) -> nn.Module:
    """A copy of ``model`` whose Linear weights are RTN-quantized at the bit widths of
    ``mixed_precision_allocation`` (average ``level`` bits per quantized weight)."""
    plan = mixed_precision_allocation(model, level, ctx, bit_choices=bit_choices, curvature=curvature,
                                      interlayer=interlayer, n_samples=n_samples, exclude=exclude)
    return quantize_linears(model, plan.as_dict())
