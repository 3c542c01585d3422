r"""Exact linear regions of a ReLU network along a line segment in input space.

Paper: Stargalla, Hertrich & Reichman, "The Computational Complexity of Counting Linear Regions
in ReLU Neural Networks", 2025, arXiv:2505.16716. A ReLU network ``f`` is continuous and
piecewise linear (CPWL); the paper compares non-equivalent definitions of a *linear region*,
among them

    (activation regions)  maximal connected sets of inputs with one activation pattern
                          ``s(x) = (1[z_i(x) > 0])_i`` over all hidden units ``i``;
    (linear pieces)       maximal connected sets on which ``f`` is affine,

and shows that counting them is #P-hard already with one hidden layer. Restricted to a segment
``x(t) = a + t (b - a)``, ``t in [0, 1]`` (Hanin & Rolnick, "Complexity of Linear Regions in Deep
Networks", 2019, arXiv:1901.09021, count regions this way) both are exact and cheap: every
pre-activation ``z_i(x(t))`` is affine in ``t`` on an activation region, so the next boundary
after a point ``t_0`` inside a region is

    t_1 = t_0 + min { -z_i(t_0) / z_i'(t_0) : -z_i(t_0) / z_i'(t_0) > 0 },

the first zero crossing of any unit (``z' = dz/dt``, a forward-mode derivative). A pattern's
region is a convex polyhedron, so along a line each pattern is visited on one interval and
activation regions = boundaries + 1. Adjacent activation regions with the same slope ``df/dt``
belong to one linear piece (a unit whose switch is masked downstream, e.g. by a dead unit), so
pieces <= activation regions; the two definitions differ exactly there.

Forms:
    - ``mlp_line_regions`` (reference): for a plain MLP given as weights and biases, refines the
      segment layer by layer: on each interval the hidden state is ``h(t) = A t + c``; the next
      layer's pre-activations ``W h + b`` are affine, their zeros inside the interval split it,
      and ReLU masks the affine map on each piece.
    - ``line_regions`` (any module): walks the segment region by region with the formula above,
      the pre-activations read from the inputs of the activation units
      (``dynamics.threshold_modules``) and their ``t``-derivatives as Jacobian-vector products, all lines of
      a batch at once. Exact for piecewise-linear networks (Linear, ReLU, residual sums); for a
      network with smooth parts (norms, GELU) it counts the sign changes of pre-activations that
      its local linearizations predict: a proxy, as ``dynamics.activation_patterns``, and one
      that depends on the sampling (``grid``), since neighbouring linearizations disagree.
      The ``t``-derivatives ``z'`` have a reference form (two reverse passes, any module) and a
      fast form (one forward pass on the stacked rows ``[x; d]`` with forward-mode rules per part,
      ``lens._tangent``, about half the time) for networks of Linear, ReLU, GELU and norms; both
      visit the same points and find the same regions (tested).

Regions narrower than ``step`` (relative, default 1e-9 of the segment in float64) are stepped
over. Both forms work in float64 on copies; the model is not changed.
"""
from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from operator import itemgetter

import torch
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from ..errors import ConfigError, ShapeError
from ._tangent import is_linear_container, rule_for, stacked, stacked_supported
from ._util import side_effect_free
from .dynamics import threshold_modules
from .probes import ProbeContext, ProbeOutput, _is_int, _require, register_probe


@dataclass(frozen=True)
class LineRegions:
    """Activation regions of one segment: ``breakpoints`` (sorted ``t`` in (0, 1) where the
    pattern changes) and ``slopes`` ``(R, out)``, ``df/dt`` on each of the ``R`` regions."""

    breakpoints: Tensor
    slopes: Tensor

    @property
    def n_regions(self) -> int:
        """Activation regions the segment meets (definition: connected, one pattern)."""
        return int(self.breakpoints.numel()) + 1

    def n_pieces(self, rtol: float = 1e-7) -> int:
        """Linear pieces of ``f`` on the segment: adjacent regions merge when their slopes agree
        (``|s_r - s_{r+1}| <= rtol * max(|s_r|, |s_{r+1}|, tiny)`` entrywise in the max norm)."""
        s = self.slopes
        if s.shape[0] < 2:
            return 1
        diff = (s[1:] - s[:-1]).abs().amax(dim=1)
        scale = torch.maximum(s[1:].abs().amax(dim=1), s[:-1].abs().amax(dim=1)).clamp_min(1e-300)
        return 1 + int((diff > rtol * scale).sum())


def _segment(start: Tensor, end: Tensor) -> tuple[Tensor, Tensor]:
    if start.shape != end.shape or start.dim() != 1:
        raise ShapeError(f"start and end must be 1-D inputs of the same shape, got {tuple(start.shape)} "
                         f"and {tuple(end.shape)}")
    a, b = start.detach().double(), end.detach().double()
    return a, b - a


def mlp_line_regions(weights: Sequence[Tensor], biases: Sequence[Tensor], start: Tensor, end: Tensor) -> LineRegions:
    """Reference form: ``f(x) = W_L relu(... relu(W_1 x + b_1) ...) + b_L`` on ``x = start + t
    (end - start)``, refined layer by layer (module docstring); float64."""
    if len(weights) != len(biases) or not weights:
        raise ConfigError(f"need one bias per weight and at least one layer, got {len(weights)} and {len(biases)}")
    a, d = _segment(start, end)
    # pieces: (t0, t1, A, c) with the current layer's input h(t) = A t + c on [t0, t1]
    pieces = [(0.0, 1.0, d, a)]
    for k, (W, bias) in enumerate(zip(weights, biases)):
        W, bias = W.detach().double(), bias.detach().double()
        if W.shape[1] != pieces[0][2].shape[0]:
            raise ShapeError(f"layer {k}: weight {tuple(W.shape)} does not take inputs of size {pieces[0][2].shape[0]}")
        last = k == len(weights) - 1
        refined = []
        for t0, t1, A, c in pieces:
            slope, offset = W @ A, W @ c + bias  # z(t) = slope t + offset
            if last:
                refined.append((t0, t1, slope, offset))
                continue
            nz = slope != 0
            roots = (-offset[nz] / slope[nz])
            cuts = sorted({float(r) for r in roots if t0 < float(r) < t1})
            edges = [t0, *cuts, t1]
            for u0, u1 in zip(edges[:-1], edges[1:]):
                mid = 0.5 * (u0 + u1)
                on = (slope * mid + offset > 0).double()
                refined.append((u0, u1, on * slope, on * offset))
        pieces = refined
    breaks = torch.tensor([p[0] for p in pieces[1:]], dtype=torch.float64)
    return LineRegions(breaks, torch.stack([p[2] for p in pieces]))


def mlp_weights(model: nn.Module) -> tuple[list[Tensor], list[Tensor]]:
    """The (weights, biases) of an ``nn.Sequential`` of ``nn.Linear`` and ``nn.ReLU`` (Linear
    first and last, one ReLU between consecutive Linears): the input of ``mlp_line_regions``."""
    layers = list(model) if isinstance(model, nn.Sequential) else []
    kinds = ["L" if isinstance(m, nn.Linear) else "R" if isinstance(m, nn.ReLU) else "?" for m in layers]
    if not kinds or "".join(kinds) != "R".join("L" * (kinds.count("L"))):
        raise ConfigError("mlp_weights needs nn.Sequential(Linear, ReLU, Linear, ..., Linear); "
                          f"got {[type(m).__name__ for m in layers] or type(model).__name__}; use line_regions")
    lin = [m for m in layers if isinstance(m, nn.Linear)]
    zeros = [torch.zeros(m.out_features, dtype=torch.float64) for m in lin]
    return [m.weight for m in lin], [m.bias if m.bias is not None else z for m, z in zip(lin, zeros)]


def _jvp(z: Tensor, x: Tensor, v: Tensor) -> Tensor:
    """``(dz/dx) v`` by two reverse passes (the derivative of ``u -> (dz/dx)^T u`` is linear in
    ``u``): in C++ autograd, several times faster than forward-mode AD through these modules."""
    u = torch.zeros_like(z, requires_grad=True)
    (g,) = torch.autograd.grad(z, x, grad_outputs=u, create_graph=True)
    (jv,) = torch.autograd.grad(g, u, grad_outputs=v)
    return jv


def line_regions(model: nn.Module, starts: Tensor, ends: Tensor, *, modules: Sequence[str] | None = None,
                 at: str | None = None, inputs: Tensor | None = None, grid: int = 64,
                 step: float = 1e-9, max_regions: int = 100_000, chunk: int = 2048,
                 derivative: str = "auto") -> list[LineRegions]:
    """Activation regions along each segment ``starts[i] -> ends[i]`` (``(N, *input)``), on a
    float64 copy of ``model``. ``modules`` name the modules whose inputs are the pre-activations
    (default: every activation unit). With ``at`` (a module name) the segments live in that
    module's output space instead (e.g. the token embedding of a sequence model): the model runs
    on ``inputs`` (N rows) and the output of ``at`` is replaced by the point of the segment.

    The walk of the module docstring, batched: the region around each of ``grid`` points per
    segment (``t = 0`` and ``(m + 1/2) / grid``) is bracketed in one pass, ``[t + max{-z/z' < 0},
    t + min{-z/z' > 0}]``; wherever two consecutive regions found do not touch, the walk steps
    ``step`` past the end of the first, and repeats until every segment is covered (``grid=1`` is
    the plain sequential walk; each walk point's region reaches beyond it, so the walk ends even
    where smooth units make the brackets of neighbouring points disagree). Regions narrower than
    ``step`` can be stepped over; regions whose ends agree to ``step`` are one. More than ``max_regions`` regions on a segment
    is an error; ``chunk`` points are evaluated at a time.

    ``derivative`` says how ``z'`` is computed: ``"autograd"`` (the reference form: two reverse
    passes, ``_jvp``, any model), ``"stacked"`` (the fast form: one forward pass on the rows
    ``[x; d]``, ``lens._tangent``, for models built only of the parts it has rules for: Linear,
    ReLU, GELU, RMSNorm, LayerNorm in sequential, residual, MLP and classifier containers) or
    ``"auto"`` (stacked where supported and ``at`` is None). Both give the same derivatives up to
    rounding, and the same regions (tested)."""
    if starts.shape != ends.shape or starts.dim() < 2:
        raise ShapeError(f"starts and ends must be batches (N, *input) of the same shape, got "
                         f"{tuple(starts.shape)} and {tuple(ends.shape)}")
    if not 0 < step < 1e-3 or grid < 1 or chunk < 1:
        raise ConfigError(f"need 0 < step < 1e-3, grid >= 1 and chunk >= 1; got {step}, {grid}, {chunk}")
    if derivative not in ("auto", "stacked", "autograd"):
        raise ConfigError(f"line_regions: derivative must be 'auto', 'stacked' or 'autograd', got {derivative!r}")
    with side_effect_free(model):
        net = copy.deepcopy(model).double().eval().requires_grad_(False)
    fast = derivative == "stacked" or (derivative == "auto" and at is None and stacked_supported(net))
    if fast and (at is not None or not stacked_supported(net)):
        kinds = sorted({type(m).__name__ for m in net.modules()
                        if rule_for(m) is None and not is_linear_container(m)})
        raise ConfigError(f"line_regions: derivative='stacked' has no rule for {kinds or ['at=' + repr(at)]}; "
                          "use derivative='autograd'")
    names = threshold_modules(net) if modules is None else list(modules)
    if not names:
        raise ConfigError("line_regions: the model has no activation unit; pass modules=[...] naming the "
                          "modules whose inputs are the pre-activations")
    named = dict(net.named_modules())
    missing = [n for n in names + ([at] if at is not None else []) if n not in named]
    if missing:
        raise ConfigError(f"line_regions: unknown modules {missing}")
    if at is not None and (inputs is None or len(inputs) != len(starts)):
        raise ConfigError(f"line_regions: at={at!r} needs inputs=... with one row per segment ({len(starts)})")
    a, d = starts.detach().double(), (ends - starts).detach().double()
    n = a.shape[0]
    seen: list[Tensor] = []
    point: list[Tensor] = []
    hooks = [named[m].register_forward_hook(lambda mod, args, out: seen.append(args[0])) for m in names]
    if at is not None:
        hooks.append(named[at].register_forward_hook(lambda mod, args, out: point[0]))

    def bracket(seg: Tensor, t: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(start, end, df/dt) of the activation region around each point (segment seg, t), and
        whether the point lies exactly on a boundary (some z = 0 with z' != 0)."""
        los, his, slopes, edges = [], [], [], []
        for i in range(0, len(seg), chunk):
            sg, tt = seg[i:i + chunk], t[i:i + chunk]
            B = len(sg)
            shape = (-1,) + (1,) * (a.dim() - 1)
            seen.clear()
            x = a[sg] + tt.view(shape) * d[sg]
            if fast:
                with stacked(net), torch.no_grad():
                    out = net(torch.cat([x, d[sg]])).reshape(2 * B, -1)
                pairs = [(u[:B], u[B:]) for u in (s.reshape(2 * B, -1) for s in seen)]
                slope = out[B:]
            else:
                x.requires_grad_(True)
                with torch.enable_grad():
                    if at is not None:
                        point[:] = [x]
                    out = net(inputs[sg] if at is not None else x).reshape(B, -1)
                    z = torch.cat([s.reshape(B, -1) for s in seen] + [out], 1)
                    dz = _jvp(z, x, d[sg])
                k = out.shape[1]
                pairs, slope = [(z[:, :-k].detach(), dz[:, :-k])], dz[:, -k:]
            lo = hi = edge = None
            for z, dz in pairs:
                # the crossing is at t - q, q = z / z'; where z' = 0, q is +-inf or nan (z = 0 too): no
                # bound, as for a unit that never switches
                q = z / dz
                l = -torch.where(q > 0, q, torch.inf).amin(1)
                h = -torch.where(q < 0, q, -torch.inf).amax(1)
                e = (q == 0).any(1)
                if e.any():  # q = 0 also where z / z' underflows: keep only exact zeros of z
                    e = ((z == 0) & (dz != 0)).any(1)
                lo, hi, edge = (l, h, e) if lo is None else (torch.maximum(lo, l), torch.minimum(hi, h), edge | e)
            los.append((tt + lo).clamp_min(0.0))
            his.append((tt + hi).clamp_max(1.0))
            slopes.append(slope)
            edges.append(edge)
        return torch.cat(los), torch.cat(his), torch.cat(slopes), torch.cat(edges)

    # per segment: (round(start / step), round(end / step)) -> (start, end, slope)
    found: list[dict[tuple[int, int], tuple[float, float, Tensor]]] = [{} for _ in range(n)]
    ts = torch.cat([torch.zeros(1, dtype=torch.float64), (torch.arange(grid, dtype=torch.float64) + 0.5) / grid])
    seg, t = torch.arange(n).repeat_interleave(len(ts)), ts.repeat(n)
    try:
        with sdpa_kernel([SDPBackend.MATH]):  # the double backward of attention
            while len(seg):
                lo, hi, slope, edge = bracket(seg, t)
                nxt_seg, nxt_t = [], []
                for j, (i, tq, l, h, e) in enumerate(zip(seg.tolist(), t.tolist(), lo.tolist(), hi.tolist(),
                                                          edge.tolist())):
                    if e:  # the pattern at a boundary point holds on no interval: look just beside it
                        nxt_seg.append(i)
                        nxt_t.append(tq + step if tq + step <= 1.0 else tq - step)
                        continue
                    key = (round(l / step), round(h / step))
                    if key not in found[i]:
                        found[i][key] = (l, h, slope[j])
                    if len(found[i]) > max_regions:
                        raise ConfigError(f"line_regions: segment {i} has more than {max_regions} regions; "
                                          "raise max_regions or use a shorter segment")
                for i in range(n):
                    covered = 0.0  # [0, covered] is covered by the regions found so far (sorted by start)
                    for l, h, _ in sorted(found[i].values(), key=itemgetter(0)):
                        if l > covered + step:  # a gap: walk into it from its start
                            nxt_seg.append(i)
                            nxt_t.append(covered + step)
                        if h > covered:
                            covered = h
                    if covered < 1.0 - step:
                        nxt_seg.append(i)
                        nxt_t.append(covered + step)
                seg, t = torch.tensor(nxt_seg, dtype=torch.long), torch.tensor(nxt_t, dtype=torch.float64)
    finally:
        for h in hooks:
            h.remove()
    out = []
    for spans in found:
        items = sorted(spans.values(), key=lambda r: r[0])
        out.append(LineRegions(torch.tensor([r[0] for r in items[1:]], dtype=torch.float64),
                               torch.stack([r[2] for r in items])))
    return out


def _check_regions(options: dict) -> None:
    _require("regions", options, "n_lines", lambda v: _is_int(v, 1), "an integer >= 1")
    _require("regions", options, "grid", lambda v: _is_int(v, 1), "an integer >= 1")


@register_probe("regions", check=_check_regions)
def regions_probe(ctx: ProbeContext, *, n_lines: int = 1, grid: int = 128) -> ProbeOutput:
    """Linear regions along the segments between consecutive probe examples ``x_{2i} -> x_{2i+1}``
    (``n_lines`` of them, ``grid`` starting points each): ``regions`` (mean activation regions per
    segment), ``pieces`` (mean linear pieces) and ``density`` (regions per unit distance). Exact
    for ReLU networks without norms; a grid-dependent proxy otherwise (see ``line_regions``).
    Token inputs: the segments join the two sequences' token embeddings (the output of the
    model's ``embed`` module; the tokens of the first sequence run the rest of the model)."""
    x = ctx.batch.inputs
    m = min(n_lines, len(x) // 2)
    if m < 1:
        raise ConfigError("the regions probe needs at least 2 probe examples (probes.batch_size >= 2)")
    if x.is_floating_point():
        starts, ends = x[0:2 * m:2], x[1:2 * m:2]
        found = line_regions(ctx.model, starts, ends, grid=grid)
    else:
        embed = getattr(ctx.model, "embed", None)
        if not isinstance(embed, nn.Embedding):
            raise ConfigError("the regions probe on token inputs needs the model's token embedding as `embed` "
                              "(nn.Embedding)")
        with torch.no_grad():
            starts, ends = embed(x[0:2 * m:2]).double(), embed(x[1:2 * m:2]).double()
        found = line_regions(ctx.model, starts, ends, at="embed", inputs=x[0:2 * m:2], grid=grid)
    lengths = (ends - starts).double().flatten(1).norm(dim=1)
    regions = torch.tensor([float(r.n_regions) for r in found], dtype=torch.float64)
    pieces = torch.tensor([float(r.n_pieces()) for r in found], dtype=torch.float64)
    return ProbeOutput({"regions": regions.mean().item(), "pieces": pieces.mean().item(),
                        "density": (regions / lengths.clamp_min(1e-300)).mean().item()})
