"""AdaMixUp: MixUp whose mixing ratios come from a learned policy that keeps mixed samples off the data manifold.

Guo, Mao & Zhang, "MixUp as Locally Linear Out-Of-Manifold Regularization" (2018, arXiv:1809.02499;
AAAI 2019), Sec. "Adaptive MixUp" (fold k = 2). For a pair (x_i, y_i), (x_j, y_j):

- the policy region generator π maps the pair to a softmax triple (α, Δ, γ) (γ is discarded), a
  region (α, α + Δ) ⊂ [0, 1], and the mixing ratio is drawn in it, λ ~ U(α, α + Δ), written
  λ = α + Δ ε with ε ~ U(0, 1) so that gradients reach π;
- x̂ = λ x_i + (1 − λ) x_j,  ŷ = λ y_i + (1 − λ) y_j;
- the intrusion discriminator φ(x) = p(original | x) is a binary classifier of original (label 1)
  against mixed (label 0) samples;
- classifier H, π and φ jointly minimise

      L = L_D(H) + L_D'(H, π) + L_intr(π, φ),
      L_D  = E_(x,y)∈D  CE(H(x), y),           L_D' = E_(x̂,ŷ) CE(H(x̂), ŷ),
      L_intr = −E_x∈D log φ(x) − E_x̂ log(1 − φ(x̂)).

L_D' alone would let π collapse to λ ∈ {0, 1} (mixed = original, the easiest samples); L_intr
rewards policies whose mixed samples are told apart from the data, i.e. that do not intrude on the
manifold with conflicting labels. CE(H(x̂), ŷ) = λ CE(H(x̂), y_i) + (1 − λ) CE(H(x̂), y_j) (the
cross-entropy is linear in the target), per pair.

Deviations: in the paper π and φ share the classifier's lower layers (each is a head on it); here
they are two small MLPs the method owns (input: the concatenated pair for π, one sample for φ;
``hidden`` units, ReLU), so the classifier is exactly the run's model and L_intr shapes it only
through the policy's λ. They are trained by the method's own Adam (``lr``) on the same loss,
stepped after the run's optimizer; built lazily at the first batch (the input width is read from
it), initialised from the method's generator; their weights and Adam state are in ``state_dict``.
The model sees originals and mixed samples in one forward (a batch of 2n; the paper trains on both
too), so a step costs about twice a MixUp step. Vector inputs only. Use it last in a list of batch
methods (the batch it returns has 2n rows).
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from ..registry import Paper, register
from .base import Method, RunContext

PAPER = Paper("MixUp as Locally Linear Out-Of-Manifold Regularization", 2018, "1809.02499")


def _linear(fan_in: int, fan_out: int, generator: torch.Generator, device: torch.device, dtype: torch.dtype,
            zero: bool = False) -> nn.Linear:
    """A linear layer with weights ~ U(±1/sqrt(fan_in)) from `generator` (zeros if `zero`), bias 0;
    built without touching the global RNG."""
    layer = torch.nn.utils.skip_init(nn.Linear, fan_in, fan_out, device=device, dtype=dtype)
    with torch.no_grad():
        bound = 1.0 / math.sqrt(fan_in)
        w = torch.rand(fan_out, fan_in, generator=generator, device=device, dtype=dtype) * (2 * bound) - bound
        layer.weight.copy_(torch.zeros_like(w) if zero else w)
        layer.bias.zero_()
    return layer


def policy_region(logits: Tensor) -> tuple[Tensor, Tensor]:
    """(α, Δ) from the generator's 3 outputs: the first two entries of their softmax."""
    p = torch.softmax(logits, dim=-1)
    return p[..., 0], p[..., 1]


def mix(x: Tensor, partner: Tensor, lam: Tensor) -> Tensor:
    """x̂ = λ x_i + (1 − λ) x_j, one λ per row."""
    lam = lam.reshape(-1, *([1] * (x.dim() - 1)))
    return lam * x + (1.0 - lam) * partner


def mixed_cross_entropy(logits: Tensor, y: Tensor, y_partner: Tensor, lam: Tensor) -> Tensor:
    """E[λ CE(H(x̂), y_i) + (1 − λ) CE(H(x̂), y_j)] = E CE(H(x̂), ŷ)."""
    return (lam * F.cross_entropy(logits, y, reduction="none")
            + (1.0 - lam) * F.cross_entropy(logits, y_partner, reduction="none")).mean()


def intrusion_loss(real_logits: Tensor, mixed_logits: Tensor) -> Tensor:
    """−E_x log φ(x) − E_x̂ log(1 − φ(x̂)), φ = sigmoid of the discriminator's logit."""
    return (F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
            + F.binary_cross_entropy_with_logits(mixed_logits, torch.zeros_like(mixed_logits)))


@register("method", "adamixup", paper=PAPER)
class AdaMixUp(Method):
    """AdaMixUp (Guo, Mao & Zhang, "MixUp as Locally Linear Out-Of-Manifold Regularization", 2018,
    arXiv:1809.02499): λ ~ U(α, α + Δ) with (α, Δ, ·) = softmax(π(x_i, x_j)), x̂ = λ x_i + (1 − λ) x_j;
    minimise L_D(H) + L_D'(H, π) + L_intr(π, φ) over the classifier H, the policy π and the
    intrusion discriminator φ. Hooks: batch, loss, after_step. Options: ``hidden`` (width of π and
    φ, default 64), ``lr`` (their Adam learning rate, default 1e-3).
    """

    def __init__(self, *, hidden: int = 64, lr: float = 1e-3) -> None:
        if isinstance(hidden, bool) or not isinstance(hidden, int) or hidden < 1:
            raise ConfigError(f"adamixup: hidden must be an integer >= 1 (units of the policy and discriminator "
                              f"MLPs), got {hidden!r}")
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not (lr > 0 and math.isfinite(lr)):
            raise ConfigError(f"adamixup: lr must be a finite number > 0 (Adam step of the policy and "
                              f"discriminator), got {lr!r}")
        self.hidden = hidden
        self.lr = float(lr)
        self.in_features: int | None = None
        self.policy: nn.Module | None = None
        self.discriminator: nn.Module | None = None
        self.optimizer: torch.optim.Optimizer | None = None

    def setup(self, model: nn.Module, run: RunContext) -> None:
        if run.input_kind != "vector":
            raise ConfigError(f"adamixup mixes feature vectors; this task has {run.input_kind!r} inputs. "
                              "Use it on a vector task (digits, modular with encoding = 'onehot', ...)")

    def build(self, in_features: int) -> None:
        """π: (2F) -> hidden -> 3 (last layer zero: the first region is (1/3, 2/3)); φ: F -> hidden -> 1."""
        g, dev, dt, h = self.generator, self.run.device, self.run.dtype, self.hidden
        self.in_features = in_features
        self.policy = nn.Sequential(_linear(2 * in_features, h, g, dev, dt), nn.ReLU(),
                                    _linear(h, 3, g, dev, dt, zero=True))
        self.discriminator = nn.Sequential(_linear(in_features, h, g, dev, dt), nn.ReLU(), _linear(h, 1, g, dev, dt))
        params = [*self.policy.parameters(), *self.discriminator.parameters()]
        self.optimizer = torch.optim.Adam(params, lr=self.lr)

    def transform_batch(self, batch: Any, step: int) -> Any:
        x = batch.inputs
        if x.dim() != 2:
            raise ConfigError(f"adamixup: inputs must be (batch, features), got shape {tuple(x.shape)}")
        if self.policy is None:
            self.build(x.shape[1])
        n = x.shape[0]
        perm = torch.randperm(n, generator=self.generator, device=self.generator.device).to(x.device)
        eps = torch.rand(n, generator=self.generator, device=self.generator.device, dtype=x.dtype).to(x.device)
        partner = x[perm]
        alpha, delta = policy_region(self.policy(torch.cat([x, partner], dim=1)))
        lam = alpha + delta * eps
        mixed = mix(x, partner, lam)
        self.n, self.perm, self.lam, self.originals, self.mixed = n, perm, lam, x, mixed
        return type(batch)(torch.cat([x, mixed]), torch.cat([batch.targets, batch.targets]), None)

    def transform_loss(self, loss: Tensor, outputs: Tensor, batch: Any, step: int) -> Tensor:
        n = self.n
        y = batch.targets[:n]
        clean = F.cross_entropy(outputs[:n], y)
        mixed = mixed_cross_entropy(outputs[n:], y, y[self.perm], self.lam.to(outputs.dtype))
        intr = intrusion_loss(self.discriminator(self.originals).squeeze(-1),
                              self.discriminator(self.mixed).squeeze(-1))
        return clean + mixed + intr

    def after_step(self, model: nn.Module, step: int) -> None:
        self.optimizer.step()  # the same loss's gradients reached π and φ in the run's backward
        self.optimizer.zero_grad(set_to_none=True)
        self.originals = self.mixed = self.lam = None  # free the step's graph

    def state_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {**super().state_dict(), "in_features": self.in_features}
        if self.policy is not None:
            out.update(policy=self.policy.state_dict(), discriminator=self.discriminator.state_dict(),
                       optimizer=self.optimizer.state_dict())
        return out

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state["in_features"] is not None:
            self.build(int(state["in_features"]))  # draws from the generator, restored just below
            self.policy.load_state_dict(state["policy"])
            self.discriminator.load_state_dict(state["discriminator"])
            self.optimizer.load_state_dict(state["optimizer"])
        super().load_state_dict(state)
