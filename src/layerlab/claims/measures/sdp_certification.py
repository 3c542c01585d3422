r"""Low-rank SDP against LP certification of an adversarially trained ReLU MLP on digits.

Paper: Chiu & Zhang, "Tight Certification of Adversarially Trained Neural Networks via Nonconvex
Low-Rank Semidefinite Relaxations", ICML 2023, arXiv:2211.17244 (abstract: LP techniques "face a
'convex relaxation barrier'"; "the nonconvex relaxation almost completely closes the gap towards
exact certification of adversarially trained models"). ``lens.certify``: the worst-case margin
``d* = min_{||x - x̂||_inf <= ρ} f_y(x) - f_j(x)``, its LP (triangle) lower bound, the BM-r SDP
lower bound (certified by the dual) and ``d*`` itself by MILP.

The measurement trains a ReLU MLP ``64 -> hidden... -> 10`` on layerlab's `digits` (inputs in
[0, 1]) by PGD adversarial training in the ``l_inf`` ball of radius ``train_eps`` (Adam ``lr``,
batch 64, ``steps``; ``pgd_steps`` steps of size ``2.5 train_eps / pgd_steps``; weights drawn
under ``seed``), then takes the first ``n_points`` correctly classified test examples (in an
order drawn from ``seed``), the runner-up class as target and radius ``eps``. Pre-activation bounds
come from the layer-wise LP (the paper's LP baseline) and are shared by the three methods. It
reports ``closed = Σ (sdp - lp) / Σ (exact - lp)`` (the share of the LP's gap to the exact value
that the SDP closes, summed over the points), ``error = 1 - closed``, the mean gaps, the fractions
of points certified (bound > 0) by each method, and the SDP's mean seconds and smallest dual
eigenvalue.
"""
from __future__ import annotations

import time

import torch

from ...errors import ConfigError
from ...lens import certify
from ...registry import Paper
from ...tasks import build_task
from . import register_measure
from ._fit import one_thread, train_relu_mlp





@register_measure("sdp_vs_lp_certification", metric="error",
                  paper=Paper("Tight Certification of Adversarially Trained Neural Networks via Nonconvex Low-Rank "
                              "Semidefinite Relaxations", 2022, "2211.17244"))
def sdp_vs_lp_certification(seed: int, *, hidden: tuple[int, ...] | list[int] = (32, 16), eps: float = 0.05,
                            train_eps: float = 0.05, steps: int = 1500, pgd_steps: int = 7, lr: float = 3e-3,
                            n_points: int = 6, max_rank_increase: int = 2) -> dict[str, float]:
    hidden = tuple(int(h) for h in hidden)
    if not hidden or min(hidden) < 1 or not eps > 0 or not train_eps >= 0 or steps < 1 or pgd_steps < 1 \
            or not lr > 0 or n_points < 1 or max_rank_increase < 0:
        raise ConfigError(f"sdp_vs_lp_certification: need hidden sizes >= 1, eps > 0, train_eps >= 0, steps, "
                          f"pgd_steps, n_points >= 1, lr > 0, max_rank_increase >= 0; got {hidden}, {eps}, "
                          f"{train_eps}, {steps}, {pgd_steps}, {n_points}, {lr}, {max_rank_increase}")
    task = build_task("digits")
    train, test = task.train_batch(0, torch.Generator()), task.eval_set("test")
    with one_thread():
        net = train_relu_mlp(train.inputs.float(), train.targets, hidden, seed, steps, lr, eps=train_eps,
                             pgd_steps=pgd_steps)
        ws, bs = certify.mlp_weights(net)
        with torch.no_grad():
            logits = net(test.inputs.float())
        acc = float((logits.argmax(1) == test.targets).float().mean())
        order = torch.randperm(len(test.targets), generator=torch.Generator().manual_seed(seed))
        rows, sdp_seconds, eig, unstable = [], 0.0, [], []
        for i in order.tolist():
            label = int(test.targets[i])
            if int(logits[i].argmax()) != label:
                continue
            target = int(logits[i].topk(2).indices[1])
            x = test.inputs[i].double()
            pre = certify.lp_preactivation_bounds(ws, bs, x, eps)
            prob = certify.problem(ws, bs, x, eps, pre, label=label, target=target)
            t0 = time.perf_counter()
            sdp = certify.sdp_bound(prob, max_rank_increase=max_rank_increase, generator=torch.Generator().manual_seed(seed))
            sdp_seconds += time.perf_counter() - t0
            rows.append((certify.lp_bound(prob), sdp.bound, certify.exact_margin(prob)))
            eig.append(sdp.eig_min)
            unstable.append(prob.n_unstable)
            if len(rows) == n_points:
                break
    lp, sdp_b, exact = (torch.tensor(c, dtype=torch.float64) for c in zip(*rows))
    gap = float((exact - lp).sum())
    closed = float((sdp_b - lp).sum()) / gap if gap > 0 else float("nan")
    n = len(rows)
    return {"error": 1.0 - closed, "closed": closed, "lp_gap": gap / n, "sdp_gap": float((exact - sdp_b).sum()) / n,
            "certified_lp": float((lp > 0).double().mean()), "certified_sdp": float((sdp_b > 0).double().mean()),
            "certified_exact": float((exact > 0).double().mean()), "sdp_seconds": sdp_seconds / n,
            "sdp_eig_min": min(eig), "unstable": sum(unstable) / n, "clean_accuracy": acc, "points": float(n)}
