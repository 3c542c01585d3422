r"""Per-step training signals: activations, gradient and update norms, effective learning rate,
massive activations, attention entropy and activation patterns.

Papers:
    - Sun, Chen, Kolter & Liu, "Massive Activations in Large Language Models", 2024,
      arXiv:2402.17762 (Sec. 2): an activation is *massive* when its magnitude surpasses 100 and
      is at least (about) 1,000 times the median magnitude of its hidden state.
    - Zhai, Likhomanenko, Littwin, Busbridge, Ramapuram, Zhang, Gu & Susskind, "Stabilizing
      Transformer Training by Preventing Attention Entropy Collapse", 2023, arXiv:2303.06296:
      the attention entropy ``Ent(A) = −(1/T) Σ_i Σ_j A_{i,j} log A_{i,j}`` of a head's attention
      matrix ``A`` (rows sum to 1), the mean over query rows; its collapse signals instability.
    - Hanin & Rolnick, "Deep ReLU Networks Have Surprisingly Few Activation Patterns", 2019,
      arXiv:1906.00904: the activation pattern of an input is the on/off state of every neuron;
      the number of distinct patterns a data set visits lower-bounds the linear regions it meets.
    - Relative update size ``||Δw|| / ||w||`` (the effective learning rate of a scale-invariant
      weight): van Laarhoven 2017 / Zhang, Wang, Xu & Grosse, "Three Mechanisms of Weight Decay
      Regularization", 2019, arXiv:1810.12281; Kosson, Messmer & Jaggi, "Rotational Equilibrium:
      How Weight Decay Balances Learning Across Neural Networks", 2023, arXiv:2305.17212.

Definitions and normalizations used here:
    - norms are Euclidean (Frobenius for matrices), computed in float64; a group's norm is
      ``sqrt(Σ_p ||x_p||²)`` over its parameters (``parameter_groups`` of ``landscape``);
    - effective learning rate ``η_eff = ||w_{t+1} − w_t|| / ||w_t||`` with the weights *before*
      the step in the denominator;
    - massive activations: per tensor, ``max |a|`` over ``median |a|`` (the median of all its
      entries, the mean of the two middle values when their number is even), and the count of
      entries with ``|a| > threshold`` (100) and ``|a| >= ratio · median |a|`` (ratio 1000);
    - attention entropy in nats, per head, from the probabilities an attention module returns
      (see below);
    - activation pattern: unit ``i`` is *on* when its pre-activation (the input of its
      activation module) is ``> 0``; for GELU-like units this threshold is the proxy for the
      ReLU's kink.

Modules are found by what they expose, not by their class: an *attention module* is one with a
callable ``attention_probabilities(x)`` that maps its input ``(B, L, D)`` to the ``(B, h, L, L)``
attention weights (rows sum to 1; layerlab's attention mixer has one); an *activation unit* is
a PyTorch rectifier (``ReLU``, ``ReLU6``, ``LeakyReLU``, ``PReLU``, ``RReLU``, ``ELU``, ``CELU``,
``SELU``, ``GELU``, ``SiLU``, ``Mish``, ``Hardswish``: elementwise, with their regime change at
0) or a module whose class is a registered activation (``registry_kind == "activation"``).

Every function is side-effect free (``side_effect_free``: eval mode, RNG forked, ``.grad`` kept)
and runs forward passes under ``torch.no_grad``. Forward hooks are removed on every exit path.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import ConfigError, ShapeError, unknown_name
from ._util import side_effect_free
from .landscape import GROUPINGS, parameter_groups

KINDS = ("output", "input")
REDUCTIONS = ("mean", "position", "none")
# PyTorch's elementwise rectifiers and their smooth versions: their regime changes at 0
TORCH_UNITS: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.CELU, nn.SELU, nn.GELU, nn.SiLU,
    nn.Mish, nn.Hardswish,
)
_BITS = 63  # bits per packed int64 word, leaving the sign bit clear

__all__ = [
    "capture",
    "snapshot",
    "gradient_norms",
    "update_norms",
    "effective_lr",
    "massive_activations",
    "block_massive_activations",
    "attention_probs",
    "attention_entropy",
    "activation_bits",
    "activation_codes",
    "activation_patterns",
    "threshold_modules",
    "attention_modules",
    "is_activation_unit",
    "is_attention",
]


# --- capturing activations ------------------------------------------------------------------

def _call(model: nn.Module, inputs: Any, forward_kwargs: Mapping[str, Any] | None) -> Any:
    kwargs = dict(forward_kwargs or {})
    if isinstance(inputs, (tuple, list)):
        return model(*inputs, **kwargs)
    return model(inputs, **kwargs)


def _first_tensor(value: Any) -> Tensor | None:
    if isinstance(value, Tensor):
        return value
    if isinstance(value, (tuple, list)):
        for v in value:
            if isinstance(v, Tensor):
                return v
    return None


def capture(
    model: nn.Module,
    inputs: Any,
    modules: Sequence[str] | None = None,
    *,
    kind: str | Mapping[str, str] = "output",
    forward_kwargs: Mapping[str, Any] | None = None,
) -> dict[str, Tensor]:
    """Outputs (``kind="output"``) or inputs (``kind="input"``, the first positional argument) of
    named submodules, recorded by forward hooks during one forward pass. ``kind`` may also map
    each module name to its own kind (then ``modules`` defaults to its keys), so that one pass
    serves several instruments.

    ``inputs``: passed to the model as ``model(inputs)``, or ``model(*inputs)`` for a tuple/list;
    ``forward_kwargs`` are added (e.g. ``{"mode": "reference"}``). ``modules``: names as in
    ``model.named_modules()``; None takes every leaf module (one without children). A module that
    returns a tuple contributes its first tensor. A module called ``k > 1`` times in the pass gives
    its ``k`` tensors stacked along a new leading dimension.

    Returns ``{module name: detached tensor}`` in the order of ``modules``. Runs in eval mode
    under ``torch.no_grad``; hooks are removed even if the forward raises.
    """
    kinds = dict(kind) if isinstance(kind, Mapping) else None
    if kinds is not None and modules is None:
        modules = list(kinds)
    for k in (kinds.values() if kinds is not None else [kind]):
        if k not in KINDS:
            raise unknown_name("capture kind", k, KINDS)
    named = dict(model.named_modules())
    if modules is None:
        modules = [n for n, m in named.items() if next(m.children(), None) is None]
    else:
        modules = list(modules)
        for n in modules:
            if n not in named:
                raise unknown_name("module", n, [k for k in named if k])
    seen: dict[str, list[Tensor]] = {n: [] for n in modules}
    kind_of = {n: (kinds.get(n, "output") if kinds is not None else kind) for n in modules}

    def hook_for(name: str):
        def hook(module: nn.Module, args: tuple, output: Any) -> None:
            t = _first_tensor(output if kind_of[name] == "output" else args)
            if t is None:
                raise ShapeError(f"capture: module {name!r} has no tensor {kind_of[name]}; choose another module")
            seen[name].append(t.detach())
        return hook

    handles = []
    try:
        for n in modules:
            handles.append(named[n].register_forward_hook(hook_for(n)))
        with side_effect_free(model), torch.no_grad():
            _call(model, inputs, forward_kwargs)
    finally:
        for h in handles:
            h.remove()
    out: dict[str, Tensor] = {}
    for n, ts in seen.items():
        if not ts:
            continue  # the module was not called in this forward pass
        if len(ts) == 1:
            out[n] = ts[0]
        elif all(t.shape == ts[0].shape for t in ts):
            out[n] = torch.stack(ts)
        else:
            raise ShapeError(f"capture: module {n!r} ran {len(ts)} times with different shapes "
                             f"{[tuple(t.shape) for t in ts]}; capture one call at a time")
    return out


# --- gradient and update norms --------------------------------------------------------------

def snapshot(model: nn.Module) -> dict[str, Tensor]:
    """Detached clones of every parameter, ``{name: tensor}``: the ``before`` of ``update_norms``."""
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def _groups(model: nn.Module, by: str) -> dict[str, list[str]]:
    if by == "total":
        return {"total": [n for n, _ in model.named_parameters()]}
    if by not in GROUPINGS:
        raise unknown_name("grouping", by, (*GROUPINGS, "total"))
    return parameter_groups(model, by)


def _group_norms(sq: dict[str, Tensor], groups: dict[str, list[str]]) -> dict[str, float]:
    """sqrt of the summed squared norms per group (groups with no entry in ``sq`` are left out)."""
    keys, values = [], []
    for g, names in groups.items():
        parts = [sq[n] for n in names if n in sq]
        if parts:
            keys.append(g)
            values.append(torch.stack([p.to(parts[0].device) for p in parts]).sum().sqrt())
    if not values:
        return {}
    return dict(zip(keys, torch.stack([v.cpu() for v in values]).tolist()))


def _sq_norm(t: Tensor) -> Tensor:
    return torch.linalg.vector_norm(t, dtype=torch.float64) ** 2


def gradient_norms(model: nn.Module, *, by: str = "parameter",
                   grads: Mapping[str, Tensor] | None = None) -> dict[str, float]:
    """Euclidean norms of the existing ``.grad`` tensors (read only), per group; or of `grads`
    (parameter name -> gradient) when given, e.g. gradients set aside by ``side_effect_free``.

    ``by``: ``"parameter"`` (one entry per parameter), ``"layer"``, ``"block"`` (top-level blocks;
    see ``landscape.parameter_groups``) or ``"total"`` (the global norm, ``{"total": ...}``, what
    ``clip_grad_norm_`` clips). Parameters whose ``.grad`` is None are skipped (a group without
    any gradient is absent). Returns ``{name: norm}``, floats in the gradient's units.
    """
    if grads is None:
        grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    sq = {n: _sq_norm(g.detach()) for n, g in grads.items() if g is not None}
    return _group_norms(sq, _groups(model, by))


def _deltas(before: Mapping[str, Tensor], model: nn.Module) -> dict[str, tuple[Tensor, Tensor]]:
    out = {}
    for n, p in model.named_parameters():
        if n not in before:
            raise ConfigError(f"update_norms: parameter {n!r} is missing from `before`; take it with "
                              "snapshot(model) before the step")
        b = before[n]
        if b.shape != p.shape:
            raise ShapeError(f"update_norms: `before[{n!r}]` has shape {tuple(b.shape)}, the parameter "
                             f"{tuple(p.shape)}")
        w0 = b.detach().to(p.device)
        out[n] = (p.detach() - w0, w0)
    return out


def update_norms(before: Mapping[str, Tensor], model: nn.Module, *, by: str = "parameter") -> dict[str, float]:
    """``||w_after − w_before||`` per group (``by`` as in ``gradient_norms``), with ``before`` from
    ``snapshot(model)`` taken before the step and ``model`` holding the weights after it."""
    deltas = _deltas(before, model)
    return _group_norms({n: _sq_norm(d) for n, (d, _) in deltas.items()}, _groups(model, by))


def effective_lr(before: Mapping[str, Tensor], model: nn.Module, *, by: str = "parameter") -> dict[str, float]:
    """Relative update size ``||Δw|| / ||w_before||`` per group (dimensionless).

    For a group, both norms run over all its parameters. A zero ``||w_before||`` gives ``inf``
    (or ``nan`` when ``Δw = 0`` too).
    """
    deltas = _deltas(before, model)
    groups = _groups(model, by)
    num = _group_norms({n: _sq_norm(d) for n, (d, _) in deltas.items()}, groups)
    den = _group_norms({n: _sq_norm(w0) for n, (_, w0) in deltas.items()}, groups)
    return {g: (num[g] / den[g] if den[g] > 0 else (math.nan if num[g] == 0 else math.inf)) for g in num}


# --- massive activations --------------------------------------------------------------------

def _kth_plain(x: Tensor, k: int, count: int = 1) -> Tensor:
    """The k-th smallest entry (1-based) of a flat tensor; with `count` > 1 the `count` entries of
    ranks k, k + 1, ... (as far as the tensor goes), in order: ``torch.kthvalue`` at each rank.
    The reference form of `_kth`."""
    last = min(k + count - 1, x.numel())
    ranks = torch.stack([torch.kthvalue(x, r).values for r in range(k, last + 1)])
    return ranks[0] if count == 1 else ranks


def _kth(x: Tensor, k: int, count: int = 1, *, band_above: int = 65536, sample: int = 8192) -> Tensor:
    """`_kth_plain`, exactly, faster on large tensors: the selection runs inside a narrow band of
    values around the k-th one instead of the whole tensor.

    What it trades: two counting passes and a random sample of `sample` entries (fixed seed)
    against a full ``kthvalue`` per rank (~11 ms per million entries on CPU; the band is a few
    percent of them). The band is bounded by order statistics of the sorted sample, 5 standard
    deviations of the sample rank either side; the wanted ranks lie in it exactly when fewer
    than k entries lie below it and at least k + count - 1 up to its top, which the counts check
    (else the plain form runs). Tensors of up to `band_above` entries take the plain form."""
    n = x.numel()
    last = min(k + count - 1, n)
    if n > band_above:
        # a seeded random sample: a stride would alias with the feature dimension of (B, L, D)
        picks = torch.randint(n, (sample,), generator=torch.Generator(x.device).manual_seed(0), device=x.device)
        ordered = torch.sort(x[picks]).values
        S, p = ordered.numel(), (k - 1) / max(n - 1, 1)
        # the sample rank of the k-th value has standard deviation sqrt(S p (1 - p)) (45 at the
        # median of 8192): a band of 5 of them each side misses it about once in a million calls
        at, margin = round((S - 1) * p), math.ceil(5 * math.sqrt(S * p * (1 - p))) + 8
        lo, hi = ordered[max(at - margin, 0)], ordered[min(at + margin + count - 1, S - 1)]
        below = int((x < lo).sum())
        band = x[(x >= lo) & (x <= hi)]
        if below < k and last <= below + band.numel():
            ranks = torch.stack([torch.kthvalue(band, r - below).values for r in range(k, last + 1)])
            return ranks[0] if count == 1 else ranks
    return _kth_plain(x, k, count)


def _median(x: Tensor) -> Tensor:
    """Median of a flat tensor: the middle value, or the mean of the two middle values (float64),
    from one selection (`_kth`) of both."""
    n = x.numel()
    if n % 2:
        return _kth(x, (n + 1) // 2).double()
    lower, upper = _kth(x, n // 2, count=2).double()
    return (lower + upper) / 2


def _unravel(flat: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The index in `shape` of flat (row-major) position `flat`: ``torch.unravel_index``'s result,
    written out because that function imports sympy on first use (~1 s)."""
    index = []
    for size in reversed(shape):
        flat, i = divmod(flat, size)
        index.append(i)
    return tuple(reversed(index))


def _massive(t: Tensor, ratio: float, threshold: float) -> dict[str, Any]:
    if t.numel() == 0:
        raise ShapeError("massive_activations: got an empty tensor")
    # the statistics are values of |t| (and the mean of two), exact in t's own dtype: no float64
    # copy of a large activation tensor
    mag = t.detach().abs().flatten()
    top = torch.argmax(mag)
    largest, median = mag[top].double(), _median(mag)
    above = mag[mag > threshold].double()  # usually few: compared in float64, as before
    count = (above >= ratio * median).sum()
    largest_f, median_f = float(largest), float(median)
    index = _unravel(int(top), tuple(t.shape))
    return {
        "max": largest_f,
        "median": median_f,
        "ratio": largest_f / median_f if median_f > 0 else math.inf,
        "count": int(count),
        "index": index,
    }


def massive_activations(
    activations: Tensor | Mapping[str, Tensor],
    *,
    ratio: float = 1000.0,
    threshold: float = 100.0,
) -> dict[str, Any]:
    """Sun et al.'s massive-activation statistics of one tensor (or of each tensor in a dict).

    For a tensor ``a`` (e.g. a hidden state ``(B, L, D)``; the median runs over all its
    entries): ``{"max": max |a|, "median": median |a|, "ratio": max / median (inf if the median is
    0), "count": #entries with |a| > threshold and |a| >= ratio * median, "index": position of
    max |a| in a}``. For a dict: ``{name: that dict}``.
    """
    if ratio <= 0 or threshold < 0:
        raise ConfigError(f"massive_activations: need ratio > 0 and threshold >= 0, got {ratio}, {threshold}")
    if isinstance(activations, Tensor):
        return _massive(activations, ratio, threshold)
    return {n: _massive(t, ratio, threshold) for n, t in activations.items()}


def block_massive_activations(
    model: nn.Module,
    inputs: Any,
    *,
    modules: Sequence[str] | None = None,
    ratio: float = 1000.0,
    threshold: float = 100.0,
    forward_kwargs: Mapping[str, Any] | None = None,
) -> dict[str, dict[str, Any]]:
    """``massive_activations`` of the residual stream after each block of ``model``.

    ``modules`` default to the items of ``model.blocks`` (``blocks.0``, ``blocks.1``, ...: the
    residual-stream output of each layer of ``layerlab.models.sequence.SequenceModel``).
    Returns ``{block name: statistics}``.
    """
    if modules is None:
        blocks = getattr(model, "blocks", None)
        if not isinstance(blocks, (nn.ModuleList, nn.Sequential)):
            raise ConfigError("block_massive_activations: the model has no `blocks` list; pass modules=[...] "
                              "naming the modules whose outputs are the residual stream")
        modules = [f"blocks.{i}" for i in range(len(blocks))]
    acts = capture(model, inputs, modules, kind="output", forward_kwargs=forward_kwargs)
    return massive_activations(acts, ratio=ratio, threshold=threshold)


# --- attention entropy ----------------------------------------------------------------------

def is_attention(module: nn.Module) -> bool:
    """Whether `module` exposes its attention weights: a callable ``attention_probabilities``."""
    return callable(getattr(module, "attention_probabilities", None))


def attention_probs(module: nn.Module, x: Tensor) -> Tensor:
    """The attention probabilities of an attention module on its input ``x`` (B, L, D): what its
    ``attention_probabilities(x)`` returns, ``softmax(Q K^T / sqrt(d_h) + M)`` for layerlab's
    attention mixer, checked to be ``(B, h, L, L)`` (row ``t``: the distribution over keys;
    causal rows are zero after ``t``)."""
    if not is_attention(module):
        raise ConfigError(f"attention_probs needs an attention module, one with a method "
                          f"attention_probabilities(x) -> (B, h, L, L); {type(module).__name__} has none")
    probs = module.attention_probabilities(x)
    B, L = (x.shape[0], x.shape[1]) if x.dim() >= 2 else (None, None)
    if not isinstance(probs, Tensor) or probs.dim() != 4 or probs.shape[0] != B or probs.shape[2:] != (L, L):
        got = tuple(probs.shape) if isinstance(probs, Tensor) else type(probs).__name__
        raise ShapeError(f"{type(module).__name__}.attention_probabilities returned {got} for an input of shape "
                         f"{tuple(x.shape)}; it must return (B, h, L, L) = ({B}, h, {L}, {L})")
    return probs


def attention_modules(model: nn.Module) -> list[str]:
    """Names of the model's attention modules (those with ``attention_probabilities``)."""
    return [n for n, m in model.named_modules() if is_attention(m)]


def attention_entropy(
    model: nn.Module,
    tokens: Any,
    *,
    reduce: str = "mean",
    modules: Sequence[str] | None = None,
    forward_kwargs: Mapping[str, Any] | None = None,
    captured: Mapping[str, Tensor] | None = None,
) -> dict[str, Tensor]:
    """Entropy (nats) of each head's causal attention distribution, per attention layer.

    The input of every attention module (``attention_modules``, or the named ``modules``) is
    captured in one forward pass of ``model(tokens)``; the probabilities are recomputed by
    ``attention_probs`` (the module's ``attention_probabilities``)
    and ``H_t = −Σ_{s<=t} p_{t,s} log p_{t,s}`` (``0 log 0 = 0``). ``reduce``: ``"mean"`` over
    batch and query positions (Zhai et al.'s Ent(A), averaged over the batch) -> ``(h,)``;
    ``"position"``: mean over the batch -> ``(h, L)``; ``"none"`` -> ``(B, h, L)``. Uniform
    attention gives ``H_t = log(t + 1)``, the maximum.

    ``captured``: the attention modules' inputs, already captured (``{name: (B, L, D)}``); then
    no forward pass is run.

    Returns ``{module name: tensor}`` (float32 or wider).
    """
    if reduce not in REDUCTIONS:
        raise unknown_name("reduction", reduce, REDUCTIONS)
    named = dict(model.named_modules())
    if captured is not None:
        inputs = dict(captured)
    else:
        inputs = _inputs_of(model, tokens, attention_modules(model) if modules is None else modules, forward_kwargs,
                            "attention_entropy: the model has no attention module (none has a method "
                            "attention_probabilities(x)); pass modules=[...] naming the attention mixers")
    out: dict[str, Tensor] = {}
    with side_effect_free(model), torch.no_grad():
        for n, x in inputs.items():
            module = named[n]
            probs = attention_probs(module, x.reshape(-1, *x.shape[-2:]))
            ent = -torch.special.xlogy(probs, probs).sum(-1)  # (B, h, L)
            if reduce == "mean":
                ent = ent.mean(dim=(0, 2))
            elif reduce == "position":
                ent = ent.mean(dim=0)
            out[n] = ent
    return out


# --- activation patterns --------------------------------------------------------------------

def _inputs_of(model: nn.Module, inputs: Any, modules: Sequence[str], forward_kwargs: Mapping[str, Any] | None,
               none_found: str) -> dict[str, Tensor]:
    """The inputs of `modules` in one pass; `none_found` is the error when there are none."""
    if not modules:
        raise ConfigError(none_found)
    return capture(model, inputs, modules, kind="input", forward_kwargs=forward_kwargs)


def _pack_plain(bits: Tensor, width: int = _BITS, dtype: torch.dtype = torch.int64) -> Tensor:
    """(N, U) bool -> (N, ceil(U / width)) of `dtype`: word ``w`` = ``Σ_j bit[width·w + j] · 2^j``
    (zero-padded at the end). The reference form of `_pack`."""
    N, U = bits.shape
    W = max(1, -(-U // width))
    padded = torch.zeros(N, W * width, dtype=torch.int64, device=bits.device)
    padded[:, :U] = bits
    powers = 2 ** torch.arange(width, dtype=torch.int64, device=bits.device)
    return (padded.view(N, W, width) * powers).sum(-1).to(dtype)


def _pack(bits: Tensor, width: int = _BITS, dtype: torch.dtype = torch.int64) -> Tensor:
    """`_pack_plain`, exactly: the words ORed together one bit plane at a time in `dtype` (3x
    faster than the sum over `width` int64 products; no int64 copy of the bits for bytes), and
    whole bytes read from the bool tensor without a copy (bool is stored one byte per entry)."""
    N, U = bits.shape
    W = max(1, -(-U // width))
    if U == W * width and dtype == torch.uint8:
        padded = bits.view(torch.uint8)
    else:
        padded = torch.zeros(N, W * width, dtype=dtype, device=bits.device)
        padded[:, :U] = bits
    units = padded.view(N, W, width)
    words = units[..., 0].clone()
    for j in range(1, width):
        words |= units[..., j] << j
    return words


def is_activation_unit(module: nn.Module) -> bool:
    """Whether `module` is an elementwise activation unit: a PyTorch rectifier (`TORCH_UNITS`) or
    a module whose class is a registered activation (``registry_kind == "activation"``)."""
    return isinstance(module, TORCH_UNITS) or getattr(type(module), "registry_kind", None) == "activation"


def threshold_modules(model: nn.Module) -> list[str]:
    """Names of the model's activation units (`is_activation_unit`)."""
    return [n for n, m in model.named_modules() if is_activation_unit(m)]


def _pattern_bits(model: nn.Module, inputs: Any, modules: Sequence[str] | None,
                  forward_kwargs: Mapping[str, Any] | None,
                  preactivations: Mapping[str, Tensor] | None) -> list[Tensor]:
    """(N, U_m) bool per module m: unit ``i`` of data point ``n`` on (pre-activation > 0)."""
    if preactivations is None:
        modules = threshold_modules(model) if modules is None else modules
        preactivations = _inputs_of(model, inputs, modules, forward_kwargs,
                                    "activation_codes: the model has no activation unit (a ReLU/GELU-like torch "
                                    "module or a registered activation); pass modules=[...] naming the modules "
                                    "whose inputs are the pre-activations")
        if not preactivations:
            raise ConfigError(f"activation_codes: none of the modules {list(modules)} ran in the forward pass")
    sizes = {n: t.shape[0] if t.dim() else 1 for n, t in preactivations.items()}
    if len(set(sizes.values())) != 1:
        raise ShapeError(f"activation_codes: captured tensors disagree on the number of data points "
                         f"(dim 0): {sizes}")
    N = next(iter(sizes.values()))
    return [(t > 0).reshape(N, -1) for t in preactivations.values()]


def activation_codes(
    model: nn.Module,
    inputs: Any,
    *,
    modules: Sequence[str] | None = None,
    forward_kwargs: Mapping[str, Any] | None = None,
    preactivations: Mapping[str, Tensor] | None = None,
) -> Tensor:
    """Packed activation patterns (Hanin & Rolnick 2019) of the data points in ``inputs``.

    The pre-activations (inputs) of the activation units are captured (``threshold_modules``:
    PyTorch's rectifiers and every registered activation), or those of the named ``modules``
    (or given: ``preactivations``, ``{module: captured input}``, and then nothing is run).
    A data point is an index along dim 0 of each captured tensor (all other dimensions are its
    units); unit ``i`` is on when its pre-activation is ``> 0``. The bits of all units, module
    after module, are packed 63 to an int64 word.

    Returns an int64 tensor ``(N, ceil(U / 63))``: equal rows = equal patterns.
    """
    return _pack(activation_bits(model, inputs, modules=modules, forward_kwargs=forward_kwargs,
                                 preactivations=preactivations))


def activation_bits(
    model: nn.Module,
    inputs: Any,
    *,
    modules: Sequence[str] | None = None,
    forward_kwargs: Mapping[str, Any] | None = None,
    preactivations: Mapping[str, Tensor] | None = None,
) -> Tensor:
    """The activation patterns of ``activation_codes`` unpacked: a bool tensor ``(N, U)``, unit
    after unit, module after module (the neural code of each data point)."""
    return torch.cat(_pattern_bits(model, inputs, modules, forward_kwargs, preactivations), dim=1)


def activation_patterns(
    model: nn.Module,
    inputs: Any,
    *,
    modules: Sequence[str] | None = None,
    forward_kwargs: Mapping[str, Any] | None = None,
    preactivations: Mapping[str, Tensor] | None = None,
) -> int:
    """Number of distinct activation patterns the data points of ``inputs`` visit (a lower bound
    on the linear regions they touch, Hanin & Rolnick 2019); see ``activation_codes``."""
    return _count_patterns(_pattern_bits(model, inputs, modules, forward_kwargs, preactivations))


def _count_patterns_plain(blocks: list[Tensor]) -> int:
    """Distinct rows of the bits of all units side by side (``torch.unique`` over rows). The
    reference form of `_count_patterns`."""
    return int(torch.unique(torch.cat(blocks, dim=1), dim=0).shape[0])


def _count_patterns(blocks: list[Tensor]) -> int:
    """`_count_patterns_plain`, exactly, on rows packed 8 bits to a byte, module by module (each
    padded to whole bytes, the same for every row: still injective): ``torch.unique`` then sorts
    an eighth of the bytes."""
    packed = torch.cat([_pack(bits, 8, torch.uint8) for bits in blocks], dim=1)
    return int(torch.unique(packed, dim=0).shape[0])
