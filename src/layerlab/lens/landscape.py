r"""The loss landscape: linear mode connectivity (whole model and per layer) and loss slices.

Papers:
    - Frankle, Dziugaite, Roy & Carbin, "Linear Mode Connectivity and the Lottery Ticket
      Hypothesis", 2020, arXiv:1912.05671: two solutions are linearly mode connected when the
      loss does not rise along the straight path between them; their *instability* is the height
      of that rise.
    - Entezari, Sedghi, Saukh & Neyshabur, "The Role of Permutation Invariance in Linear Mode
      Connectivity of Neural Networks", 2022, arXiv:2110.06296: the loss barrier (the definition
      used here).
    - Adilova, Andriushchenko, Kamp, Fischer & Jaggi, "Layer-wise Linear Mode Connectivity", 2023,
      arXiv:2307.06966: the barrier when only one layer is interpolated, the others held fixed.
    - Li, Xu, Taylor, Studer & Goldstein, "Visualizing the Loss Landscape of Neural Nets", 2018,
      arXiv:1712.09913: filter-normalized random directions and 1-D/2-D loss slices.
    - Izmailov, Podoprikhin, Garipov, Vetrov & Wilson, "Averaging Weights Leads to Wider Optima and
      Better Generalization", 2018, arXiv:1803.05407, and Jordan, Sedghi, Saukh, Entezari &
      Neyshabur, "REPAIR: REnormalizing Permuted Activations for Interpolation Repair", 2023,
      arXiv:2211.08403: weights that no network was trained with need their batch-norm
      statistics recomputed (``buffers="reestimate"``).

Definitions. With ``L(θ)`` the mean loss over the given batches::

    θ(α) = (1 − α) θ_a + α θ_b,                               α ∈ [0, 1]
    B(θ_a, θ_b) = sup_α  L(θ(α)) − [(1 − α) L(θ_a) + α L(θ_b)]    (Entezari et al., Def. of barrier)

(Entezari et al. write it with ``α θ_1 + (1 − α) θ_2``; the same set of points.) The sup is taken
over the α grid, which always contains 0 and 1, so ``B ≥ 0`` and ``B = 0`` for a convex loss.
Frankle et al.'s instability subtracts the *mean* of the endpoint errors instead of the linear
interpolant; the two agree when ``L(θ_a) = L(θ_b)``.

Per layer (Adilova et al.): only the parameters of one group move along the path; every other
parameter stays at ``θ_a``.

Buffers (batch-norm running statistics) are part of a network's function in eval mode, so they
travel with the path (``buffers=``):

    - ``"interpolate"`` (default): every floating-point buffer moves like a parameter,
      ``b(α) = (1 − α) b_a + α b_b``, and an integer or boolean buffer (``num_batches_tracked``)
      is taken from the nearer end (``b_a`` for ``α <= 1/2``). The ends are the two models
      exactly, and the path from b to a is the path from a to b reversed, so the barrier is
      symmetric. A per-layer path moves the buffers of the modules whose parameters it moves.
    - ``"reestimate"``: at every point of the path (ends included) the running statistics of
      every module with PyTorch's running-statistics interface (``track_running_stats``,
      ``running_mean``, ``running_var``, ``momentum``: the BatchNorm and tracking InstanceNorm
      layers) are recomputed from forward passes of ``loss_fn`` on ``stat_batches`` (default:
      ``batches``), those modules in training mode with ``momentum = None``: the mean over the
      batches of each batch's mean and unbiased variance, as ``torch.optim.swa_utils.update_bn``
      computes them. The ends are then each model with re-estimated statistics; other buffers
      are interpolated as above.

A loss slice (Li et al.) is ``L(θ + Σ_i c_i d_i)`` on a grid of coordinates ``c``. Filter
normalization rescales a Gaussian direction ``d`` filter by filter::

    d_{i,j} <- d_{i,j} / ||d_{i,j}|| * ||θ_{i,j}||        (filter j of layer i; Frobenius norms)

where a filter is one slice along dim 0 of a weight (an output unit's row of a ``Linear``, an
output channel of a ``Conv``, a token's row of an ``Embedding``).

Evaluation is functional: parameters are substituted with ``torch.func.functional_call`` for the
duration of one ``loss_fn`` call (the model's own tensors are never written), under
``torch.no_grad`` and ``side_effect_free`` (eval mode). A loss slice keeps ``model``'s buffers.
``loss_fn(model, batch)`` may call the model or read its parameters: both see the
substituted values. ``batches`` is a list of batches (wrap a single batch in a list); ``L`` is
the mean over all their examples: each batch's mean loss weighted by its size (as in ``hessian``).
"""
from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import ConfigError, ShapeError, unknown_name
from ._util import LossFn, batch_weights, named_trainable, select_parameters, side_effect_free

GROUPINGS = ("parameter", "layer", "block")
ONE_D = ("zero", "filter")
BUFFERS = ("interpolate", "reestimate")

__all__ = [
    "interpolate",
    "barrier",
    "layer_barriers",
    "parameter_groups",
    "random_direction",
    "loss_slice",
]


# --- shared helpers -------------------------------------------------------------------------

def parameter_groups(model: nn.Module, by: str = "layer") -> dict[str, list[str]]:
    """Names of ``model``'s parameters grouped by ``by``, in ``named_parameters`` order.

    - ``"parameter"``: one group per parameter tensor (key = the parameter's name).
    - ``"layer"``: one group per module that owns parameters (key = the module's name, e.g.
      ``fc1`` holding ``fc1.weight`` and ``fc1.bias``; parameters of the root module keep their
      own name).
    - ``"block"``: one group per top-level child of ``model``; a container child
      (``nn.ModuleList``, ``nn.Sequential``, ``nn.ModuleDict``) is split into its items, so a
      sequence model's ``blocks.0``, ``blocks.1``, ... are separate groups.
    """
    if by not in GROUPINGS:
        raise unknown_name("parameter grouping", by, GROUPINGS)
    containers = {name for name, m in model.named_children()
                  if isinstance(m, (nn.ModuleList, nn.Sequential, nn.ModuleDict))}
    groups: dict[str, list[str]] = {}
    for name, _ in model.named_parameters():
        parts = name.split(".")
        if by == "parameter" or len(parts) == 1:
            key = name
        elif by == "layer":
            key = ".".join(parts[:-1])
        else:
            key = ".".join(parts[:2]) if parts[0] in containers and len(parts) > 2 else parts[0]
        groups.setdefault(key, []).append(name)
    return groups


class _Evaluate(nn.Module):
    """Runs ``loss_fn(model, batch)`` as a forward, so functional_call substitutes the parameters
    for everything ``loss_fn`` touches (the model's forward and direct parameter reads)."""

    def __init__(self, model: nn.Module, loss_fn: LossFn) -> None:
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn

    def forward(self, batch: Any) -> Tensor:
        return self.loss_fn(self.model, batch)


def _batches(batches: Iterable[Any]) -> list[Any]:
    out = list(batches)
    if not out:
        raise ConfigError("landscape: batches is empty; pass a list of at least one batch")
    return out


def _mean_loss(evaluate: _Evaluate, batches: list[Any], values: dict[str, Tensor]) -> Tensor:
    """Mean of ``loss_fn`` over the examples of all batches (each batch's mean weighted by its
    size) with parameters ``values`` substituted (float64 scalar)."""
    full = {"model." + n: v for n, v in values.items()}
    weights = batch_weights(batches)
    total = None
    for w, batch in zip(weights, batches):
        loss = torch.func.functional_call(evaluate, full, (batch,))
        if loss.numel() != 1:
            raise ShapeError(f"loss_fn must return a scalar (a mean over the batch); got shape "
                             f"{tuple(loss.shape)}. Reduce it with .mean()")
        loss = w * loss.detach().reshape(()).to(torch.float64)
        total = loss if total is None else total + loss
    return total


def _check_pair(model_a: nn.Module, model_b: nn.Module) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Both models' parameters and buffers by name (detached), checked to match."""
    for what, get in (("parameters", nn.Module.named_parameters), ("buffers", nn.Module.named_buffers)):
        ta, tb = dict(get(model_a)), dict(get(model_b))
        if ta.keys() != tb.keys():
            only_a, only_b = sorted(ta.keys() - tb.keys()), sorted(tb.keys() - ta.keys())
            raise ShapeError(f"model_a and model_b have different {what} (only in a: {only_a}; only in b: "
                             f"{only_b}); interpolate between two instances of one architecture")
        for n in ta:
            if ta[n].shape != tb[n].shape or ta[n].dtype != tb[n].dtype:
                raise ShapeError(f"{what[:-1]} {n!r} is {tuple(ta[n].shape)} {ta[n].dtype} in model_a and "
                                 f"{tuple(tb[n].shape)} {tb[n].dtype} in model_b; the architectures must match")
    pa = {n: t.detach() for n, t in [*model_a.named_parameters(), *model_a.named_buffers()]}
    pb = {n: t.detach() for n, t in [*model_b.named_parameters(), *model_b.named_buffers()]}
    return pa, pb


def _owner(name: str) -> str:
    return name.rsplit(".", 1)[0] if "." in name else ""


def _moving_buffers(model: nn.Module, params: str | Iterable[str] | None, moving: list[str]) -> list[str]:
    """Every buffer for a whole-model path; else those of the modules whose parameters move."""
    names = [n for n, _ in model.named_buffers()]
    if params is None:
        return names
    owners = {_owner(n) for n in moving}
    return [n for n in names if _owner(n) in owners]


def _point(alpha: float, pa: dict[str, Tensor], pb: dict[str, Tensor], names: list[str]) -> dict[str, Tensor]:
    """The tensors ``names`` at ``θ(α)``: floating point ones on the segment, the others (integer
    counters) from the nearer end."""
    return {n: (1.0 - alpha) * pa[n] + alpha * pb[n] if pa[n].is_floating_point()
            else (pa[n] if alpha <= 0.5 else pb[n]) for n in names}


def _running_stat_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Modules with PyTorch's running-statistics interface (BatchNorm, tracking InstanceNorm)."""
    return [(n, m) for n, m in model.named_modules()
            if getattr(m, "track_running_stats", False) and hasattr(m, "momentum")
            and isinstance(getattr(m, "running_mean", None), Tensor)
            and isinstance(getattr(m, "running_var", None), Tensor)]


def _reestimate(evaluate: _Evaluate, stat_batches: list[Any], values: dict[str, Tensor]) -> dict[str, Tensor]:
    """`values` plus fresh running statistics of every running-statistics module, accumulated by
    forward passes on `stat_batches` in training mode with ``momentum = None`` (the mean over
    batches of the batch means and unbiased variances)."""
    modules = _running_stat_modules(evaluate.model)
    out = dict(values)
    for name, m in modules:
        prefix = f"{name}." if name else ""
        out[prefix + "running_mean"] = torch.zeros_like(m.running_mean)
        out[prefix + "running_var"] = torch.ones_like(m.running_var)
        if isinstance(getattr(m, "num_batches_tracked", None), Tensor):
            out[prefix + "num_batches_tracked"] = torch.zeros_like(m.num_batches_tracked)
    saved = [(m, m.training, m.momentum) for _, m in modules]
    full = {"model." + n: v for n, v in out.items()}
    try:
        for m, _, _ in saved:
            m.training, m.momentum = True, None  # this module only: dropout elsewhere stays off
        for batch in stat_batches:
            torch.func.functional_call(evaluate, full, (batch,))  # updates the fresh tensors in place
    finally:
        for m, training, momentum in saved:
            m.training, m.momentum = training, momentum
    return out


def _alphas(alphas: int | Sequence[float] | Tensor) -> Tensor:
    if isinstance(alphas, int):
        if alphas < 2:
            raise ConfigError(f"alphas: need at least 2 points on [0, 1], got {alphas}")
        return torch.linspace(0.0, 1.0, alphas, dtype=torch.float64)
    a = torch.as_tensor(alphas, dtype=torch.float64).detach().cpu()
    if a.dim() != 1 or a.numel() == 0:
        raise ShapeError(f"alphas must be an int or a non-empty 1-D sequence, got shape {tuple(a.shape)}")
    if not torch.isfinite(a).all():
        raise ConfigError("alphas must be finite")
    return a


# --- mode connectivity ----------------------------------------------------------------------

def interpolate(
    model_a: nn.Module,
    model_b: nn.Module,
    loss_fn: LossFn,
    batches: Iterable[Any],
    *,
    alphas: int | Sequence[float] | Tensor = 21,
    params: str | Iterable[str] | None = None,
    buffers: str = "interpolate",
    stat_batches: Iterable[Any] | None = None,
) -> tuple[Tensor, Tensor]:
    """Loss along the straight path ``θ(α) = (1 − α) θ_a + α θ_b``.

    ``alphas``: a number of evenly spaced points on [0, 1] (default 21, step 0.05) or explicit
    values (values outside [0, 1] extrapolate). ``params``: parameter names or module-name
    prefixes (e.g. ``"blocks.0"``) that move; the rest stay at ``θ_a`` (Adilova et al.'s per-layer
    path). None moves every parameter. ``buffers``: ``"interpolate"`` (default; floating-point
    buffers move with the parameters, integer ones come from the nearer end) or ``"reestimate"``
    (running statistics recomputed at every point from ``stat_batches``, default ``batches``);
    see the module docstring.

    Returns ``(alphas, losses)``: two float64 tensors of shape ``(n,)``; ``losses[k] = L(θ(α_k))``,
    the mean of ``loss_fn`` over ``batches``, in the loss's units. Neither model is changed.
    """
    if buffers not in BUFFERS:
        raise unknown_name("buffers option", buffers, BUFFERS)
    pa, pb = _check_pair(model_a, model_b)
    moving = select_parameters(model_a, params, trainable_only=False)
    moving += _moving_buffers(model_a, params, moving)
    a = _alphas(alphas)
    batches = _batches(batches)
    stats = batches if stat_batches is None else _batches(stat_batches)
    evaluate = _Evaluate(model_a, loss_fn)
    losses = []
    with side_effect_free(model_a), torch.no_grad():
        for alpha in a.tolist():
            values = _point(alpha, pa, pb, moving)
            if buffers == "reestimate":
                values = _reestimate(evaluate, stats, values)
            losses.append(_mean_loss(evaluate, batches, values))
    losses_t = torch.stack(losses)
    return a.to(losses_t.device), losses_t


def _barrier(alphas: Tensor, losses: Tensor) -> float:
    la, lb = losses[0], losses[-1]
    gap = losses - ((1.0 - alphas) * la + alphas * lb)
    return float(gap.max())


def _barrier_grid(alphas: int | Sequence[float] | Tensor) -> Tensor:
    a = _alphas(alphas)
    if (a < 0).any() or (a > 1).any():
        raise ConfigError("barrier: alphas must lie in [0, 1] (the barrier is a sup over the segment)")
    return torch.unique(torch.cat((a, torch.tensor([0.0, 1.0], dtype=torch.float64))))  # sorted


def barrier(
    model_a: nn.Module,
    model_b: nn.Module,
    loss_fn: LossFn,
    batches: Iterable[Any],
    *,
    alphas: int | Sequence[float] | Tensor = 21,
    params: str | Iterable[str] | None = None,
    buffers: str = "interpolate",
    stat_batches: Iterable[Any] | None = None,
) -> float:
    """Loss barrier ``max_α L(θ(α)) − [(1 − α) L(θ_a) + α L(θ_b)]`` (Entezari et al. 2022).

    The max runs over ``alphas`` (values in [0, 1]) plus the endpoints 0 and 1, so the result is
    ``≥ 0``, and ``0`` for a convex loss; a finer grid can only raise it. ``params`` restricts the
    path to some parameters, ``buffers`` says how running statistics travel (see
    ``interpolate``); with either choice of ``buffers`` the barrier is symmetric in the two
    models. Returns a float in the loss's units.
    """
    a, losses = interpolate(model_a, model_b, loss_fn, batches, alphas=_barrier_grid(alphas), params=params,
                            buffers=buffers, stat_batches=stat_batches)
    return _barrier(a, losses)


def layer_barriers(
    model_a: nn.Module,
    model_b: nn.Module,
    loss_fn: LossFn,
    batches: Iterable[Any],
    *,
    alphas: int | Sequence[float] | Tensor = 21,
    by: str = "layer",
    buffers: str = "interpolate",
    stat_batches: Iterable[Any] | None = None,
) -> dict[str, float]:
    """Per-group barriers (Adilova et al. 2023): for each group of ``parameter_groups(model_a,
    by)`` the barrier of the path that moves only that group, all other parameters at ``θ_a``;
    its chord runs from ``L(θ_a)`` to the loss of the hybrid (``θ_a`` with that group, and the
    buffers of its modules, from ``θ_b``). ``buffers``, ``stat_batches``: as in ``interpolate``.

    ``by``: ``"layer"`` (each parameter-owning module, default), ``"block"`` (top-level children,
    containers split into items) or ``"parameter"``. Returns ``{group name: barrier}`` (floats,
    the loss's units), in parameter order.
    """
    groups = parameter_groups(model_a, by)
    grid = _barrier_grid(alphas)
    batches = _batches(batches)
    return {g: barrier(model_a, model_b, loss_fn, batches, alphas=grid, params=names, buffers=buffers,
                       stat_batches=stat_batches)
            for g, names in groups.items()}


# --- random directions and slices -----------------------------------------------------------

def random_direction(
    model: nn.Module,
    *,
    generator: torch.Generator | None = None,
    filter_normalize: bool = True,
    one_d: str = "zero",
) -> dict[str, Tensor]:
    """A random direction in the space of ``model``'s trainable parameters.

    ``d ~ N(0, I)`` drawn from ``generator`` (default: a CPU generator seeded 0, so calls are
    reproducible and the global RNG is untouched), in each parameter's dtype, on its device.
    With ``filter_normalize`` (Li et al. 2018), every filter of a parameter with ``dim >= 2``
    (a slice along dim 0) is rescaled to the Frobenius norm of the same filter of the weight:
    ``||d_j|| = ||θ_j||``. Parameters with ``dim <= 1`` (biases, norm gains) are not covered by the
    paper's filter rule: ``one_d="zero"`` (default) gives them a zero direction, so they stay
    at their trained values along the slice; ``one_d="filter"`` treats the whole vector as one
    filter (``||d|| = ||θ||``). Without ``filter_normalize`` every parameter gets the raw Gaussian.

    Returns ``{parameter name: direction}`` with each direction shaped like its parameter.
    """
    if one_d not in ONE_D:
        raise unknown_name("one_d option", one_d, ONE_D)
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    out: dict[str, Tensor] = {}
    for name, p in named_trainable(model).items():
        d = torch.randn(p.shape, generator=generator, dtype=p.dtype, device=generator.device).to(p.device)
        if filter_normalize:
            w = p.detach()
            if p.dim() >= 2:
                dims = tuple(range(1, p.dim()))
                scale = torch.linalg.vector_norm(w, dim=dims, keepdim=True) / (
                    torch.linalg.vector_norm(d, dim=dims, keepdim=True).clamp_min(torch.finfo(d.dtype).tiny))
                d = d * scale
            elif one_d == "zero":
                d = torch.zeros_like(d)
            else:
                d = d * (torch.linalg.vector_norm(w) / torch.linalg.vector_norm(d).clamp_min(torch.finfo(d.dtype).tiny))
        out[name] = d
    return out


def _as_direction(direction: dict[str, Tensor] | Tensor, params: dict[str, Tensor], k: int) -> dict[str, Tensor]:
    """A direction as ``{name: tensor}`` over trainable parameters (a flat vector is split in
    ``named_parameters`` order of the trainable parameters, as a Hessian eigenvector is)."""
    if isinstance(direction, Tensor):
        total = sum(p.numel() for p in params.values())
        if direction.dim() != 1 or direction.numel() != total:
            raise ShapeError(f"direction {k}: a flat direction must be 1-D with one entry per trainable "
                             f"parameter ({total}); got shape {tuple(direction.shape)}")
        pieces = direction.split([p.numel() for p in params.values()])
        return {n: piece.reshape(p.shape).to(p.device, p.dtype) for (n, p), piece in zip(params.items(), pieces)}
    if not isinstance(direction, dict):
        raise ShapeError(f"direction {k}: expected a dict of tensors or a flat tensor, got {type(direction).__name__}")
    out = {}
    for n, d in direction.items():
        if n not in params:
            raise unknown_name(f"parameter in direction {k}", n, params)
        if d.shape != params[n].shape:
            raise ShapeError(f"direction {k}: entry {n!r} has shape {tuple(d.shape)}, the parameter "
                             f"{tuple(params[n].shape)}")
        out[n] = d.detach().to(params[n].device, params[n].dtype)
    return out


def loss_slice(
    model: nn.Module,
    loss_fn: LossFn,
    batches: Iterable[Any],
    directions: Sequence[dict[str, Tensor] | Tensor],
    coords: Sequence[Sequence[float] | Tensor] | Tensor,
) -> Tensor:
    """Losses ``L(θ + Σ_i c_i d_i)`` on the grid of coordinates (Li et al. 2018, Sec. 3).

    ``directions``: k directions, each a dict ``{parameter name: tensor}`` (missing parameters do
    not move; e.g. from ``random_direction``) or a flat vector over the trainable parameters in
    ``named_parameters`` order (e.g. a Hessian eigenvector). ``coords``: one 1-D sequence of
    coordinates per direction (a single 1-D tensor is accepted when k = 1).

    Returns a float64 tensor of shape ``(len(coords[0]), ..., len(coords[k-1]))``: entry
    ``[j_1, ..., j_k]`` is the mean loss at ``θ + Σ_i coords[i][j_i] d_i``. ``model`` is unchanged.
    """
    if isinstance(directions, (dict, Tensor)):
        directions = [directions]
    if len(directions) == 0:
        raise ConfigError("loss_slice: pass at least one direction")
    if isinstance(coords, Tensor) and coords.dim() == 1:
        coords = [coords]
    grids = [torch.as_tensor(c, dtype=torch.float64).detach().cpu() for c in coords]
    if len(grids) != len(directions):
        raise ShapeError(f"loss_slice: {len(directions)} direction(s) but {len(grids)} coordinate "
                         "array(s); pass one 1-D coordinate array per direction")
    for i, g in enumerate(grids):
        if g.dim() != 1 or g.numel() == 0:
            raise ShapeError(f"loss_slice: coords[{i}] must be a non-empty 1-D array, got shape {tuple(g.shape)}")
    params = {n: p.detach() for n, p in named_trainable(model).items()}
    dirs = [_as_direction(d, params, k) for k, d in enumerate(directions)]
    moving = [n for n in params if any(n in d for d in dirs)]
    batches = _batches(batches)
    evaluate = _Evaluate(model, loss_fn)
    values_list = [g.tolist() for g in grids]
    losses = []
    with side_effect_free(model), torch.no_grad():
        for point in itertools.product(*values_list):
            values = {}
            for n in moving:
                v = params[n]
                for c, d in zip(point, dirs):
                    if n in d:
                        v = v + c * d[n]
                values[n] = v
            losses.append(_mean_loss(evaluate, batches, values))
    return torch.stack(losses).reshape(tuple(g.numel() for g in grids))
