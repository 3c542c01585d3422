r"""The curse of memory: diagonal linear RNNs fitted to exponential and polynomial memory, perturbed.

Paper: Wang, Li & Li, "Inverse Approximation Theory for Nonlinear Recurrent Neural Networks", 2023,
arXiv:2305.19190: targets that RNNs approximate *stably* (the perturbed error ``E_m(beta)`` of the
width-``m`` approximants small for small ``beta``, uniformly in ``m``) must have exponentially
decaying memory; polynomial memory is approximated only with recurrent eigenvalues crowding the
stability boundary; a stable reparameterization (``lambda = exp(-exp(w))``) removes that limit
(``lens.theory.curse_of_memory``).

Per seed and width ``m`` in ``widths``: a diagonal linear RNN is fitted (Adam, ``steps`` steps,
full batch on the exact white-noise loss, init ``c ~ N(0, 1/m)`` from the seed) to the linear
functional with kernel ``rho(s)``, ``s = 0..length-1`` (``dt = 1``), in three settings: exponential
memory ``e^{-t}`` with the direct parameterization (``lambda = w``), polynomial memory
``(1 + 0.1 t)^{-1.1}`` direct, and polynomial memory with ``lambda = exp(-exp(w))``. For each fit:
``E_m(0)`` (relative error), ``E_m(beta)`` (worst relative error over ``w + beta d``, ``d`` all +1, all
-1 and ``directions`` random sign vectors) and the stability boundary ``1 - max lambda``.

``violations`` counts the paper's predictions that fail (0 to 6):

1. exponential, direct: ``max_m E_m(beta) <= accurate`` (stable: accurate under perturbation);
2. exponential, direct: ``min_m (1 - max lambda) > beta`` (no fit is pushed past the stability
   boundary by the perturbation: for a direct linear RNN, unstable under ``beta`` iff ``beta > 1 - max lambda``);
3. polynomial, direct: ``max_m E_m(0) <= accurate`` (the unperturbed fits are accurate);
4. polynomial, direct: ``E_{m_max}(beta) > accurate`` (the same perturbation ruins the widest fit);
5. polynomial, direct: ``1 - max lambda`` smaller at the largest width than at the smallest
   (eigenvalues crowd the boundary as the width grows);
6. polynomial, ``exp(-exp(w))``: ``max_m E_m(beta) <= accurate`` (stable reparameterization).

The same accuracy bar (``accurate``, a relative error) and the same ``beta`` serve every prediction.
"""
from __future__ import annotations

import torch

from ...errors import ConfigError
from ...lens.theory import curse_of_memory as com
from ...registry import Paper
from . import register_measure


@register_measure("curse_of_memory", metric="violations",
                  paper=Paper("Inverse Approximation Theory for Nonlinear Recurrent Neural Networks", 2023, "2305.19190"))
def curse_of_memory(seed: int, *, length: int = 1000, widths: tuple[int, ...] | list[int] = (4, 8, 16),
                    steps: int = 2000, lr: float = 0.01, beta: float = 0.003, directions: int = 16,
                    accurate: float = 0.1) -> dict[str, float]:
    ws = [int(m) for m in widths]
    if length < 2 or len(ws) < 2 or min(ws) < 1 or steps < 1 or not lr > 0 or not beta > 0 or directions < 0:
        raise ConfigError(f"curse_of_memory: need length >= 2, at least two widths >= 1, steps >= 1, lr > 0, beta > 0, "
                          f"directions >= 0; got length={length}, widths={ws}, steps={steps}, lr={lr}, beta={beta}, "
                          f"directions={directions}")
    settings = {"exp_direct": ("exp", "direct"), "pol_direct": ("pol", "direct"), "pol_exp": ("pol", "exp")}
    out: dict[str, float] = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: one thread is faster on a shared machine; restored below
    try:
        for name, (kind, par) in settings.items():
            target = com.target_kernel(kind, length)
            for m in ws:
                g = torch.Generator().manual_seed(seed * 1000 + m)
                rnn = com.train_diagonal_rnn(target, m, par, steps=steps, lr=lr, generator=g)
                out[f"{name}_m{m}_error"] = float(com.kernel_error(rnn, target))
                out[f"{name}_m{m}_perturbed"] = com.perturbed_error(rnn, target, beta, n_random=directions,
                                                                      generator=torch.Generator().manual_seed(seed))
                out[f"{name}_m{m}_gap"] = float(1 - rnn.lam.max())
    finally:
        torch.set_num_threads(threads)
    lo, hi = ws[0], ws[-1]
    checks = [max(out[f"exp_direct_m{m}_perturbed"] for m in ws) <= accurate,
              min(out[f"exp_direct_m{m}_gap"] for m in ws) > beta,
              max(out[f"pol_direct_m{m}_error"] for m in ws) <= accurate,
              out[f"pol_direct_m{hi}_perturbed"] > accurate,
              out[f"pol_direct_m{hi}_gap"] < out[f"pol_direct_m{lo}_gap"],
              max(out[f"pol_exp_m{m}_perturbed"] for m in ws) <= accurate]
    for i, ok in enumerate(checks, 1):
        out[f"prediction_{i}_holds"] = float(ok)
    out["violations"] = float(sum(not ok for ok in checks))
    return out
