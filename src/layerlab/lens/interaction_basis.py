r"""Degeneracy of a network's layers and the (Local) Interaction Basis.

Papers (one family, one module: both build the same basis):

- Bushnaq, Mendel, Heimersheim, Braun, Goldowsky-Dill, Hänni, Wu & Hobbhahn, "Using Degeneracy in
  the Loss Landscape for Mechanistic Interpretability", 2024, arXiv:2405.10927: three internal
  sources of degeneracy in a layer ``f^l`` — linear dependence between its activations (null
  directions of the activation Gram matrix), linear dependence between the gradients passed back
  to it (null directions of ``E_x[J^T J]``, ``J = ∂f^{out}/∂f^l``), and ReLUs that fire on the same
  subset of data points — and the Interaction Basis (IB) that removes the first two, in which
  interactions between layers are argued to be sparser than in the neuron basis.
- Bushnaq, Heimersheim, Goldowsky-Dill, Braun, Mendel, Hänni, Griffin, Stöhler, Wache & Hobbhahn,
  "The Local Interaction Basis: Identifying Computationally-Relevant and Sparsely Interacting
  Features in Neural Networks", 2024, arXiv:2405.10928: the same construction with the Jacobian
  taken to the next layer's basis (local), from the output backwards; LIB "drops irrelevant
  activation directions and aligns the basis with the singular vectors of the Jacobian matrix
  between adjacent layers. It also scales features based on their importance for downstream
  computation" (abstract), and its interactions are sparser than PCA's on modular addition and
  CIFAR-10 models.

The basis of a node layer ``f^l`` (N examples, centred by the mean ``μ_l``), with ``J̃(x)`` the
Jacobian of the downstream features — ``f̂^{l+1}`` for LIB, ``f̂^{out}`` for IB — with respect to
``f^l``:

    G = E[(f - μ)(f - μ)^T] = U D U^T                      (drop D <= rtol max D)
    M = D^{1/2} U^T E_x[J̃^T J̃] U D^{1/2} = V Λ V^T       (drop Λ <= rtol max Λ)
    f̂^l = (f^l - μ_l) C_l,   C_l = U D^{-1/2} V Λ^{1/2},   C_l^+ = Λ^{-1/2} V^T D^{1/2} U^T.

The output layer is rotated into its principal components (``C = U``). In this basis the features
are uncorrelated with variances ``Λ`` and ``E_x[Ĵ^T Ĵ] = I`` for ``Ĵ = J̃ C_l^{+T}`` (tested to
1e-10); the features are invariant, up to sign, under reparameterisations that rescale a ReLU's
incoming weights by ``s > 0`` and its outgoing ones by ``1/s`` (tested), where the neuron and PCA
bases are not. Interaction edges between adjacent layers are the attributions

    E^l_{ij} = E_x[(Ĵ^l_{ij}(x) f̂^l_j(x))²],   Ĵ^l(x) = C_{l+1}^T (∂f^{l+1}/∂f^l)(x) C_l^{+T},

the squared gradient-times-activation form of the authors' code (its "jacobian" basis with
"squared" edges at one integration point); the PCA basis is ``C = U`` and the neuron basis
``C = I`` (both centred).

What was verified: the abstracts, and the construction above against the authors' reference
implementation (ApolloResearch/rib, ``basis_formula="jacobian"``: centring, ``R = U D^{-1/2}``,
``M`` in the whitened basis, ``C = R V Λ^{1/2}``, squared edges); the integrated-gradient variants
and the bias folding of that code are not reproduced (biases act through the centring here). The
networks handled are ``nn.Sequential`` MLPs: node layers are the inputs of the ``nn.Linear``
modules and the output; a section is what lies between two of them. Float64 throughout, on a copy
of the model.
"""
from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..errors import ConfigError, ShapeError
from .probes import ProbeContext, ProbeOutput, _is_int, _require, register_probe

__all__ = ["Basis", "activation_null_directions", "activation_rank_deficit", "degeneracy", "edge_count",
           "gradient_null_directions",
           "interaction_bases", "interaction_graph", "layer_jacobians", "node_activations", "same_firing_groups",
           "sections"]

KINDS = ("lib", "ib", "pca", "neuron")


@dataclass(frozen=True)
class Basis:
    """A node layer's basis: ``f̂ = (f - mean) C``, ``f ≈ f̂ C_pinv + mean``."""

    C: Tensor  # (d, k)
    C_pinv: Tensor  # (k, d)
    mean: Tensor  # (d,)
    D: Tensor  # kept eigenvalues of the activation covariance (descending)
    Lambda: Tensor | None  # kept eigenvalues of M (LIB/IB), the features' variances

    @property
    def size(self) -> int:
        return int(self.C.shape[1])

    def features(self, f: Tensor) -> Tensor:
        return (f.double() - self.mean) @ self.C


# ---- the network as node layers and sections ------------------------------------------------
def sections(model: nn.Module) -> list[nn.Module]:
    """Split an ``nn.Sequential`` MLP at its ``nn.Linear`` modules: section ``l`` maps node layer
    ``l`` (the input of the ``l``-th Linear) to node layer ``l + 1`` (the next Linear's input, or
    the output). A float64 copy of the model is used; the model itself is not touched."""
    if not isinstance(model, nn.Sequential):
        raise ConfigError(f"interaction bases need an nn.Sequential MLP, got {type(model).__name__}")
    mods = list(copy.deepcopy(model).double().eval())
    starts = [i for i, m in enumerate(mods) if isinstance(m, nn.Linear)]
    if not starts or starts[0] != 0:
        raise ConfigError("interaction bases: the nn.Sequential must start with an nn.Linear")
    bounds = starts + [len(mods)]
    out = [nn.Sequential(*mods[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
    for p in (p for s in out for p in s.parameters()):
        p.requires_grad_(False)
    return out


def node_activations(parts: Sequence[nn.Module], x: Tensor) -> list[Tensor]:
    """``[f^0 = x, f^1, ..., f^{out}]`` (float64) through the sections."""
    acts = [x.detach().double().reshape(len(x), -1)]
    with torch.no_grad():
        for s in parts:
            acts.append(s(acts[-1]))
    return acts


def _jacobian_reference(section: nn.Module, a: Tensor) -> Tensor:
    """``∂ section(a_n) / ∂ a_n`` for every row, by ``vmap(jacrev)`` (any differentiable section)."""
    from torch.func import jacrev, vmap

    return vmap(jacrev(lambda v: section(v[None])[0]))(a)


def _jacobian(section: nn.Module, a: Tensor) -> Tensor:
    """The same in closed form for sections of Linear and ReLU modules (``W``, then the ReLU's
    0/1 gates row by row); other sections go to ``_jacobian_reference``."""
    mods = list(section) if isinstance(section, nn.Sequential) else [section]
    if not all(isinstance(m, (nn.Linear, nn.ReLU, nn.Identity, nn.Dropout)) for m in mods):
        return _jacobian_reference(section, a)
    h, jac = a, None
    with torch.no_grad():
        for m in mods:
            if isinstance(m, nn.Linear):
                w = m.weight.detach()
                jac = w.expand(len(a), -1, -1) if jac is None else w @ jac
                h = m(h)
            elif isinstance(m, nn.ReLU):
                gate = (h > 0).to(h.dtype)
                jac = torch.diag_embed(gate) if jac is None else gate[:, :, None] * jac
                h = m(h)
    return torch.eye(a.shape[1], dtype=a.dtype).expand(len(a), -1, -1) if jac is None else jac


def layer_jacobians(parts: Sequence[nn.Module], acts: Sequence[Tensor]) -> list[Tensor]:
    """Per-example Jacobians ``∂f^{l+1}/∂f^l``, each (N, d_{l+1}, d_l)."""
    return [_jacobian(s, a) for s, a in zip(parts, acts[:-1])]


# ---- the basis of one layer ------------------------------------------------------------------
def _eigh_desc(sym: Tensor) -> tuple[Tensor, Tensor]:
    evals, evecs = torch.linalg.eigh(sym)
    return evals.flip(0), evecs.flip(1)


def _keep(evals: Tensor, rtol: float) -> Tensor:
    return evals > rtol * evals.max().clamp_min(1e-300) if evals.numel() else evals.bool()


def _pca(f: Tensor, rtol: float) -> tuple[Tensor, Tensor, Tensor]:
    mean = f.mean(0)
    fc = f - mean
    d, u = _eigh_desc(fc.T @ fc / len(f))
    keep = _keep(d, rtol)
    return mean, d[keep], u[:, keep]


def _basis(f: Tensor, jt: Tensor, rtol: float) -> Basis:
    """LIB/IB basis of activations ``f`` (N, d) from the downstream Jacobians ``jt`` (N, m, d)."""
    mean, d, u = _pca(f, rtol)
    r = u / d.sqrt()  # whitening: (f - μ) R has identity covariance
    r_pinv = d.sqrt()[:, None] * u.T
    m_dash = torch.einsum("nmd,nme->de", jt, jt) / len(f)
    lam, v = _eigh_desc(r_pinv @ m_dash @ r_pinv.T)
    keep = _keep(lam, rtol)
    lam, v = lam[keep], v[:, keep]
    return Basis(r @ v * lam.sqrt(), (v / lam.sqrt()).T @ r_pinv, mean, d, lam)


def interaction_bases(model: nn.Module, x: Tensor, kind: str = "lib", *, rtol: float = 1e-10) -> list[Basis]:
    """The basis of every node layer of the MLP ``model`` on inputs ``x``: ``kind`` "lib" (local
    interaction basis), "ib" (interaction basis: Jacobians to the output), "pca" (centred
    principal components, ``C = U``) or "neuron" (``C = I``, centred). ``rtol``: eigenvalues at
    or below ``rtol`` times the largest are dropped (default: only numerically null directions)."""
    if kind not in KINDS:
        raise ConfigError(f"unknown basis kind {kind!r}; valid: {', '.join(KINDS)}")
    parts = sections(model)
    acts = node_activations(parts, x)
    if kind == "neuron":
        return [Basis(torch.eye(a.shape[1], dtype=a.dtype), torch.eye(a.shape[1], dtype=a.dtype), a.mean(0),
                      _pca(a, 0.0)[1], None) for a in acts]
    if kind == "pca":
        out = []
        for a in acts:
            mean, d, u = _pca(a, rtol)
            out.append(Basis(u, u.T, mean, d, None))
        return out
    mean, d, u = _pca(acts[-1], rtol)
    bases = [Basis(u, u.T, mean, d, None)]
    jacs = layer_jacobians(parts, acts)
    downstream = None  # IB: ∂f̂^{out}/∂f^{l+1}
    for l in range(len(parts) - 1, -1, -1):
        if kind == "lib":
            jt = torch.einsum("mk,nmd->nkd", bases[0].C, jacs[l])
        else:
            downstream = bases[-1].C.T.expand(len(x), -1, -1) if downstream is None else downstream
            downstream = downstream @ jacs[l]
            jt = downstream
        bases.insert(0, _basis(acts[l], jt, rtol))
    return bases


def interaction_graph(model: nn.Module, x: Tensor, bases: Sequence[Basis]) -> list[Tensor]:
    """Edges between adjacent node layers, ``E^l_{ij} = E_x[(Ĵ^l_{ij} f̂^l_j)²]`` (k_{l+1}, k_l)."""
    parts = sections(model)
    if len(bases) != len(parts) + 1:
        raise ShapeError(f"need one basis per node layer ({len(parts) + 1}), got {len(bases)}")
    acts = node_activations(parts, x)
    jacs = layer_jacobians(parts, acts)
    edges = []
    for l, j in enumerate(jacs):
        j_hat = bases[l + 1].C.T @ j @ bases[l].C_pinv.T  # (N, k_{l+1}, k_l)
        f_hat = bases[l].features(acts[l])
        edges.append((j_hat * f_hat[:, None, :]).square().mean(0))
    return edges


def edge_count(edges: Tensor, mass: float = 0.9) -> int:
    """The fewest edges whose weights sum to at least ``mass`` of the total (sparser: fewer)."""
    if not 0 < mass <= 1:
        raise ConfigError(f"mass must be in (0, 1], got {mass}")
    w = edges.detach().double().reshape(-1).sort(descending=True).values
    total = float(w.sum())
    if total <= 0:
        return 0
    return int(torch.searchsorted(w.cumsum(0), torch.tensor(mass * total, dtype=w.dtype) * (1 - 1e-12)).item()) + 1


# ---- degeneracy diagnostics ----------------------------------------------------------------
def _centred_rank(f: Tensor, rtol: float) -> int:
    """Rank of the centred activations (eigenvalues of the smaller Gram above rtol·max)."""
    if not (isinstance(f, Tensor) and f.dim() == 2):
        raise ShapeError(f"activations must be (N, d), got {getattr(f, 'shape', None)}")
    fc = f.detach().double()
    fc = fc - fc.mean(0)
    gram = fc @ fc.T if fc.shape[0] <= fc.shape[1] else fc.T @ fc
    return int(_keep(torch.linalg.eigvalsh(gram), rtol).sum())


def activation_null_directions(f: Tensor, rtol: float = 1e-10) -> int:
    """Null directions of the centred activation covariance of ``f`` (N, d): ``d - rank`` (affine
    dependences among units; with ``N <= d`` at least ``d - N + 1`` come from the sample size)."""
    return int(f.shape[1]) - _centred_rank(f, rtol)


def activation_rank_deficit(f: Tensor, rtol: float = 1e-10) -> int:
    """``min(N - 1, d) - rank``: the null directions the sample size does not explain."""
    return min(int(f.shape[0]) - 1, int(f.shape[1])) - _centred_rank(f, rtol)


def gradient_null_directions(jac: Tensor, rtol: float = 1e-10) -> int:
    """Null directions of the gradient Gram ``E_x[J^T J]`` of Jacobians ``jac`` (N, m, d)."""
    if not (isinstance(jac, Tensor) and jac.dim() == 3):
        raise ShapeError(f"Jacobians must be (N, m, d), got {getattr(jac, 'shape', None)}")
    j = jac.detach().double()
    evals = torch.linalg.eigvalsh(torch.einsum("nmd,nme->de", j, j) / len(j))
    return int((~_keep(evals, rtol)).sum())


def same_firing_groups(preactivations: Tensor) -> list[list[int]]:
    """Groups (of two or more) of units whose firing sets ``{n: pre[n, i] > 0}`` are identical."""
    if not (isinstance(preactivations, Tensor) and preactivations.dim() == 2):
        raise ShapeError(f"pre-activations must be (N, units), got {getattr(preactivations, 'shape', None)}")
    _, inverse = torch.unique((preactivations > 0).T, dim=0, return_inverse=True)
    groups: dict[int, list[int]] = {}
    for unit, g in enumerate(inverse.tolist()):
        groups.setdefault(g, []).append(unit)
    return sorted((g for g in groups.values() if len(g) > 1), key=lambda g: g[0])


def degeneracy(model: nn.Module, x: Tensor, *, rtol: float = 1e-10) -> list[dict[str, int]]:
    """Per hidden node layer of the MLP: ``activation_null`` (null directions of the activation
    covariance), ``gradient_null`` (of ``E[J^T J]``, ``J = ∂f^{out}/∂f^l``), ``same_firing``
    (units removable by merging ReLUs with identical firing sets: units minus distinct sets, over
    the ReLU feeding the layer), ``dead`` and ``always_on`` units."""
    parts = sections(model)
    acts = node_activations(parts, x)
    jacs = layer_jacobians(parts, acts)
    out, down = [], None
    to_output = []
    for j in reversed(jacs):
        down = j if down is None else down @ j
        to_output.insert(0, down)
    for l in range(1, len(parts)):
        pre = parts[l - 1][0](acts[l - 1])  # the Linear of the section that feeds node layer l
        on = pre > 0
        fire = {"same_firing": int(pre.shape[1] - torch.unique(on.T, dim=0).shape[0]),
                "dead": int((~on.any(0)).sum()), "always_on": int(on.all(0).sum())}
        out.append({"activation_null": activation_null_directions(acts[l], rtol),
                    "gradient_null": gradient_null_directions(to_output[l], rtol), **fire})
    return out


def _activation_units(model: nn.Module) -> dict[str, str]:
    from .dynamics import threshold_modules

    return {n: "input" for n in threshold_modules(model)}


def _check_degeneracy(options: dict) -> None:
    _require("degeneracy", options, "rtol", lambda v: isinstance(v, float) and 0 < v < 1, "a float in (0, 1)")
    _require("degeneracy", options, "n_examples", lambda v: _is_int(v, 2), "an integer >= 2")


@register_probe("degeneracy", check=_check_degeneracy, captures=_activation_units)
def degeneracy_probe(ctx: ProbeContext, *, rtol: float = 1e-6, n_examples: int = 128) -> ProbeOutput:
    """Per activation unit module (its input: the pre-activations of the first ``n_examples``
    probe examples, token positions flattened): ``activation_null.<m>`` (``activation_rank_deficit``
    of the unit outputs: null directions of their covariance beyond those the sample size forces,
    eigenvalues <= rtol times the largest), ``same_firing.<m>`` (units minus distinct firing sets
    ``pre > 0``), ``dead.<m>`` and ``always_on.<m>`` (Bushnaq et al. 2024, arXiv:2405.10927).
    Gradient degeneracy needs per-example Jacobians: use ``degeneracy``."""
    from .dynamics import capture

    named = dict(ctx.model.named_modules())
    wanted = _activation_units(ctx.model)
    pres = {n: ctx.activations[n] for n in wanted if n in ctx.activations}
    missing = [n for n in wanted if n not in pres]
    if missing:
        pres.update(capture(ctx.model, ctx.batch.inputs, missing, kind="input"))
    scalars = {}
    n = min(n_examples, len(ctx.batch))
    for name, pre in pres.items():
        pre = pre[:n].reshape(-1, pre.shape[-1])
        with torch.no_grad():
            post = named[name](pre)
        on = pre > 0
        scalars[f"activation_null.{name}"] = float(activation_rank_deficit(post, rtol))
        scalars[f"same_firing.{name}"] = float(pre.shape[1] - torch.unique(on.T, dim=0).shape[0])
        scalars[f"dead.{name}"] = float((~on.any(0)).sum())
        scalars[f"always_on.{name}"] = float(on.all(0).sum())
    return ProbeOutput(scalars)
