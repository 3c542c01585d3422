r"""SparseProp on a pruned digits MLP: fine-tuning through the sparse backward equals the dense masked one.

Paper: Nikdan, Pegolotti, Iofinova, Kurtic & Alistarh, "SparseProp: Efficient Sparse
Backpropagation for Faster Training of Neural Networks", ICML 2023, arXiv:2302.04852 (abstract:
"a new efficient version of the backpropagation algorithm, specialized to the case where the
weights of the neural network being trained are sparse ... speedups in end-to-end runtime
experiments, both in transfer learning using already-sparsified networks, and in training sparse
networks from scratch"). The algorithm is exact: it computes the gradients of the sparse network,
only skipping the products with zero weights. ``layerlab.blocks.sparse_linear``.

The measurement trains a ReLU MLP ``64 -> width x depth -> 10`` on layerlab's `digits`
(``_digits_mlp.train_mlp``: Adam ``lr``, batch 64, ``steps``, seeded), prunes every Linear weight
to ``sparsity`` by magnitude (``compress.magnitude.magnitude_uniform``), and fine-tunes the pruned
network for ``finetune_steps`` Adam steps (``finetune_lr``, batch 64, the same batches) twice in
float64: with every Linear a ``SparseLinear`` (CSR forward and backward) and with every Linear a
``MaskedLinear`` (the dense masked reference). Reported:

- ``curve_error``: max over steps of |loss_sparse − loss_masked| / max(1, |loss_masked|);
- ``grad_error``: at the first step, max |∂L/∂w_sparse − (∂L/∂W_masked)_Ω| / max(1, max |∂L/∂W|);
- ``weight_error``: after fine-tuning, max |W_sparse − W_masked ⊙ M| / max(1, max |W|);
- ``error``: the largest of the three;
- ``acc_dense``, ``acc_pruned``, ``acc_finetuned`` (test accuracy before pruning, after pruning,
  after fine-tuning);
- ``time_masked_s``, ``time_sparse_s`` and ``speedup`` (their ratio): the wall time of the same
  fine-tuning in float32 on one thread, each form timed on its own run (reported, not decided on:
  timings of a loaded machine).
"""
from __future__ import annotations

import time

import torch
from torch import nn

from ...blocks.sparse_linear import MaskedLinear, SparseLinear, masked_linears, sparseprop_linears
from ...compress.magnitude import magnitude_uniform
from ...errors import ConfigError
from ...registry import Paper
from . import register_measure
from ._digits_mlp import accuracy, digits_splits, train_mlp
from ._fit import one_thread

SPARSEPROP_PAPER = Paper("SparseProp: Efficient Sparse Backpropagation for Faster Training of Neural Networks",
                         2023, "2302.04852")


def _finetune(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, lr: float, seed: int,
              grads: list | None = None) -> list[float]:
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed + 7919)
    losses = []
    model.train()
    for step in range(steps):
        idx = torch.randint(0, len(x), (64,), generator=gen)
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        loss.backward()
        if step == 0 and grads is not None:
            grads.extend(p.grad.detach().clone() for p in model.parameters())
        opt.step()
        losses.append(float(loss.detach()))
    model.eval()
    return losses


def _weights(model: nn.Module) -> list[torch.Tensor]:
    """Each layer's effective weight (dense, zeros off the support) and bias, in order."""
    out = []
    for m in model.modules():
        if isinstance(m, SparseLinear):
            out += [m.dense_weight().detach(), m.bias.detach()]
        elif isinstance(m, MaskedLinear):
            out += [(m.weight * m.mask).detach(), m.bias.detach()]
    return out


def _grads(model: nn.Module, grads: list[torch.Tensor]) -> list[torch.Tensor]:
    """The first-step gradients as dense weight-shaped tensors (zeros off the support) and biases."""
    out, it = [], iter(grads)
    for m in model.modules():
        if isinstance(m, SparseLinear):
            gv, gb = next(it), next(it)
            out += [torch.zeros(m.out_features, m.in_features, dtype=gv.dtype).index_put((m.rows(), m.col), gv), gb]
        elif isinstance(m, MaskedLinear):
            gw, gb = next(it), next(it)
            out += [gw, gb]
    return out


def _max_rel(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    scale = max(1.0, max(float(t.abs().max()) for t in b))
    return max(float((s - t).abs().max()) for s, t in zip(a, b)) / scale


@register_measure("sparseprop_finetune_digits", metric="error", paper=SPARSEPROP_PAPER)
def sparseprop_finetune_digits(seed: int, *, width: int = 512, depth: int = 2, steps: int = 1500, lr: float = 1e-3,
                               sparsity: float = 0.95, finetune_steps: int = 300,
                               finetune_lr: float = 1e-3) -> dict[str, float]:
    if width < 1 or depth < 1 or steps < 1 or finetune_steps < 1 or not (lr > 0 and finetune_lr > 0):
        raise ConfigError(f"sparseprop_finetune_digits: need width, depth, steps, finetune_steps >= 1 and lr, "
                          f"finetune_lr > 0; got {width}, {depth}, {steps}, {finetune_steps}, {lr}, {finetune_lr}")
    if not 0.0 < sparsity < 1.0:
        raise ConfigError(f"sparseprop_finetune_digits: sparsity is the fraction of weights pruned, in (0, 1); "
                          f"got {sparsity}")
    data = digits_splits()
    (xtr, ytr), (xte, yte) = data["train"], data["test"]
    out: dict[str, float] = {}
    with one_thread():
        net = train_mlp(xtr, ytr, seed, width=width, depth=depth, steps=steps, lr=lr)
        out["acc_dense"] = accuracy(net, xte, yte)
        pruned = magnitude_uniform(net, sparsity, None)
        out["acc_pruned"] = accuracy(pruned, xte, yte)
        cut = sparsity / 2  # every pruned Linear is swapped
        x64, xte64 = xtr.double(), xte.double()
        fast = sparseprop_linears(pruned, min_sparsity=cut).double()
        ref = masked_linears(pruned, min_sparsity=cut).double()
        g_fast: list[torch.Tensor] = []
        g_ref: list[torch.Tensor] = []
        l_fast = _finetune(fast, x64, ytr, finetune_steps, finetune_lr, seed, g_fast)
        l_ref = _finetune(ref, x64, ytr, finetune_steps, finetune_lr, seed, g_ref)
        out["curve_error"] = max(abs(a - b) / max(1.0, abs(b)) for a, b in zip(l_fast, l_ref))
        out["grad_error"] = _max_rel(_grads(fast, g_fast), _grads(ref, g_ref))
        out["weight_error"] = _max_rel(_weights(fast), _weights(ref))
        out["error"] = max(out["curve_error"], out["grad_error"], out["weight_error"])
        out["acc_finetuned"] = accuracy(fast, xte64, yte)
        out["loss_first"], out["loss_last"] = l_fast[0], l_fast[-1]
        times = {}
        for name, make in (("masked", masked_linears), ("sparse", sparseprop_linears)):
            model = make(pruned, min_sparsity=cut)
            t0 = time.perf_counter()
            _finetune(model, xtr, ytr, finetune_steps, finetune_lr, seed)
            times[name] = time.perf_counter() - t0
    out.update(time_masked_s=times["masked"], time_sparse_s=times["sparse"], speedup=times["masked"] / times["sparse"],
               density=sum(m.nnz for m in fast.modules() if isinstance(m, SparseLinear))
               / sum(m.in_features * m.out_features for m in fast.modules() if isinstance(m, SparseLinear)))
    return out
