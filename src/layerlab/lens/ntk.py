r"""Empirical neural tangent kernel, how far it moves during training, and how well it fits a task.

Papers:

- Jacot, Gabriel & Hongler, "Neural Tangent Kernel: Convergence and Generalization in Neural
  Networks", 2018, arXiv:1806.07572. For a network ``f(·; θ)`` with outputs ``f_o``, the NTK is
  ``Θ_{oq}(x, x') = Σ_p ∂_p f_o(x; θ) ∂_p f_q(x'; θ)``, i.e. ``Θ(x1, x2) = J(x1) J(x2)ᵀ`` with the
  Jacobian ``J(x) = ∂f(x)/∂θ`` (O × P) over the trained parameters. No normalization is applied:
  any 1/width factor belongs to the model's parameterization (NTK parameterization puts
  ``1/√fan_in`` in the forward pass, as ``theory.kernels.TwoLayerReLU`` does).
- Novak, Sohl-Dickstein & Schoenholz, "Fast Finite Width Neural Tangent Kernel", 2022,
  arXiv:2206.08720: two ways to compute it. *Jacobian contraction*: build ``J(x1)``, ``J(x2)``
  (reverse mode, one per example) and contract over parameters. *NTK-vector products*:
  ``Θ v = J(x1) (J(x2)ᵀ v)`` by a VJP followed by a JVP, never forming ``J``; applied to the
  ``O·N2`` basis vectors of the output space of ``x2`` it gives every column of ``Θ``.
  *Structured derivatives* (their Sec. 4): a linear layer ``y_t = W a_t + b`` has per-example
  Jacobian ``∂f_o/∂W = Σ_t δ^o_t a_tᵀ`` with ``δ^o_t = ∂f_o/∂y_t``, so its block of ``Θ`` follows
  from the layer's inputs and output gradients of one batched forward and ``O`` backward passes:
  ``Θ_W[a, b] = (a_a·a_b)(δ_a·δ_b)`` for one position, ``⟨G_a, G_b⟩`` with
  ``G_a = Σ_t δ_at a_atᵀ`` for sequences; ``Θ_b[a, b] = (Σ_t δ_at)·(Σ_t δ_bt)``.
- Fort, Dziugaite, Paul, Kharaghani, Roy & Ganguli, "Deep learning versus kernel learning: an
  empirical study of loss landscape geometry and the time evolution of the Neural Tangent
  Kernel", 2020, arXiv:2010.15110: kernel distance
  ``S(K, K') = 1 − ⟨K, K'⟩_F / (‖K‖_F ‖K'‖_F)`` and kernel velocity ``S(K_t, K_{t+dt}) / dt``.
- Chizat, Oyallon & Bach, "On Lazy Training in Differentiable Programming", 2019,
  arXiv:1812.07956 (and Jacot et al.): in the lazy regime the kernel barely moves; measured by
  the relative change ``‖K_t − K_0‖_F / ‖K_0‖_F``.
- Cristianini, Shawe-Taylor, Elisseeff & Kandola, "On Kernel-Target Alignment", NIPS 2001:
  ``A(K, yyᵀ) = ⟨K, yyᵀ⟩_F / (‖K‖_F ‖yyᵀ‖_F)``; Cortes, Mohri & Rostamizadeh, "Algorithms for
  Learning Kernels Based on Centered Alignment", 2012, arXiv:1203.0550: the same on centred
  matrices ``K_c = H K H``, ``H = I − 11ᵀ/N``.

Model contract: ``model`` maps a batch ``(N, ...)`` to ``(N, O)``; an output ``(N,)`` is one output
(``O = 1``) and an output ``(N, *out)`` is flattened to ``O = prod(out)``. Examples must not
interact (no batch statistics): the kernel is computed in eval mode, where BatchNorm uses its
running statistics and dropout is off. The ``"jacobian"`` method runs the model on one example
at a time (``vmap``), ``"ntvp"`` on the whole batch and needs forward-mode AD of every op.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Callable

import torch
from torch import Tensor, nn
from torch.func import functional_call, jacrev, jvp, vjp, vmap

from ..errors import ConfigError, ShapeError, unknown_name
from ._util import select_parameters, side_effect_free

METHODS = ("jacobian", "ntvp", "structured")
OUTPUTS = ("full", "trace")


def _check_inputs(x1: Tensor, x2: Tensor | None) -> None:
    if not isinstance(x1, Tensor) or x1.ndim < 1 or len(x1) == 0:
        raise ShapeError("ntk: x1 must be a non-empty tensor with a leading batch dimension (N, ...)")
    if x2 is not None and (
        not isinstance(x2, Tensor) or x2.ndim != x1.ndim or x2.shape[1:] != x1.shape[1:] or len(x2) == 0
    ):
        shape = tuple(x2.shape) if isinstance(x2, Tensor) else type(x2).__name__
        raise ShapeError(
            f"ntk: x2 must be (N2, {', '.join(map(str, x1.shape[1:]))}) like x1 "
            f"{tuple(x1.shape)} apart from the batch size, got {shape}"
        )


def _as_rows(out: Tensor, n: int) -> Tensor:
    """Model output (n,) or (n, *out) as (n, O)."""
    if out.ndim == 0 or out.shape[0] != n:
        raise ShapeError(
            f"ntk: the model must return (N, O) or (N,) for a batch of N = {n} examples, "
            f"got shape {tuple(out.shape)}"
        )
    return out.reshape(n, -1)


def _jacobian_ntk(
    call: Callable[[dict[str, Tensor], Tensor], Tensor],
    p: dict[str, Tensor],
    x1: Tensor,
    x2: Tensor | None,
    full: bool,
    chunk_size: int | None,
) -> Tensor:
    def f_one(q: dict[str, Tensor], xi: Tensor) -> Tensor:
        return _as_rows(call(q, xi.unsqueeze(0)), 1)[0]  # (O,)

    jac = vmap(jacrev(f_one), in_dims=(None, 0), chunk_size=chunk_size)
    j1 = jac(p, x1)  # name -> (N1, O, *shape)
    j2 = j1 if x2 is None else jac(p, x2)
    theta = None
    for name in p:
        a = j1[name].flatten(2)
        b = j2[name].flatten(2)
        term = torch.einsum("aop,bqp->aboq", a, b) if full else torch.einsum("aop,bop->ab", a, b)
        theta = term if theta is None else theta + term
    assert theta is not None
    return theta


def _ntvp_ntk(
    call: Callable[[dict[str, Tensor], Tensor], Tensor],
    p: dict[str, Tensor],
    x1: Tensor,
    x2: Tensor | None,
    full: bool,
    chunk_size: int | None,
) -> Tensor:
    x2 = x1 if x2 is None else x2
    n1, n2 = len(x1), len(x2)
    out2, pullback = vjp(lambda q: _as_rows(call(q, x2), n2), p)
    o = out2.shape[1]

    def column(v: Tensor) -> Tensor:  # v (N2, O) -> Θ v (N1, O)
        (u,) = pullback(v)
        return jvp(lambda q: _as_rows(call(q, x1), n1), (p,), (u,))[1]

    basis = torch.eye(n2 * o, dtype=out2.dtype, device=out2.device).reshape(n2 * o, n2, o)
    cols = vmap(column, chunk_size=chunk_size)(basis)  # [b·O + q, a, o] = Θ[a, b, o, q]
    theta = cols.reshape(n2, o, n1, o).permute(2, 0, 3, 1)
    return theta if full else torch.diagonal(theta, dim1=2, dim2=3).sum(-1)


def _linear_layers(model: nn.Module, names: list[str]) -> dict[str, tuple[nn.Linear, bool]]:
    """The ``nn.Linear`` modules whose weight is differentiated and belongs to that module alone
    (a tied weight is used elsewhere too; it goes to the Jacobian part), each with whether its
    bias is differentiated and its own too."""
    uses = Counter(id(p) for _, p in model.named_parameters(remove_duplicate=False))
    chosen = set(names)
    out = {}
    for name, mod in model.named_modules():
        prefix = f"{name}." if name else ""
        if isinstance(mod, nn.Linear) and prefix + "weight" in chosen and uses[id(mod.weight)] == 1:
            bias = mod.bias is not None and prefix + "bias" in chosen and uses[id(mod.bias)] == 1
            out[name] = (mod, bias)
    return out


def _structured_blocks(model: nn.Module, names: list[str], x: Tensor, full: bool) -> tuple[Tensor | None, set[str]]:
    """``Θ(x, x)`` restricted to the linear layers' weights and biases, by structured derivatives,
    and the parameter names it covers. A layer counts only if its hook saw it and the batch
    gradient ``Σ_a G_a`` equals autograd's gradient of ``Σ_a f_o(x_a)`` (to ``sqrt(eps)``), which
    fails when its weight is also used outside its ``forward`` (e.g. ``F.linear(x, lin.weight)``)."""
    layers = _linear_layers(model, names)
    if not layers:
        return None, set()
    inputs: dict[str, Tensor] = {}
    outputs: dict[str, Tensor] = {}

    def hook(name: str) -> Callable[..., None]:
        def record(mod: nn.Module, args: tuple, out: Tensor) -> None:
            if name in outputs:  # called twice in one forward: a shared layer, not one W a_t + b
                outputs[name] = None  # type: ignore[assignment]
                return
            inputs[name], outputs[name] = args[0].detach(), out
        return record

    handles = [mod.register_forward_hook(hook(name)) for name, (mod, _) in layers.items()]
    with torch.enable_grad():
        try:
            y = _as_rows(model(x), len(x))
        finally:
            for h in handles:
                h.remove()
        used = [n for n in layers if outputs.get(n) is not None and outputs[n].requires_grad]
        if not used:
            return None, set()
        n, n_out = y.shape
        deltas: dict[str, list[Tensor]] = {name: [] for name in used}
        sums: dict[str, list[Tensor]] = {name: [] for name in used}
        wrt = [outputs[m] for m in used] + [layers[m][0].weight for m in used]
        for o in range(n_out):
            grads = torch.autograd.grad(y[:, o].sum(), wrt, retain_graph=o + 1 < n_out, allow_unused=True)
            for i, name in enumerate(used):
                deltas[name].append(grads[i].detach())
                sums[name].append(grads[len(used) + i])
    eps = torch.finfo(y.dtype).eps ** 0.5
    theta = None
    covered: set[str] = set()
    for name in used:
        a = inputs[name].reshape(n, -1, inputs[name].shape[-1])                          # (N, T, in)
        d = [g.reshape(n, -1, g.shape[-1]) for g in deltas[name]]                         # O x (N, T, out)
        if a.shape[1] > 1:  # positions: per-example G_a = Σ_t δ_at a_atᵀ, and their sum
            per_example = [torch.einsum("nto,nti->noi", g, a) for g in d]
            batch = [G.sum(0) for G in per_example]
        else:
            per_example, batch = None, [torch.einsum("nto,nti->oi", g, a) for g in d]
        if any(s is None or not torch.allclose(b, s, rtol=eps, atol=eps * float(s.abs().max()))
               for b, s in zip(batch, sums[name])):
            continue  # the weight also acts outside this layer's forward: leave it to the Jacobian
        prefix = f"{name}." if name else ""
        with_bias = layers[name][1]
        if per_example is None:  # one position: Θ_W = (a_a·a_b)(δ_a·δ_b), no per-example G formed
            gram = a[:, 0] @ a[:, 0].T
            dd = [[d[o][:, 0] @ d[q][:, 0].T for q in range(n_out)] for o in range(n_out)]
            block = torch.stack([torch.stack([(gram + float(with_bias)) * dd[o][q] for q in range(n_out)], -1)
                                 for o in range(n_out)], -2)                              # (N, N, O, O)
        else:
            G = torch.stack([g.reshape(n, -1) for g in per_example], 1)                 # (N, O, out*in)
            block = torch.einsum("aop,bqp->aboq", G, G)
            if with_bias:
                B = torch.stack([g.sum(1) for g in d], 1)                                  # (N, O, out)
                block = block + torch.einsum("aop,bqp->aboq", B, B)
        block = block if full else torch.diagonal(block, dim1=2, dim2=3).sum(-1)
        theta = block if theta is None else theta + block
        covered.add(prefix + "weight")
        if with_bias:
            covered.add(prefix + "bias")
    return theta, covered


def empirical(
    model: nn.Module,
    x1: Tensor,
    x2: Tensor | None = None,
    method: str = "jacobian",
    *,
    params: str | Iterable[str] | None = None,
    output: str = "full",
    chunk_size: int | None = None,
) -> Tensor:
    r"""Empirical NTK ``Θ(x1, x2) = J(x1) J(x2)ᵀ`` of ``model`` at its current parameters.

    Args:
        model: maps ``(N, ...)`` to ``(N, O)`` (or ``(N,)``: ``O = 1``; ``(N, *out)`` is flattened).
        x1: (N1, ...) inputs.
        x2: (N2, ...) inputs with the same trailing shape; ``None`` means ``x1`` (then ``Θ`` is
            symmetric positive semi-definite as an ``(N1·O) × (N1·O)`` matrix).
        method: ``"jacobian"`` (Jacobian contraction: per-example reverse-mode Jacobians,
            contracted over parameters), ``"ntvp"`` (NTK-vector products ``J(x1)(J(x2)ᵀv)``,
            VJP then JVP, on the ``N2·O`` basis vectors; needs forward-mode AD) or
            ``"structured"`` (the blocks of ``nn.Linear`` weights and biases from each layer's
            inputs and output gradients, one batched forward and ``O`` backward passes; every
            other parameter by Jacobian contraction; see the module docstring). They agree to
            rounding. ``"structured"`` is the fastest where most parameters sit in linear layers
            and examples have one position (vectors); ``"jacobian"`` is usually faster for few
            outputs otherwise; ``"ntvp"`` never stores ``J`` (memory ``O(N1·N2·O²)`` plus
            activations).
        params: differentiate only these trainable parameters: names from
            ``model.named_parameters()`` or submodule names (all their parameters). ``None``: every
            parameter with ``requires_grad``. Unknown names raise ``ConfigError``.
        output: ``"full"`` returns ``Θ[a, b, o, q] = Σ_p ∂_p f_o(x1_a) ∂_p f_q(x2_b)``, shape
            (N1, N2, O, O); ``"trace"`` returns ``Σ_o Θ[a, b, o, o]``, shape (N1, N2).
        chunk_size: vmap chunk (examples for ``"jacobian"``, basis vectors for ``"ntvp"``) to
            bound memory; ``None`` vectorizes everything at once.

    Returns:
        The kernel in the model's output dtype and device, in units of (output)² per unit of
        parameter² (no normalization; see the module docstring). Detached.

    The model is run in eval mode under ``side_effect_free``: parameters, ``.grad``,
    train/eval flags and the RNG are left exactly as they were (``torch.func.functional_call``
    evaluates it at detached copies of its parameters).
    """
    if method not in METHODS:
        raise unknown_name("NTK method", method, METHODS)
    if output not in OUTPUTS:
        raise unknown_name("NTK output", output, OUTPUTS)
    if chunk_size is not None and int(chunk_size) < 1:
        raise ConfigError(f"ntk: chunk_size must be >= 1 or None, got {chunk_size}")
    _check_inputs(x1, x2)
    names = select_parameters(model, params)
    x1 = x1.detach()
    x2 = None if x2 is None else x2.detach()
    with side_effect_free(model):
        every = {n: t.detach() for n, t in model.named_parameters()}
        every.update({n: t.detach() for n, t in model.named_buffers()})
        p = {n: every.pop(n) for n in names}

        def call(q: dict[str, Tensor], x: Tensor) -> Tensor:
            return functional_call(model, (q, every), (x,))

        full = output == "full"
        if method != "structured":
            run = _jacobian_ntk if method == "jacobian" else _ntvp_ntk
            return run(call, p, x1, x2, full, chunk_size).detach()
        x = x1 if x2 is None else torch.cat([x1, x2])
        theta, covered = _structured_blocks(model, names, x, full)
        if theta is not None and x2 is not None:
            theta = theta[: len(x1), len(x1):]
        rest = {k: v for k, v in p.items() if k not in covered}
        if rest:  # every other parameter (norms, embeddings, ...) by Jacobian contraction
            every.update({k: v for k, v in p.items() if k in covered})
            other = _jacobian_ntk(call, rest, x1, x2, full, chunk_size)
            theta = other if theta is None else theta + other
        assert theta is not None
        return theta.detach()


def _flat_pair(k0: Tensor, k1: Tensor, who: str) -> tuple[Tensor, Tensor]:
    if k0.shape != k1.shape:
        raise ShapeError(f"{who}: kernels must have the same shape, got {tuple(k0.shape)} and {tuple(k1.shape)}")
    dtype = torch.promote_types(torch.promote_types(k0.dtype, k1.dtype), torch.float32)
    return k0.reshape(-1).to(dtype), k1.reshape(-1).to(dtype)


def _nonzero(norm: Tensor, what: str) -> Tensor:
    if not bool(norm > 0):
        raise ConfigError(f"{what} has zero Frobenius norm; the quantity is undefined for it")
    return norm


def kernel_distance(k0: Tensor, k1: Tensor) -> Tensor:
    r"""Fort et al.'s kernel distance ``S = 1 − ⟨K0, K1⟩_F / (‖K0‖_F ‖K1‖_F)``.

    Args:
        k0, k1: kernels of the same shape, e.g. (N, N) or (N, N, O, O) from ``empirical``.

    Returns:
        0-dim tensor, dimensionless: 0 for proportional kernels, in [0, 1] for PSD kernels,
        invariant to rescaling either kernel.
    """
    a, b = _flat_pair(k0, k1, "kernel_distance")
    na = _nonzero(torch.linalg.vector_norm(a), "kernel_distance: k0")
    nb = _nonzero(torch.linalg.vector_norm(b), "kernel_distance: k1")
    return 1.0 - (a @ b) / (na * nb)


def kernel_velocity(k_t: Tensor, k_next: Tensor, dt: float = 1.0) -> Tensor:
    r"""Fort et al.'s kernel velocity ``S(K_t, K_{t+dt}) / dt``.

    Args:
        k_t, k_next: kernels (same shape) at two times ``dt`` apart.
        dt: the time between them in the caller's units (steps, epochs); must be > 0.

    Returns:
        0-dim tensor: kernel distance per unit of ``dt``.
    """
    if not dt > 0:
        raise ConfigError(f"kernel_velocity: dt must be > 0, got {dt}")
    return kernel_distance(k_t, k_next) / dt


def relative_change(k0: Tensor, k_t: Tensor) -> Tensor:
    r"""Relative kernel movement ``‖K_t − K_0‖_F / ‖K_0‖_F`` (lazy training: small).

    Args:
        k0: kernel at initialization; k_t: kernel later (same shape).

    Returns:
        0-dim tensor, dimensionless (not scale invariant: it also sees the kernel's growth).
    """
    a, b = _flat_pair(k0, k_t, "relative_change")
    return torch.linalg.vector_norm(b - a) / _nonzero(torch.linalg.vector_norm(a), "relative_change: k0")


def _targets(y: Tensor, n: int, dtype: torch.dtype) -> Tensor:
    """Targets as an (N, C) matrix: integer/bool labels (N,) one-hot, real (N,) one column."""
    if y.ndim == 1 and (not y.is_floating_point() and not y.is_complex()):
        if len(y) and int(y.min()) < 0:
            raise ShapeError("target_alignment: integer labels must be >= 0 (class indices)")
        y = torch.nn.functional.one_hot(y.long())
    elif y.ndim == 1:
        y = y.unsqueeze(1)
    if y.ndim != 2 or y.shape[0] != n:
        raise ShapeError(
            f"target_alignment: y must be (N,) labels/values or (N, C) with N = {n}, got {tuple(y.shape)}"
        )
    return y.to(dtype)


def target_alignment(k: Tensor, y: Tensor, *, centered: bool = True) -> Tensor:
    r"""Kernel–target alignment of ``k`` with the targets ``y``.

    ``A(K, YYᵀ) = ⟨K, YYᵀ⟩_F / (‖K‖_F ‖YYᵀ‖_F)`` (Cristianini et al. 2001); with
    ``centered=True`` (Cortes et al. 2012) both matrices are first centred, ``K → HKH`` and
    ``Y → HY``, ``H = I − 11ᵀ/N``, which removes the constant component every positive kernel
    shares with every label matrix.

    Args:
        k: (N, N) kernel (for a multi-output NTK use ``output="trace"``).
        y: (N,) integer class labels (one-hot encoded), (N,) real targets, or (N, C) one-hot or
            real targets.
        centered: centre before aligning (default) or use the raw matrices.

    Returns:
        0-dim tensor in [−1, 1] (in [0, 1] for PSD ``k``); 1 when
        ``k ∝ YYᵀ``.
    """
    if k.ndim != 2 or k.shape[0] != k.shape[1]:
        raise ShapeError(
            f"target_alignment: k must be a square (N, N) kernel, got {tuple(k.shape)}; "
            "for a (N, N, O, O) NTK use empirical(..., output='trace')"
        )
    dtype = torch.promote_types(k.dtype, torch.float32)
    k = k.to(dtype)
    y = _targets(y, k.shape[0], dtype)
    if centered:
        k = k - k.mean(0, keepdim=True) - k.mean(1, keepdim=True) + k.mean()
        y = y - y.mean(0, keepdim=True)
    inner = (y * (k @ y)).sum()  # ⟨K, YYᵀ⟩ = tr(Yᵀ K Y)
    nk = _nonzero(torch.linalg.vector_norm(k), "target_alignment: k" + (" (centred)" if centered else ""))
    ny = _nonzero(torch.linalg.matrix_norm(y.T @ y), "target_alignment: y" + (" (centred)" if centered else ""))
    return inner / (nk * ny)
