r"""Task structure and nonlinearity: Tanh hidden layers take the geometry of the targets, ReLU hidden
layers keep more of the geometry of the inputs.

Paper: Alleman, Lindsey & Fusi, "Task structure and nonlinearity jointly determine learned
representational geometry", ICLR 2024, arXiv:2401.13558 (abstract; Sec. 2-3: networks with one
hidden layer on tasks whose input-label alignment is tuned). Geometry is compared by kernel
alignment, the centred alignment of linear kernels (``lens.similarity.cka``, linear), between the
hidden representations ``H`` of the task's conditions and their inputs ``X`` or targets ``Y``:

    gap = KA(H, Y) - KA(H, X)          (larger: the hidden layer looks more like the targets)

The task (ours, in the paper's family): ``C = 8`` conditions with target codes ``y_c in {+-1}^2``
(two binary labels, each condition pair sharing one of 4 codes) and condition inputs

    x_c = sqrt(alpha) * M_y y_c / sqrt(2) + sqrt(1 - alpha) * M_r r_c / ||r_c||,   r_c ~ N(0, I_8),

with random orthonormal embeddings ``M_y`` (d x 2), ``M_r`` (d x 8) scaled by ``sqrt(d)``:
``alpha`` tunes how much of the input geometry is the label geometry (0: none, 1: all). Samples
add N(0, noise^2) per input dimension. A network ``o = W_2 phi(W_1 x + b_1) + b_2`` (``phi`` tanh
or ReLU, PyTorch's default init) is trained by full-batch Adam on the binary cross-entropy of the
two labels; ``H`` is the mean hidden activity per condition over fresh samples.
``error = max over alpha of (gap_relu - gap_tanh)``: negative when the Tanh network's layer is more
target-like than the ReLU network's at every alignment.
"""
from __future__ import annotations

import torch
from torch import nn

from ...errors import ConfigError
from ...lens import rsa, similarity
from ...registry import Paper
from . import register_measure
from ._fit import one_thread

CODES = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]] * 2, dtype=torch.float64)


def condition_inputs(alpha: float, d: int, generator: torch.Generator) -> torch.Tensor:
    """``(8, d)`` condition inputs of the module docstring (alpha: input-label alignment)."""
    q, _ = torch.linalg.qr(torch.randn(d, 10, generator=generator, dtype=torch.float64))
    m_y, m_r = q[:, :2] * d ** 0.5, q[:, 2:] * d ** 0.5
    r = torch.randn(8, 8, generator=generator, dtype=torch.float64)
    r = r / r.norm(dim=1, keepdim=True)
    return alpha ** 0.5 * CODES @ m_y.T / 2 ** 0.5 + (1 - alpha) ** 0.5 * r @ m_r.T


def _train(act: str, xc: torch.Tensor, width: int, steps: int, lr: float, noise: float, samples: int,
           generator: torch.Generator) -> tuple[torch.Tensor, float]:
    """(mean hidden activity per condition on fresh samples, training accuracy of the labels)."""
    d = xc.shape[1]
    torch.manual_seed(int(torch.randint(2**31, (1,), generator=generator)))  # PyTorch's default init, seeded
    net = nn.Sequential(nn.Linear(d, width), nn.Tanh() if act == "tanh" else nn.ReLU(), nn.Linear(width, 2)).double()
    cond = torch.arange(8).repeat_interleave(samples)
    x = xc[cond] + noise * torch.randn(len(cond), d, generator=generator, dtype=torch.float64)
    y = (CODES[cond] > 0).double()
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.binary_cross_entropy_with_logits(net(x), y).backward()
        opt.step()
    with torch.no_grad():
        acc = float(((net(x) > 0).double() == y).double().mean())
        fresh = xc[cond] + noise * torch.randn(len(cond), d, generator=generator, dtype=torch.float64)
        h = net[1](net[0](fresh))
        return torch.stack([h[cond == c].mean(0) for c in range(8)]), acc


@register_measure("task_structure_geometry", metric="error",
                  paper=Paper("Task structure and nonlinearity jointly determine learned representational geometry",
                              2024, "2401.13558"))
def task_structure_geometry(seed: int, *, alphas: tuple[float, ...] = (0.2, 0.5, 0.8), d: int = 32, width: int = 64,
                            steps: int = 500, lr: float = 1e-2, noise: float = 0.5, samples: int = 32
                            ) -> dict[str, float]:
    if not alphas or not all(0 <= a <= 1 for a in alphas) or d < 10 or width < 1 or steps < 1 or not lr > 0 \
            or noise < 0 or samples < 1:
        raise ConfigError("task_structure_geometry: need alphas in [0, 1], d >= 10, width, steps, samples >= 1, "
                          f"lr > 0, noise >= 0; got {alphas}, {d}, {width}, {steps}, {lr}, {noise}, {samples}")
    out: dict[str, float] = {}
    worst = -float("inf")
    with one_thread():
        for alpha in alphas:
            g = torch.Generator().manual_seed(1000 * seed + round(100 * alpha))
            xc = condition_inputs(alpha, d, g)
            gaps = {}
            for act in ("tanh", "relu"):
                h, acc = _train(act, xc, width, steps, lr, noise, samples, g)
                ka_y, ka_x = similarity.cka(h, CODES), similarity.cka(h, xc)
                gaps[act] = ka_y - ka_x
                tag = f"{act}_alpha{alpha}"
                out[f"ka_target_{tag}"], out[f"ka_input_{tag}"], out[f"train_accuracy_{tag}"] = ka_y, ka_x, acc
                out[f"rdm_target_{tag}"] = rsa.rdm_similarity(rsa.rdm(h), rsa.rdm(CODES))
                out[f"rdm_input_{tag}"] = rsa.rdm_similarity(rsa.rdm(h), rsa.rdm(xc))
            out[f"gap_difference_alpha{alpha}"] = gaps["relu"] - gaps["tanh"]
            worst = max(worst, gaps["relu"] - gaps["tanh"])
    out["error"] = worst
    return out
