"""Pruning by Explaining: remove the hidden units least relevant by layer-wise relevance propagation
(LRP), against the first-order Taylor and weight-magnitude criteria. Structured: whole units go.

Yeom, Seegerer, Lapuschkin, Binder, Wiedemann, Müller & Samek, "Pruning by Explaining: A Novel
Criterion for Deep Neural Network Pruning" (Pattern Recognition 2021; arXiv:1912.08881).

LRP (Bach et al. 2015) redistributes the prediction backwards, layer by layer. For a linear layer
z_k = sum_j a_j w_jk + b_k followed by a ReLU (which passes relevance unchanged), with R_k the
relevance of output unit k:

    LRP-epsilon:   R_j = sum_k  a_j w_jk / (z_k + eps sign(z_k))  R_k
    LRP-z+      :   R_j = sum_k  a_j w_jk^+ / (sum_j' a_j' w_j'k^+)  R_k      (w^+ = max(0, w), no bias)

Both conserve relevance, sum_j R_j = sum_k R_k, exactly for z+ (when every sum_j' a_j' w_j'k^+ > 0)
and for epsilon = 0 without biases; a bias or eps > 0 absorbs some. For ReLU networks without biases,
LRP-0 equals gradient x input at every layer (R_l = a_l * d f_c / d a_l). z+ equals LRP-alpha1-beta0
for the nonnegative inputs of every hidden layer; it assumes nonnegative inputs at the first layer
too. The propagation starts from the true-class logit, R^(L) = f(x) * onehot(y) (``start="logit"``;
``"onehot"``: from 1 at the true class).

Criterion (the paper's): the relevance of hidden unit j of layer l is summed over the reference
samples, r_lj = sum_n R_lj(x_n), and normalised per layer, r_lj / sum_j' r_lj'; the units of smallest
normalised relevance across all hidden layers are removed (a global ranking). Baselines, as in the
authors' code: Taylor (Molchanov et al. 2017), theta_lj = | sum_n a_lj(x_n) dL/da_lj(x_n) | with L the
mean cross-entropy on the reference samples (for a ReLU unit, a dL/da = z dL/dz, the pre-activation
form the authors hook), normalised by the layer's l2 norm; weight, sum_i |w_ji| over the unit's
incoming weights, normalised by the layer's l1 norm. Ties and order: a stable sort over
(layer, unit); every layer keeps at least one unit (a unit that would empty its layer is skipped).

Verified against the abstract (relevance criterion; transfer learning with scarce target data and no
fine-tuning as the scenario where it "clearly outperforms" the others) and the authors' public code
(toy MLP and VGG experiments: LRP-z+ rule, relevance from the true-class output, per-layer sum
normalisation, global lowest-k selection; Taylor |mean a * grad| with l2 and weight l1 normalisation).
Here: ReLU MLPs only (``nn.Sequential`` of Linear / ReLU / Dropout / Identity, a Flatten first); the
paper prunes conv filters of VGG/ResNet. One-shot (the paper also prunes iteratively). The returned
copy is physically smaller: removed units lose their row of W_l, their bias and their column of
W_(l+1) (its attribute ``kept_units`` lists the units kept per hidden layer).
"""
from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..registry import Paper
from .registry import CompressContext, register_technique

YEOM_2021 = Paper("Pruning by Explaining: A Novel Criterion for Deep Neural Network Pruning", 2019, "1912.08881")
MOLCHANOV_2017 = Paper("Pruning Convolutional Neural Networks for Resource Efficient Inference", 2016, "1611.06440")
RULES = ("zplus", "epsilon")
STARTS = ("logit", "onehot")
LEVELS = (0.3, 0.5, 0.7, 0.8, 0.9)


# ---- the network as a list of Linear layers ---------------------------------------------------------
def linear_layers(model: nn.Module) -> list[tuple[int, nn.Linear]]:
    """The (index, module) of each Linear of a ReLU MLP ``nn.Sequential`` (Linear / ReLU / Dropout /
    Identity, a Flatten first), checked: a ReLU after every Linear but the last, none after it."""
    fix = ("unit pruning takes a ReLU MLP: nn.Sequential of nn.Linear, nn.ReLU, nn.Dropout, nn.Identity "
           "(an nn.Flatten first), ending in nn.Linear")
    if not isinstance(model, nn.Sequential):
        raise ConfigError(f"{fix}; got {type(model).__name__}")
    out: list[tuple[int, nn.Linear]] = []
    relu_since = False
    for i, m in enumerate(model):
        if isinstance(m, nn.Linear):
            if out and not relu_since:
                raise ConfigError(f"{fix}; Linear {i} follows Linear {out[-1][0]} without a ReLU between")
            out.append((i, m))
            relu_since = False
        elif isinstance(m, nn.ReLU) and out:
            relu_since = True
        elif isinstance(m, nn.Flatten) and not out:
            continue
        elif not isinstance(m, (nn.Dropout, nn.Identity)):
            raise ConfigError(f"{fix}; got module {i}: {type(m).__name__}")
    if len(out) < 2:
        raise ConfigError(f"{fix}; it needs at least one hidden layer (two Linear layers)")
    if relu_since:
        raise ConfigError(f"{fix}; the last Linear gives the logits: no ReLU after it")
    return out


def _activations(model: nn.Sequential, x: Tensor) -> list[Tensor]:
    """[a_0 = input of Linear 1, a_1, ..., a_(L-1), f(x)]: the input of every Linear, then the logits."""
    layers = {i for i, _ in linear_layers(model)}
    acts = []
    h = x
    for i, m in enumerate(model):
        if isinstance(m, (nn.Dropout, nn.Identity)):
            continue  # eval-mode semantics
        if i in layers:
            acts.append(h)
        h = m(h)
    return acts + [h]


# ---- LRP ----------------------------------------------------------------------------------------------
def _stabilize(z: Tensor, eps: float) -> Tensor:
    return z + eps * torch.where(z >= 0, 1.0, -1.0).to(z.dtype)


def _safe_divide(r: Tensor, z: Tensor) -> Tensor:
    """r / z, 0 where z == 0 (a unit with no (positive) input passes no relevance down)."""
    return torch.where(z == 0, torch.zeros_like(r), r / torch.where(z == 0, torch.ones_like(z), z))


@torch.no_grad()
def lrp(model: nn.Module, x: Tensor, targets: Tensor, *, rule: str = "zplus", epsilon: float = 0.0,
        start: str = "logit") -> list[Tensor]:
    """Relevances [R_0 (input), R_1, ..., R_(L-1) (hidden units), R_L (logits)], each (N, units), of a
    ReLU MLP on inputs ``x`` (N, d) explaining the class ``targets`` (N,), by ``rule`` ("zplus" or
    "epsilon" with ``epsilon``), from ``start`` ("logit": the true-class logit; "onehot": 1)."""
    if rule not in RULES:
        raise ConfigError(f"rule must be one of {RULES}, got {rule!r}")
    if start not in STARTS:
        raise ConfigError(f"start must be one of {STARTS}, got {start!r}")
    if epsilon < 0:
        raise ConfigError(f"epsilon must be >= 0, got {epsilon}")
    layers = [m for _, m in linear_layers(model)]
    acts = _activations(model, x)
    logits = acts[-1]
    if targets.shape != (x.shape[0],):
        raise ConfigError(f"targets must be class indices of shape ({x.shape[0]},), got {tuple(targets.shape)}")
    onehot = torch.zeros_like(logits).scatter_(1, targets.long().view(-1, 1), 1.0)
    rel = [logits * onehot if start == "logit" else onehot]
    for layer, a in zip(reversed(layers), reversed(acts[:-1])):
        r = rel[0]
        if rule == "zplus":
            w = layer.weight.clamp(min=0)
            s = _safe_divide(r, a @ w.T)
        else:
            w = layer.weight
            z = a @ w.T + (layer.bias if layer.bias is not None else 0)
            s = _safe_divide(r, _stabilize(z, epsilon))
        rel.insert(0, a * (s @ w))
    return rel


def _normalise(v: Tensor, how: str) -> Tensor:
    d = v.sum() if how == "sum" else v.abs().sum() if how == "l1" else v.norm()
    return v / d if d != 0 else v


def lrp_scores(model: nn.Module, x: Tensor, targets: Tensor, *, rule: str = "zplus", epsilon: float = 0.0,
               start: str = "logit") -> list[Tensor]:
    """Per hidden layer: sum_n R_lj(x_n), divided by its sum over the layer (the paper's criterion)."""
    rel = lrp(model, x, targets, rule=rule, epsilon=epsilon, start=start)
    return [_normalise(r.sum(0), "sum") for r in rel[1:-1]]


def taylor_scores(model: nn.Module, x: Tensor, targets: Tensor) -> list[Tensor]:
    """Per hidden layer: | sum_n a_lj(x_n) dL/da_lj(x_n) |, L the mean cross-entropy of ``targets``,
    divided by its l2 norm over the layer. The gradient by hand-written backpropagation through the
    ReLU MLP (dL/dz_L = (softmax - onehot) / N; dL/da = dL/dz W; dL/dz = dL/da 1[z > 0])."""
    layers = [m for _, m in linear_layers(model)]
    with torch.no_grad():
        acts = _activations(model, x)
        logits = acts[-1]
        onehot = torch.zeros_like(logits).scatter_(1, targets.long().view(-1, 1), 1.0)
        delta = (torch.softmax(logits, 1) - onehot) / x.shape[0]  # dL/dz of the last layer
        scores = []
        for layer, a in zip(reversed(layers[1:]), reversed(acts[1:-1])):
            grad_a = delta @ layer.weight  # dL/da_l
            scores.insert(0, _normalise((a * grad_a).sum(0).abs(), "l2"))
            delta = grad_a * (a > 0).to(a.dtype)  # a = relu(z): dL/dz = dL/da where z > 0
    return scores


def weight_scores(model: nn.Module) -> list[Tensor]:
    """Per hidden layer: sum_i |w_ji| over each unit's incoming weights, divided by the layer's l1 norm."""
    layers = [m for _, m in linear_layers(model)]
    return [_normalise(m.weight.detach().abs().sum(1), "l1") for m in layers[:-1]]


# ---- removing units -----------------------------------------------------------------------------------
def select_units(scores: Sequence[Tensor], n_remove: int) -> list[Tensor]:
    """Per hidden layer, the (sorted) indices of the units kept after removing the ``n_remove`` units of
    smallest score across layers (stable order: layer, then unit), never the last unit of a layer."""
    sizes = [len(s) for s in scores]
    if not 0 <= n_remove <= sum(sizes) - len(sizes):
        raise ConfigError(f"cannot remove {n_remove} of {sum(sizes)} hidden units while keeping one per layer "
                          f"(at most {sum(sizes) - len(sizes)}); lower the level")
    flat = torch.cat([s.detach().double().cpu() for s in scores])
    layer_of = torch.cat([torch.full((n,), i) for i, n in enumerate(sizes)])
    unit_of = torch.cat([torch.arange(n) for n in sizes])
    left = list(sizes)
    removed: list[set[int]] = [set() for _ in sizes]
    for idx in torch.sort(flat, stable=True).indices.tolist():
        if n_remove == 0:
            break
        layer = int(layer_of[idx])
        if left[layer] > 1:
            removed[layer].add(int(unit_of[idx]))
            left[layer] -= 1
            n_remove -= 1
    return [torch.tensor([j for j in range(n) if j not in removed[i]], dtype=torch.long)
            for i, n in enumerate(sizes)]


@torch.no_grad()
def remove_units(model: nn.Module, kept: Sequence[Tensor]) -> nn.Sequential:
    """A copy of the ReLU MLP with only the ``kept`` units of each hidden layer (rows of W_l and b_l,
    columns of W_(l+1))."""
    out = copy.deepcopy(model)
    layers = linear_layers(out)
    if len(kept) != len(layers) - 1:
        raise ConfigError(f"need the kept units of {len(layers) - 1} hidden layers, got {len(kept)}")
    keep_in = None
    for n, (i, m) in enumerate(layers):
        rows = kept[n] if n < len(kept) else torch.arange(m.out_features)
        cols = keep_in if keep_in is not None else torch.arange(m.in_features)
        new = nn.Linear(len(cols), len(rows), bias=m.bias is not None, device=m.weight.device, dtype=m.weight.dtype)
        new.weight.copy_(m.weight[rows.to(m.weight.device)][:, cols.to(m.weight.device)])
        if m.bias is not None:
            new.bias.copy_(m.bias[rows.to(m.weight.device)])
        out[i] = new
        keep_in = rows
    out.kept_units = [k.tolist() for k in kept]
    return out


def _prune(model: nn.Module, level: float, scores: list[Tensor], technique: str) -> nn.Sequential:
    if not 0.0 <= level <= 1.0:
        raise ConfigError(f"{technique}: level is the fraction of hidden units removed, in [0, 1]; got {level}")
    total = sum(len(s) for s in scores)
    return remove_units(model, select_units(scores, round(level * total)))


def _reference(ctx: CompressContext | None, examples: int | None, technique: str) -> tuple[Tensor, Tensor]:
    if ctx is None or getattr(ctx, "calibration", None) is None:
        raise ConfigError(f"{technique} scores units on ctx.calibration (the reference samples: inputs and "
                          "class targets of the training split); pass a CompressContext with one")
    batch = ctx.calibration
    x, y = batch.inputs, batch.targets
    if examples is not None:
        x, y = x[:examples], y[:examples]
    return x, y


@register_technique("lrp_pruning", paper=YEOM_2021, level_kind="sparsity", levels=LEVELS)
def lrp_pruning(model: nn.Module, level: float, ctx: CompressContext, *, rule: str = "zplus", epsilon: float = 0.0,
                start: str = "logit", examples: int | None = None) -> nn.Module:
    """Remove round(level * H) of the H hidden units of a ReLU MLP: those of least normalised LRP
    relevance on the reference samples ``ctx.calibration`` (the first ``examples``). A smaller copy."""
    linear_layers(model)
    x, y = _reference(ctx, examples, "lrp_pruning")
    scores = lrp_scores(model, x, y, rule=rule, epsilon=epsilon, start=start)
    return _prune(model, level, scores, "lrp_pruning")


@register_technique("taylor_pruning", paper=YEOM_2021, level_kind="sparsity", levels=LEVELS)
def taylor_pruning(model: nn.Module, level: float, ctx: CompressContext, *, examples: int | None = None) -> nn.Module:
    """Remove round(level * H) hidden units of least normalised first-order Taylor score
    |sum_n a dL/da| on the reference samples ``ctx.calibration``. A smaller copy. The criterion is
    Molchanov et al.'s (``MOLCHANOV_2017``); registered under the paper that compares against it."""
    linear_layers(model)
    x, y = _reference(ctx, examples, "taylor_pruning")
    return _prune(model, level, taylor_scores(model, x, y), "taylor_pruning")


@register_technique("unit_magnitude_pruning", paper=YEOM_2021, level_kind="sparsity", levels=LEVELS)
def unit_magnitude_pruning(model: nn.Module, level: float, ctx: CompressContext | None = None) -> nn.Module:
    """Remove round(level * H) hidden units of least normalised incoming-weight l1 norm (the weight
    criterion of the paper's comparison; data-free). A smaller copy."""
    linear_layers(model)
    return _prune(model, level, weight_scores(model), "unit_magnitude_pruning")
