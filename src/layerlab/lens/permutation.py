r"""Permutation alignment of one network to another before interpolation: weight matching.

Paper: Ainsworth, Hayase & Srinivasa, "Git Re-Basin: Merging Models modulo Permutation
Symmetries", 2022 (ICLR 2023), arXiv:2209.04836, Sec. 3.2 ("Matching weights") and Algorithm 1
(PermutationCoordinateDescent).

Symmetry. Permuting the hidden units of a layer, ``z_ℓ = σ(W_ℓ z_{ℓ−1} + b_ℓ)``, by a permutation
matrix ``P`` and undoing it in the next layer leaves the function unchanged::

    W_ℓ' = P W_ℓ,   b_ℓ' = P b_ℓ,   W_{ℓ+1}' = W_{ℓ+1} P^T     (σ acts elementwise: σ(P u) = P σ(u))

Weight matching. For a chain of layers with permutations ``π = (P_1, ..., P_{L−1})`` of the hidden
units (``P_0 = P_L = I``: inputs and outputs keep their order), find::

    max_π  Σ_ℓ <W_ℓ^A, P_ℓ W_ℓ^B P_{ℓ−1}^T>_F                     (paper, Sec. 3.2)

(equivalently ``min_π ||θ_A − π(θ_B)||²``: a permutation preserves norms). The sum is a sum of
bilinear assignment problems (NP-hard in general). Algorithm 1 is coordinate descent: with the
other permutations held fixed the objective is linear in ``P_ℓ``::

    P_ℓ ← argmax_P <P, W_ℓ^A P_{ℓ−1} (W_ℓ^B)^T + (W_{ℓ+1}^A)^T P_{ℓ+1} W_{ℓ+1}^B>_F

a linear assignment problem, solved exactly here by ``solve_assignment`` (shortest augmenting
paths with dual potentials, warm-started from the previous solve's potentials for the same
permutation). The permutations are visited in a random order each sweep
(``seed``), starting from the identity; a permutation is replaced only when the new one raises
the objective (by more than a relative ``1e-12``), so the objective never decreases, and the loop
stops after the first sweep that changes nothing (or ``max_iter`` sweeps).

General form. A ``PermutationSpec`` says which permutation acts on each axis of each tensor
(``axes[name] = (perm or None, ...)``). Every parameter with a permuted axis enters the
objective, ``Σ_θ <θ^A, π(θ^B)>`` — weights, biases and norm gains alike (the paper's equation
writes the weights; the authors' released implementation sums over every parameter that carries
the permutation, as here, and stops at the first sweep without a gain above 1e-12). The linear cost of permutation ``p`` is ``C_p[i, j] = Σ_{(θ, axis) ∋ p} <θ^A[i along axis],
π_{−p}(θ^B)[j along axis]>`` with ``π_{−p}`` every other permutation applied; then
``<θ^A, π(θ^B)>`` summed over those tensors is ``Σ_i C_p[i, p(i)]``. A tensor that carries the same
permutation on two axes would make this quadratic; ``PermutationSpec`` rejects it.

Convention. ``perms[p]`` is a LongTensor ``q`` with ``π(θ^B)`` taking unit ``q[i]`` of B as its unit
``i`` (``index_select(axis, q)``), i.e. row ``i`` of ``P`` is ``e_{q[i]}``.

Models (``permutation_spec(model)``):

- ``Classifier`` (the vector backbone) with residual ``mlp`` or ``swiglu`` channels and
  ``layernorm``/``rmsnorm`` norms at any placement: the residual stream adds every block's output
  to its input, so one permutation ``"stream"`` is shared by the input projection's outputs,
  every block's input and output, every norm's gain and shift and the head's inputs (paper,
  Sec. 3, on residual connections); each block's hidden units have their own (``"layers.i.f"``).
- ``DeepLinear``: one permutation per hidden layer (``"weights.l"``).
- ``nn.Sequential`` of ``Linear`` layers, elementwise activations, ``Dropout``, ``LayerNorm`` /
  ``BatchNorm1d`` and layerlab norms: one permutation per hidden ``Linear`` (named by its index);
  norm gains, shifts and running statistics follow the permutation of the features they see.

Anything else raises ``ConfigError`` naming the module that breaks the symmetry and the fix
(build a ``PermutationSpec`` by hand).
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import ConfigError, ShapeError
from ..models.classifier import Classifier
from ..models.deep_linear import DeepLinear
from ..models.sequence import Residual
from ..registry import get as registered
from .similarity import insert_row

__all__ = ["PermutationSpec", "permutation_spec", "apply_permutation", "random_permutations",
           "solve_assignment", "weight_matching", "matching_objective", "align"]

def _block(kind: str, name: str) -> type:
    """A registered block's class (the lens finds blocks through the registry, never by import)."""
    return registered(kind, name).obj


# Modules that map u to f(u) with f(P u) = P f(u) for every permutation P of the last dim and carry
# no per-unit parameter: elementwise functions (PolyReLU's coefficients are shared scalars) and
# PolyNorm (RMS over all channels, shared coefficients).
_TORCH_EQUIVARIANT = (nn.Identity, nn.Dropout, nn.ReLU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.LeakyReLU,
                      nn.ELU, nn.SELU, nn.CELU, nn.Softplus, nn.Mish, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid,
                      nn.ReLU6, nn.Softsign)
_EQUIVARIANT_ACTIVATIONS = ("gelu", "relu", "silu", "selu", "polyrelu", "polynorm")
_SHARED_PARAMETERS = ("polyrelu", "polynorm")  # activations whose parameters are shared scalars


def _equivariant() -> tuple[type, ...]:
    return tuple(_block("activation", n) for n in _EQUIVARIANT_ACTIVATIONS) + _TORCH_EQUIVARIANT


def _norms() -> tuple[type, ...]:
    """Norms whose statistics run over all features and whose parameters/buffers are per feature."""
    return (_block("norm", "layernorm"), _block("norm", "rmsnorm"), nn.LayerNorm, nn.BatchNorm1d,
            *((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()))


_FIX = ("; align supports the classifier backbone with mlp/swiglu channels and layernorm/rmsnorm norms, "
        "DeepLinear, and nn.Sequential MLPs of Linear, elementwise activations, Dropout and per-feature "
        "norms. For another model pass spec=PermutationSpec(axes={tensor name: (perm or None per axis)}, "
        "sizes={perm: size}) naming which permutation acts on each axis")


@dataclass(frozen=True)
class PermutationSpec:
    """Which permutation acts on which axis of which tensor (parameter or buffer).

    ``axes``: ``{tensor name: (permutation name or None, one per axis)}``; tensors not listed are
    not permuted. ``sizes``: ``{permutation name: number of units}``.
    """

    axes: dict[str, tuple[str | None, ...]]
    sizes: dict[str, int]
    perm_to_axes: dict[str, list[tuple[str, int]]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        to_axes: dict[str, list[tuple[str, int]]] = {p: [] for p in self.sizes}
        for name, axes in self.axes.items():
            used = [p for p in axes if p is not None]
            if len(set(used)) != len(used):
                raise ConfigError(f"PermutationSpec: tensor {name!r} carries one permutation on two axes {axes}; "
                                  "weight matching needs each permutation at most once per tensor")
            for axis, p in enumerate(axes):
                if p is None:
                    continue
                if p not in to_axes:
                    raise ConfigError(f"PermutationSpec: tensor {name!r} uses permutation {p!r}, which has no "
                                      f"size; add it to sizes (have {sorted(self.sizes)})")
                to_axes[p].append((name, axis))
        unused = sorted(p for p, where in to_axes.items() if not where)
        if unused:
            raise ConfigError(f"PermutationSpec: permutation(s) {unused} act on no tensor; remove them from sizes")
        object.__setattr__(self, "perm_to_axes", to_axes)

    def check(self, tensors: dict[str, Tensor], what: str = "model") -> None:
        """Every listed tensor exists with the listed rank and the permutations' sizes."""
        for name, axes in self.axes.items():
            if name not in tensors:
                raise ConfigError(f"PermutationSpec names {name!r}, which {what} does not have; "
                                  f"build the spec from this model (permutation_spec(model))")
            t = tensors[name]
            if t.dim() != len(axes):
                raise ShapeError(f"PermutationSpec: {name!r} has {t.dim()} axes in {what}, the spec lists "
                                 f"{len(axes)}")
            for axis, p in enumerate(axes):
                if p is not None and t.shape[axis] != self.sizes[p]:
                    raise ShapeError(f"PermutationSpec: axis {axis} of {name!r} has {t.shape[axis]} units in "
                                     f"{what}; permutation {p!r} has {self.sizes[p]}")


# ---- deriving the spec from a model --------------------------------------------------------------

class _Builder:
    def __init__(self) -> None:
        self.axes: dict[str, tuple[str | None, ...]] = {}
        self.sizes: dict[str, int] = {}

    def perm(self, name: str, size: int) -> str:
        self.sizes[name] = int(size)
        return name

    def linear(self, prefix: str, m: nn.Linear, out: str | None, inp: str | None) -> None:
        self.axes[prefix + "weight"] = (out, inp)
        if m.bias is not None:
            self.axes[prefix + "bias"] = (out,)

    def norm(self, prefix: str, m: nn.Module, perm: str | None, where: str) -> None:
        """A per-feature norm: its 1-D parameters and floating-point buffers follow ``perm``."""
        if not isinstance(m, _norms()):
            raise ConfigError(f"permutation_spec: {where} is a {type(m).__name__}, whose output does not "
                              f"permute with its input (statistics over groups of units, or unknown){_FIX}")
        if isinstance(m, nn.LayerNorm) and len(m.normalized_shape) != 1:
            raise ConfigError(f"permutation_spec: {where} normalizes over {len(m.normalized_shape)} dims{_FIX}")
        for name, t in [*m.named_parameters(recurse=False), *m.named_buffers(recurse=False)]:
            if t is None:
                continue
            if t.dim() == 1 and t.is_floating_point():
                self.axes[prefix + name] = (perm,) if perm is not None else (None,)
            elif t.dim() != 0:
                raise ConfigError(f"permutation_spec: {where} has tensor {name!r} of shape {tuple(t.shape)}{_FIX}")

    def spec(self) -> PermutationSpec:
        axes = {n: a for n, a in self.axes.items() if any(p is not None for p in a)}
        return PermutationSpec(axes=axes, sizes=self.sizes)


def _check_equivariant(m: nn.Module, where: str) -> None:
    if isinstance(m, _block("activation", "stablemax")) and m.dim in (-1,):
        return
    if isinstance(m, nn.PReLU) and m.weight.numel() == 1:
        return
    if not isinstance(m, _equivariant()):
        raise ConfigError(f"permutation_spec: {where} is a {type(m).__name__}, not a known elementwise "
                          f"(permutation-equivariant) function{_FIX}")


def _channel_spec(b: _Builder, prefix: str, f: nn.Module, stream: str, where: str) -> None:
    if isinstance(f, _block("channel", "mlp")):
        _check_equivariant(f.act, f"{where}.act")
        hid = b.perm(prefix.rstrip("."), f.hidden)
        b.linear(prefix + "fc1.", f.fc1, hid, stream)
        b.linear(prefix + "fc2.", f.fc2, stream, hid)
    elif isinstance(f, _block("channel", "swiglu")):
        hid = b.perm(prefix.rstrip("."), f.hidden)
        b.linear(prefix + "w.", f.w, hid, stream)
        b.linear(prefix + "v.", f.v, hid, stream)
        b.linear(prefix + "w2.", f.w2, stream, hid)
    else:
        raise ConfigError(f"permutation_spec: {where} is the channel {type(f).__name__}; weight matching "
                          f"knows the hidden units of 'mlp' and 'swiglu' only{_FIX}")


def _classifier_spec(model: Classifier) -> PermutationSpec:
    b = _Builder()
    stream = b.perm("stream", model.proj.out_features)
    b.linear("proj.", model.proj, stream, None)
    for i, layer in enumerate(model.layers):
        if not isinstance(layer, Residual):
            raise ConfigError(f"permutation_spec: layers.{i} is a {type(layer).__name__}, not a Residual{_FIX}")
        for part in ("norm_in", "norm_out", "norm_post"):
            norm = getattr(layer, part)
            if norm is not None:
                b.norm(f"layers.{i}.{part}.", norm, stream, f"layers.{i}.{part}")
        _channel_spec(b, f"layers.{i}.f.", layer.f, stream, f"layers.{i}.f")
    if not isinstance(model.norm, nn.Identity):
        b.norm("norm.", model.norm, stream, "norm")
    b.linear("head.", model.head, None, stream)
    return b.spec()


def _deep_linear_spec(model: DeepLinear) -> PermutationSpec:
    b = _Builder()
    prev: str | None = None
    for l, w in enumerate(model.weights):
        out = b.perm(f"weights.{l}", w.shape[0]) if l < len(model.weights) - 1 else None
        b.axes[f"weights.{l}"] = (out, prev)
        prev = out
    return b.spec()


def _sequential_spec(model: nn.Sequential) -> PermutationSpec:
    b = _Builder()
    names = [n for n, _ in model.named_children()]
    linears = [n for n, m in model.named_children() if isinstance(m, nn.Linear)]
    if not linears:
        raise ConfigError(f"permutation_spec: the nn.Sequential has no Linear layer, so no hidden units to permute{_FIX}")
    current: str | None = None  # the permutation of the features flowing at this point
    for n in names:
        m = getattr(model, n)
        if isinstance(m, nn.Linear):
            out = b.perm(n, m.out_features) if n != linears[-1] else None
            b.linear(f"{n}.", m, out, current)
            current = out
        elif isinstance(m, _norms()):
            b.norm(f"{n}.", m, current, n)
        elif isinstance(m, nn.Flatten) and n not in names[names.index(linears[0]):]:
            continue
        else:
            _check_equivariant(m, n)
            shared = tuple(_block("activation", n) for n in _SHARED_PARAMETERS) + (nn.PReLU,)
            if any(True for _ in m.parameters()) and not isinstance(m, shared):
                raise ConfigError(f"permutation_spec: {n} ({type(m).__name__}) has parameters{_FIX}")
    return b.spec()


def permutation_spec(model: nn.Module) -> PermutationSpec:
    """The permutation symmetries of ``model`` (see the module docstring for the supported models).

    Raises ``ConfigError`` naming the part that breaks the symmetry (a channel other than mlp/swiglu,
    a group norm, an unknown module) and the fix: pass a hand-built ``PermutationSpec``.
    """
    if isinstance(model, Classifier):
        spec = _classifier_spec(model)
    elif isinstance(model, DeepLinear):
        spec = _deep_linear_spec(model)
    elif isinstance(model, nn.Sequential):
        spec = _sequential_spec(model)
    else:
        raise ConfigError(f"permutation_spec: no permutation spec is known for a {type(model).__name__}{_FIX}")
    spec.check(_tensors(model))
    return spec


# ---- permutations and their application ----------------------------------------------------------

def _tensors(model: nn.Module) -> dict[str, Tensor]:
    return {n: t.detach() for n, t in [*model.named_parameters(), *model.named_buffers()]}


def _check_perms(spec: PermutationSpec, perms: dict[str, Tensor]) -> dict[str, Tensor]:
    if set(perms) != set(spec.sizes):
        raise ConfigError(f"permutations given for {sorted(perms)}; the spec has {sorted(spec.sizes)}: "
                          "pass one permutation per name (identity: torch.arange(size))")
    out = {}
    for p, q in perms.items():
        q = torch.as_tensor(q).detach().to("cpu", torch.long).reshape(-1)
        n = spec.sizes[p]
        if q.numel() != n or not torch.equal(torch.sort(q).values, torch.arange(n)):
            raise ConfigError(f"perms[{p!r}] is not a permutation of 0..{n - 1} (got {q.numel()} entries); "
                              "pass a reordering of torch.arange(size)")
        out[p] = q
    return out


def _permute(t: Tensor, axes: tuple[str | None, ...], perms: dict[str, Tensor], skip: str | None = None) -> Tensor:
    for axis, p in enumerate(axes):
        if p is not None and p != skip:
            t = t.index_select(axis, perms[p].to(t.device))
    return t


def random_permutations(spec: PermutationSpec, *, generator: torch.Generator | None = None) -> dict[str, Tensor]:
    """One uniformly random permutation per name of ``spec`` (drawn from ``generator``, default seed 0)."""
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    return {p: torch.randperm(n, generator=g) for p, n in spec.sizes.items()}


def apply_permutation(model: nn.Module, perms: dict[str, Tensor], spec: PermutationSpec | None = None) -> nn.Module:
    """A copy of ``model`` with its units permuted by ``perms``: ``θ' = π(θ)``, every tensor of
    ``spec`` (default ``permutation_spec(model)``) re-indexed along its permuted axes. The copy
    computes the same function (up to the order of floating-point sums); ``model`` is unchanged."""
    spec = spec if spec is not None else permutation_spec(model)
    spec.check(_tensors(model))
    perms = _check_perms(spec, perms)
    out = copy.deepcopy(model)
    tensors = _tensors(out)
    with torch.no_grad():
        for name, axes in spec.axes.items():
            t = tensors[name]
            t.copy_(_permute(t.clone(), axes, perms))
    return out


# ---- the linear assignment problem ---------------------------------------------------------------

def solve_assignment(score: np.ndarray, v: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact ``argmax_q Σ_i score[i, q(i)]`` over permutations ``q`` of a square matrix, warm-started.

    Shortest augmenting paths with dual potentials (Jonker & Volgenant 1987; the Hungarian
    method's O(n³) form) on the cost ``c = −score``. Start: column potentials ``v`` (given, e.g.
    the previous solve's for a nearby matrix, else the column minima of ``c``) and row potentials
    ``u_i = min_j (c_ij − v_j)``, so every reduced cost ``c_ij − u_i − v_j ≥ 0``; each row takes its
    tight column unless an earlier row took it. Each remaining row is then inserted by a
    Dijkstra search over columns on reduced costs until a free column is reached, the potentials
    shifted to keep the matched edges tight, and the path flipped. Near-identical matrices (the
    later sweeps of weight matching) leave few rows to insert. Returns ``(q, v)``: ``q[i]`` the
    column of row ``i``, and the final column potentials (to warm-start the next solve).
    ``lens.similarity.assign`` (cold start) is the reference it is tested against.
    """
    c = -np.asarray(score, dtype=np.float64)
    n = c.shape[0]
    if c.shape != (n, n) or not np.isfinite(c).all():
        raise ShapeError(f"solve_assignment needs a finite square matrix, got shape {c.shape}")
    v = c.min(axis=0) if v is None else np.asarray(v, dtype=np.float64).copy()
    red = c - v[None, :]
    best = red.argmin(axis=1)
    # 1-based arrays as in the textbook form: column 0 is the virtual start of a search
    u = np.zeros(n + 1)
    u[1:] = red[np.arange(n), best]
    vv = np.zeros(n + 1)
    vv[1:] = v
    owner = np.zeros(n + 1, dtype=np.int64)  # owner[j]: the 1-based row matched to column j (0 = free)
    for i in range(n):  # first row to claim its tight column keeps it
        if owner[best[i] + 1] == 0:
            owner[best[i] + 1] = i + 1
    matched = np.zeros(n + 1, dtype=bool)
    matched[owner[1:][owner[1:] > 0]] = True
    way = np.zeros(n + 1, dtype=np.int64)
    for i in np.nonzero(~matched[1:])[0] + 1:
        insert_row(c, u, vv, owner, way, int(i))
    q = np.empty(n, dtype=np.int64)
    q[owner[1:] - 1] = np.arange(n)
    return q, vv[1:]


# ---- weight matching -----------------------------------------------------------------------------

def _float64(model: nn.Module, spec: PermutationSpec) -> dict[str, Tensor]:
    params = dict(model.named_parameters())
    return {n: params[n].detach().to("cpu", torch.float64) for n in spec.axes if n in params}


def matching_objective(model_a: nn.Module, model_b: nn.Module, perms: dict[str, Tensor],
                       spec: PermutationSpec | None = None) -> float:
    """``Σ_θ <θ^A, π(θ^B)>`` over the parameters the spec permutes (float64): the reference form of
    the objective, by permuting B's tensors and taking the inner products directly."""
    spec = spec if spec is not None else permutation_spec(model_a)
    perms = _check_perms(spec, perms)
    a, b = _float64(model_a, spec), _float64(model_b, spec)
    return float(sum((a[n] * _permute(b[n], spec.axes[n], perms)).sum() for n in a))


def _cost(p: str, spec: PermutationSpec, a: dict[str, Tensor], b: dict[str, Tensor],
          perms: dict[str, Tensor]) -> Tensor:
    """``C_p[i, j]``: the objective's terms in permutation ``p`` with unit ``i`` of A matched to unit
    ``j`` of B, every other permutation applied to B."""
    n = spec.sizes[p]
    c = torch.zeros(n, n, dtype=torch.float64)
    for name, axis in spec.perm_to_axes[p]:
        if name not in a:  # a buffer: permuted, not matched
            continue
        wa = a[name].movedim(axis, 0).reshape(n, -1)
        wb = _permute(b[name], spec.axes[name], perms, skip=p).movedim(axis, 0).reshape(n, -1)
        c += wa @ wb.T
    return c


def weight_matching(model_a: nn.Module, model_b: nn.Module, *, spec: PermutationSpec | None = None,
                    max_iter: int = 100, seed: int = 0,
                    init: dict[str, Tensor] | None = None) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Permutations of ``model_b``'s units that maximize ``Σ_θ <θ^A, π(θ^B)>`` (Algorithm 1).

    ``spec``: default ``permutation_spec(model_a)`` (both models must fit it). ``max_iter``: the
    most sweeps; ``seed``: the order of the permutations within each sweep; ``init``: starting
    permutations (default identities). Returns ``(perms, info)`` with info ``objective`` (its value
    at the start and after every coordinate step, non-decreasing), ``sweeps``, ``converged`` (a
    sweep changed nothing) and ``objective_identity`` (no permutation).
    """
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ConfigError(f"weight_matching: max_iter must be an integer >= 1, got {max_iter!r}")
    spec = spec if spec is not None else permutation_spec(model_a)
    spec.check(_tensors(model_a), "model_a")
    spec.check(_tensors(model_b), "model_b")
    a, b = _float64(model_a, spec), _float64(model_b, spec)
    ident = {p: torch.arange(n) for p, n in spec.sizes.items()}
    perms = _check_perms(spec, init) if init is not None else dict(ident)
    names = list(spec.sizes)
    start = float(sum((a[n] * _permute(b[n], spec.axes[n], perms)).sum() for n in a))
    scale = math.sqrt(sum(float((t * t).sum()) for t in a.values()) * sum(float((t * t).sum()) for t in b.values()))
    tol = 1e-12 * max(scale, 1e-300)
    history, value = [start], start
    rng = np.random.default_rng(seed)
    converged, sweeps = False, 0
    duals: dict[str, np.ndarray] = {}
    for sweeps in range(1, max_iter + 1):
        changed = False
        for k in rng.permutation(len(names)):
            p = names[int(k)]
            c = _cost(p, spec, a, b, perms)
            rows = torch.arange(spec.sizes[p])
            q, duals[p] = solve_assignment(c.numpy(), duals.get(p))
            new = torch.from_numpy(q)
            gain = float(c[rows, new].sum() - c[rows, perms[p]].sum())
            if gain > tol:
                perms[p] = new
                value += gain
                changed = True
            history.append(value)
        if not changed:
            converged = True
            break
    identity = start if init is None else float(sum((a[n] * b[n]).sum() for n in a))
    return perms, {"objective": history, "sweeps": sweeps, "converged": converged, "objective_identity": identity}


def _distance(a: dict[str, Tensor], b: dict[str, Tensor]) -> float:
    return math.sqrt(sum(float(((a[n] - b[n]) ** 2).sum()) for n in a))


def align(model_a: nn.Module, model_b: nn.Module, *, spec: PermutationSpec | None = None, max_iter: int = 100,
          seed: int = 0) -> tuple[nn.Module, dict[str, Tensor], dict[str, Any]]:
    """Align ``model_b`` to ``model_a`` by weight matching (Git Re-Basin, Algorithm 1).

    Returns ``(aligned_b, perms, info)``: ``aligned_b = apply_permutation(model_b, perms)``, a copy
    of B computing B's function, ready for ``landscape.interpolate(model_a, aligned_b, ...)`` /
    ``barrier`` / ``layer_barriers``; ``perms`` as in ``weight_matching``; ``info`` is
    ``weight_matching``'s plus ``distance_before`` = ``||θ_A − θ_B||`` and ``distance_after`` =
    ``||θ_A − π(θ_B)||`` over every parameter (float64). Neither model is changed.
    """
    spec = spec if spec is not None else permutation_spec(model_a)
    perms, info = weight_matching(model_a, model_b, spec=spec, max_iter=max_iter, seed=seed)
    aligned = apply_permutation(model_b, perms, spec)
    pa = {n: t.detach().to("cpu", torch.float64) for n, t in model_a.named_parameters()}
    pb = {n: t.detach().to("cpu", torch.float64) for n, t in model_b.named_parameters()}
    pc = {n: t.detach().to("cpu", torch.float64) for n, t in aligned.named_parameters()}
    if pa.keys() != pb.keys() or any(pa[n].shape != pb[n].shape for n in pa):
        raise ShapeError("align: model_a and model_b have different parameters; align two instances of one architecture")
    info = {**info, "distance_before": _distance(pa, pb), "distance_after": _distance(pa, pc)}
    return aligned, perms, info
