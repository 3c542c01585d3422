"""Checks every sequence mixer must pass, written once.

``tests/blocks/test_mixer_contract.py`` runs them on every registered mixer (parametrised over
``layerlab.names("mixer")``, so a new mixer cannot skip them); a mixer's own test file runs them
on the variants its options select (negative eigenvalues, another mixing, ...).

- ``check_forms_agree``: every mode against ``"reference"``, outputs and gradients (input and
  parameters), float64 relative error <= 1e-10, float32 <= 1e-4 (a parameter's gradient error
  relative to the larger of its own norm and the norm of all parameter gradients).
- ``check_step_matches_forward``: ``step`` run over a sequence equals ``forward`` (float64, 1e-10).
- ``check_causal``: changing token t never changes outputs before t, in every mode.
- ``check_state_size``: ``state_size`` equals the element count of the states ``init_state``
  and ``step`` return, and the state keeps its shapes whatever the length.
"""
from __future__ import annotations

import torch

from layerlab.blocks.mixers.base import Mixer, state_numel

TOL = {torch.float64: 1e-10, torch.float32: 1e-4}
# (B, L): length 1, lengths not divisible by common chunk sizes, one longer than a chunk of 64
SHAPES = [(1, 1), (2, 7), (2, 16), (1, 33), (2, 70)]


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


def _run(block: Mixer, x: torch.Tensor, cot: torch.Tensor, mode: str):
    x = x.detach().clone().requires_grad_(True)
    block.zero_grad()
    y = block(x, mode=mode)
    (y * cot).sum().backward()
    grads = [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in block.parameters()]
    return y.detach(), x.grad.detach(), grads


def check_forms_agree(block: Mixer, B: int, L: int, *, seed: int = 0) -> None:
    """Every fast mode equals the reference form: outputs, input gradients, parameter gradients."""
    p = next(block.parameters())
    dtype = p.dtype
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(B, L, block.d_model, generator=gen, dtype=dtype)
    cot = torch.randn(B, L, block.d_model, generator=gen, dtype=dtype)
    y_r, gx_r, gp_r = _run(block, x, cot, "reference")
    assert y_r.shape == x.shape and y_r.dtype == dtype
    assert torch.isfinite(y_r).all() and torch.isfinite(gx_r).all()
    for mode in block.modes:
        if mode == "reference":
            continue
        y_f, gx_f, gp_f = _run(block, x, cot, mode)
        tol = TOL[dtype]
        assert rel_err(y_f, y_r) <= tol, f"{mode}: output rel err {rel_err(y_f, y_r):.2e} > {tol}"
        assert rel_err(gx_f, gx_r) <= tol, f"{mode}: input grad rel err {rel_err(gx_f, gx_r):.2e}"
        # a parameter whose true gradient is 0 (e.g. a decay acting on the zero initial state
        # at L = 1) gets roundoff from the fast form: measure against the whole gradient's norm
        total = torch.sqrt(sum(b.square().sum() for b in gp_r))
        for (name, _), a, b in zip(block.named_parameters(), gp_f, gp_r):
            err = ((a - b).norm() / torch.maximum(b.norm(), total).clamp_min(1e-30)).item()
            assert err <= tol, f"{mode}: grad of {name} rel err {err:.2e}"


def check_step_matches_forward(block: Mixer, B: int, L: int, *, seed: int = 0, tol: float = 1e-10) -> None:
    """Running ``step`` token by token from ``init_state`` reproduces ``forward`` (default mode)."""
    assert block.recurrent
    dtype = next(block.parameters()).dtype
    x = torch.randn(B, L, block.d_model, generator=torch.Generator().manual_seed(seed), dtype=dtype)
    with torch.no_grad():
        y = block(x)
        state = block.init_state(B)
        ys = []
        for t in range(L):
            y_t, state = block.step(x[:, t], state)
            ys.append(y_t)
    assert rel_err(torch.stack(ys, dim=1), y) <= tol


def check_causal(block: Mixer, L: int = 12, *, seed: int = 0) -> None:
    """Perturbing token t leaves outputs 0..t-1 unchanged (exactly up to float64 rounding) and
    changes output t or later (the mixer does look at its input)."""
    dtype = next(block.parameters()).dtype
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(2, L, block.d_model, generator=gen, dtype=dtype)
    for mode in block.modes:
        with torch.no_grad():
            y = block(x, mode=mode)
            for t in (0, L // 2, L - 1):
                x2 = x.clone()
                x2[:, t] += torch.randn(2, block.d_model, generator=gen, dtype=dtype)
                y2 = block(x2, mode=mode)
                if t > 0:
                    assert (y2[:, :t] - y[:, :t]).abs().max() <= 1e-12 * (1 + y.abs().max()), (mode, t)
                assert not torch.allclose(y2[:, t:], y[:, t:]), f"{mode}: output ignores token {t}"


def check_state_size(block: Mixer, B: int = 3, L: int = 9) -> None:
    """``state_size`` (per sequence) equals the elements of the states ``init_state`` and ``step``
    really return, and stepping through ``L`` tokens changes no state tensor's shape or dtype
    (the state does not grow with the length)."""
    state = block.init_state(B)
    assert all(s.shape[0] == B for s in state), "every state tensor leads with the batch dimension"
    assert state_numel(state) == B * block.state_size
    assert block.state_size > 0
    layout = [(s.shape, s.dtype) for s in state]
    x = torch.randn(B, L, block.d_model, dtype=next(block.parameters()).dtype,
                    generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        for t in range(L):
            _, state = block.step(x[:, t], state)
            assert [(s.shape, s.dtype) for s in state] == layout, f"state changed layout at token {t}"
    assert state_numel(state) == B * block.state_size
