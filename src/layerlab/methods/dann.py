"""DANN: domain-adversarial training through a gradient reversal layer.

Ganin, Ustinova, Ajakan, Germain, Larochelle, Laviolette, Marchand & Lempitsky,
"Domain-Adversarial Training of Neural Networks" (JMLR 2016, arXiv:1505.07818). A feature
extractor G_f(·; θ_f), a label predictor G_y(·; θ_y) and a domain classifier G_d(·; θ_d) on the
features are trained on a labelled source sample (i = 1..n) and an unlabelled target sample
(i = n+1..N) for the saddle point of

    E(θ_f, θ_y, θ_d) = 1/n Σ_{i=1}^{n} L_y^i(θ_f, θ_y)
                       − λ ( 1/n Σ_{i=1}^{n} L_d^i(θ_f, θ_d) + 1/n' Σ_{i=n+1}^{N} L_d^i(θ_f, θ_d) ),

min over (θ_f, θ_y), max over θ_d. The gradient reversal layer R_λ (Sec. 5) makes it
one backward pass: forward R_λ(x) = x, backward dR_λ/dx = −λ I, so minimising

    1/n Σ L_y(G_y(G_f(x_i)), y_i) + 1/n Σ_src L_d(G_d(R_λ(G_f(x_i))), d_i) + 1/n' Σ_tgt L_d(...)

updates θ_d down the domain loss and θ_f up it (times λ). λ follows the paper's schedule
(Sec. 5, training procedure)

    λ_p = 2 / (1 + exp(−γ p)) − 1,   γ = 10,   p = training progress from 0 to 1 (here t / steps),

and L_d is the logistic loss of the domain label d_i (0 source, 1 target).

Here: G_f is the model up to its head (the features are the input of ``model.<features>``,
default ``head``: the classifier backbone's final-norm output), G_y is the head, and G_d is a
small MLP (``hidden`` ReLU units, 0 for logistic regression) added to the model as the submodule
``dann_domain_classifier`` by ``setup`` (so the run's optimizer trains it and checkpoints hold it;
it counts in the run's parameters), initialised from the method's generator. The source/target
rows of a batch are told apart by ``batch.mask`` (True = labelled source), as the ``domain_shift``
task provides them. Deviation: the paper also anneals the learning rate as μ_p = μ_0 / (1 + α p)^β;
here the run's own optimizer and schedule apply. Hook: ``transform_loss``.
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from ..registry import Paper, register
from .base import Method, RunContext

PAPER = Paper("Domain-Adversarial Training of Neural Networks", 2015, "1505.07818")


class _ReverseGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, lam: float) -> Tensor:
        ctx.lam = lam
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return -ctx.lam * grad, None


def reverse_gradient(x: Tensor, lam: float) -> Tensor:
    """R_λ: the identity forward; the incoming gradient times −λ backward."""
    return _ReverseGradient.apply(x, float(lam))


def adaptation_factor(p: float, gamma: float = 10.0) -> float:
    """λ_p = 2 / (1 + exp(−γ p)) − 1 (Ganin et al. 2016, Sec. 5); 0 at p = 0, → 1 as p grows."""
    return 2.0 / (1.0 + math.exp(-gamma * p)) - 1.0


@register("method", "dann", paper=PAPER)
class DANN(Method):
    """DANN (Ganin et al., "Domain-Adversarial Training of Neural Networks", 2016, arXiv:1505.07818):
    a domain classifier G_d on the features, trained through a gradient reversal layer R_λ
    (identity forward, −λ × gradient backward) on source and unlabelled target inputs; the loss is
    1/n Σ_src L_y + 1/n Σ_src L_d + 1/n' Σ_tgt L_d with λ_p = 2/(1+exp(−γp)) − 1, p = t / steps.
    Hook: loss (needs batches with ``mask``: True on labelled source rows, False on target rows).

    Options: ``gamma`` (10, the paper's), ``hidden`` (domain classifier width, 64; 0 = logistic),
    ``features`` (the submodule whose input is the feature vector, "head").
    """

    def __init__(self, *, gamma: float = 10.0, hidden: int = 64, features: str = "head") -> None:
        if not (isinstance(gamma, (int, float)) and not isinstance(gamma, bool) and math.isfinite(gamma) and gamma > 0):
            raise ConfigError(f"dann: gamma must be a finite number > 0 (the paper uses 10), got {gamma!r}")
        if not (isinstance(hidden, int) and not isinstance(hidden, bool) and hidden >= 0):
            raise ConfigError(f"dann: hidden must be an integer >= 0 (0: a logistic domain classifier), got {hidden!r}")
        if not (isinstance(features, str) and features):
            raise ConfigError(f"dann: features must name a submodule of the model (e.g. 'head'), got {features!r}")
        self.gamma, self.hidden, self.features = float(gamma), hidden, features
        self._feats: Tensor | None = None

    def setup(self, model: nn.Module, run: RunContext) -> None:
        if run.input_kind != "vector":
            raise ConfigError(f"dann reads feature vectors before the head; this task has {run.input_kind!r} inputs. "
                              "Use it on a vector task with source and target rows (domain_shift)")
        modules = dict(model.named_modules())
        target = modules.get(self.features)
        if not isinstance(target, nn.Linear):
            raise ConfigError(f"dann: features={self.features!r} must name a Linear submodule of the model whose "
                              f"input is the feature vector (the classifier backbone's 'head'); the model's "
                              f"Linear submodules: {[n for n, m in modules.items() if isinstance(m, nn.Linear)]}")
        if hasattr(model, "dann_domain_classifier"):
            raise ConfigError("dann: the model already has a domain classifier; list dann once per run")
        d = target.in_features
        layers: list[nn.Module] = ([nn.Linear(d, self.hidden), nn.ReLU(), nn.Linear(self.hidden, 1)]
                                   if self.hidden else [nn.Linear(d, 1)])
        domain = nn.Sequential(*layers).to(device=run.device, dtype=run.dtype)
        with torch.no_grad():  # PyTorch's default Linear init, U(±1/sqrt(fan_in)), from the method's generator
            for layer in domain:
                if isinstance(layer, nn.Linear):
                    bound = 1.0 / math.sqrt(layer.in_features)
                    for p in (layer.weight, layer.bias):
                        p.copy_(torch.rand(p.shape, generator=self.generator, device=run.device,
                                           dtype=run.dtype) * 2 * bound - bound)
        model.add_module("dann_domain_classifier", domain)
        self.domain = domain
        target.register_forward_pre_hook(self._capture)

    def _capture(self, module: nn.Module, args: tuple[Tensor, ...]) -> None:
        self._feats = args[0]

    def lam(self, step: int) -> float:
        """λ_p at optimizer step t (p = t / steps)."""
        return adaptation_factor(step / max(self.run.steps, 1), self.gamma)

    def domain_loss(self, features: Tensor, source: Tensor, lam: float) -> Tensor:
        """1/n Σ_src L_d + 1/n' Σ_tgt L_d of G_d(R_λ(features)), L_d the logistic loss of d (1 = target)."""
        logits = self.domain(reverse_gradient(features, lam)).squeeze(-1)
        d = (~source).to(logits.dtype)
        per = F.binary_cross_entropy_with_logits(logits, d, reduction="none")
        return per[source].mean() + per[~source].mean()

    def transform_loss(self, loss: Tensor, outputs: Tensor, batch: Any, step: int) -> Tensor:
        mask = getattr(batch, "mask", None)
        if mask is None or mask.dim() != 1 or bool(mask.all()) or not bool(mask.any()):
            raise ConfigError("dann needs training batches with labelled source rows (mask True) and unlabelled "
                              "target rows (mask False); use a domain-shift task (task 'domain_shift')")
        if self._feats is None or self._feats.shape[0] != mask.shape[0]:
            raise ConfigError(f"dann: no features captured at {self.features!r} for this batch")
        feats, self._feats = self._feats, None
        return loss + self.domain_loss(feats, mask, self.lam(step))
