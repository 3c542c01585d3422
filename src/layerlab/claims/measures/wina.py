r"""WINA against TEAL's magnitude rule on a trained digits MLP: layer output error and accuracy.

Paper: Chen et al., "WINA: Weight Informed Neuron Activation for Accelerating Large Language Model
Inference", 2025, arXiv:2505.19427 (abstract: WINA "jointly considers hidden state magnitudes and
the column-wise ℓ2-norms of weight matrices ... obtains optimal approximation error bounds with
theoretical guarantees tighter than existing techniques" and "outperforms state-of-the-art methods
(e.g., TEAL) ... at the same sparsity levels"). ``layerlab.compress.wina``: each Linear layer's
input keeps its top-K entries by ``|x_i| ‖W_{:,i}‖_2`` (WINA) or by ``|x_i|`` (TEAL), the same
sparsity ``s`` in every layer but the output head, exact per-row top-K.

The measurement trains an MLP ``64 -> width x depth -> 10`` (``activation`` "silu" — dense hidden
states, as in the LLMs both papers sparsify — or "relu") on layerlab's `digits` with Adam
(``lr``, batch 64, ``steps``, weights and batches from ``seed``), then at each sparsity of
``sparsities`` and for each rule reports, on the test split:

- ``layer_err_<rule>_s<100 s>``: the mean over the sparsified layers of the relative error of the
  layer's output, ``‖W(m ⊙ x) − W x‖_F / ‖W x + b‖_F`` over the test inputs, each layer fed its
  input in the *dense* network (the error of the gate alone);
- ``out_err_<rule>_s<..>``: the relative error of the logits with every layer sparsified;
- ``acc_<rule>_s<..>``: test accuracy with every layer sparsified;

and the statistics of the claim "WINA's error is at most TEAL's at every sparsity":
``layer_excess = max_s (layer_err_wina − layer_err_teal) / layer_err_teal`` (≤ 0 when WINA's error
is at most TEAL's at every ``s``), ``out_excess`` likewise for the logits, and
``acc_deficit = max_s (acc_teal − acc_wina)`` (≤ 0 when WINA's accuracy is at least TEAL's at
every ``s``). ``acc_dense`` is the unsparsified network's. A ratio 0/0 (both rules exact) counts 0.

``wina_vs_teal_text`` makes the same comparison on a small character-level language model
(tinyshakespeare; attention and a SwiGLU channel, trained by the Trainer), every Linear but the
head sparsified, with test bits per character as the task metric (``bpc_deficit``: WINA's bpc
minus TEAL's, worst over the sparsities).

Rule ``winat`` is WINA after the paper's column-orthogonalising transformation (``transform=True``:
the gate acts on ``Vᵀ x`` against ``W V``, ``W = U Σ Vᵀ``); its statistics carry the suffix
``_transform``. In a transformer the paper folds ``V`` into the previous layer; between the layers
of an MLP a nonlinearity forbids that, so here the rotation is an extra product (no saving): it
shows what the orthogonality the paper's guarantee assumes does to the error.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from ...compress.wina import WINA_PAPER, sparsify_inputs, wrapped_layers
from ...errors import ConfigError
from . import register_measure
from ._digits_mlp import accuracy, digits_splits
from ._fit import fit, one_thread

ACTIVATIONS = {"silu": nn.SiLU, "relu": nn.ReLU, "gelu": nn.GELU}
RULES = (("wina", "wina", False), ("winat", "wina", True), ("teal", "teal", False))  # (label, rule, transform)


def mlp(d_in: int, width: int, depth: int, d_out: int, activation: str) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(depth):
        layers += [nn.Linear(d_in if i == 0 else width, width), ACTIVATIONS[activation]()]
    return nn.Sequential(*layers, nn.Linear(width, d_out))


def train(x: Tensor, y: Tensor, seed: int, *, width: int, depth: int, steps: int, lr: float,
          activation: str) -> nn.Sequential:
    """Adam on cross-entropy, minibatches of 64 drawn with replacement; global RNG forked."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = mlp(x.shape[1], width, depth, int(y.max()) + 1, activation)
        opt = torch.optim.Adam(net.parameters(), lr=lr)
        gen = torch.Generator().manual_seed(seed)
        for _ in range(steps):
            idx = torch.randint(0, len(x), (64,), generator=gen)
            opt.zero_grad()
            nn.functional.cross_entropy(net(x[idx]), y[idx]).backward()
            opt.step()
    return net.eval()


def layer_inputs(net: nn.Module, x: Tensor) -> dict[str, Tensor]:
    """The input of every nn.Linear of ``net`` on ``x`` (dense forward)."""
    seen: dict[str, Tensor] = {}
    hooks = [m.register_forward_hook(lambda _m, a, _o, n=n: seen.__setitem__(n, a[0].detach()))
             for n, m in net.named_modules() if type(m) is nn.Linear]
    try:
        with torch.no_grad():
            net(x)
    finally:
        for h in hooks:
            h.remove()
    return seen


def relative_excess(a: float, b: float) -> float:
    """(a − b) / b, with 0/0 = 0."""
    if b == 0:
        return 0.0 if a == 0 else math.inf
    return (a - b) / b


def compare_rules(net: nn.Module, x: Tensor, levels: Sequence[float],
                  metric: Callable[[nn.Module], float], metric_name: str, higher_is_better: bool) -> dict[str, float]:
    """WINA (plain and transformed) and TEAL at each sparsity on evaluation inputs ``x``: per-rule
    layer error, output error and ``metric(model)``, and the worst-case statistics over ``levels``.
    ``<metric>_deficit = max_s (TEAL better by)``: TEAL's metric minus WINA's (higher is better)
    or WINA's minus TEAL's (lower is better)."""
    inputs = layer_inputs(net, x)
    with torch.no_grad():
        logits = net(x)
    out: dict[str, float] = {}
    keys = ("layer_excess", "out_excess", f"{metric_name}_deficit")
    stats = {k + suffix: -math.inf for k in keys for suffix in ("", "_transform")}
    for s in levels:
        tag = f"s{round(100 * s)}"
        res = {}
        for rule, base, transform in RULES:
            model = sparsify_inputs(net, s, base, transform=transform)
            errs = []
            with torch.no_grad():
                for name, layer in wrapped_layers(model).items():
                    xi = inputs[name]
                    dense = layer.linear(xi)
                    errs.append(float((layer(xi) - dense).norm() / dense.norm()))
                out_err = float((model(x) - logits).norm() / logits.norm())
            res[rule] = (sum(errs) / len(errs), out_err, metric(model))
            (out[f"layer_err_{rule}_{tag}"], out[f"out_err_{rule}_{tag}"],
             out[f"{metric_name}_{rule}_{tag}"]) = res[rule]
        for rule, suffix in (("wina", ""), ("winat", "_transform")):
            for i, key in enumerate(keys[:2]):
                stats[key + suffix] = max(stats[key + suffix], relative_excess(res[rule][i], res["teal"][i]))
            gap = res["teal"][2] - res[rule][2]
            stats[keys[2] + suffix] = max(stats[keys[2] + suffix], gap if higher_is_better else -gap)
    out.update(stats)
    return out


def _check_levels(name: str, levels: list[float]) -> None:
    if not levels or not all(0 <= s <= 1 for s in levels):
        raise ConfigError(f"{name}: sparsities must be a non-empty list of fractions in [0, 1]; got {levels}")


@register_measure("wina_vs_teal_digits", metric="layer_excess", paper=WINA_PAPER)
def wina_vs_teal_digits(seed: int, *, width: int = 128, depth: int = 2, steps: int = 1500, lr: float = 1e-3,
                        activation: str = "silu",
                        sparsities: Sequence[float] = (0.25, 0.35, 0.45, 0.55, 0.65)) -> dict[str, float]:
    levels = [float(s) for s in sparsities]
    if width < 1 or depth < 1 or steps < 0 or not lr > 0:
        raise ConfigError(f"wina_vs_teal_digits: need width, depth >= 1, steps >= 0, lr > 0; got {width}, {depth}, "
                          f"{steps}, {lr}")
    _check_levels("wina_vs_teal_digits", levels)
    if activation not in ACTIVATIONS:
        raise ConfigError(f"wina_vs_teal_digits: activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    data = digits_splits()
    (xtr, ytr), (xte, yte) = data["train"], data["test"]
    with one_thread():
        net = train(xtr, ytr, seed, width=width, depth=depth, steps=steps, lr=lr, activation=activation)
        out = {"acc_dense": accuracy(net, xte, yte)}
        out.update(compare_rules(net, xte, levels, lambda m: accuracy(m, xte, yte), "acc", True))
    return out


@register_measure("wina_vs_teal_text", metric="layer_excess", paper=WINA_PAPER)
def wina_vs_teal_text(seed: int, *, d_model: int = 64, n_layers: int = 2, n_heads: int = 2, channel: str = "swiglu",
                      steps: int = 600, batch_size: int = 32, lr: float = 3e-3, length: int = 64,
                      eval_tokens: int = 8192,
                      sparsities: Sequence[float] = (0.25, 0.35, 0.45, 0.55, 0.65)) -> dict[str, float]:
    """The same comparison on a small character-level language model (tinyshakespeare): attention
    mixer, ``channel`` MLP, trained by the Trainer (AdamW ``lr``, cosine, ``steps`` of ``batch_size``
    windows of ``length``); every Linear but the head sparsified; metric ``bpc`` on the test split
    (``bpc_deficit = max_s (bpc_WINA − bpc_TEAL)``); errors on the test windows."""
    levels = [float(s) for s in sparsities]
    _check_levels("wina_vs_teal_text", levels)
    from ...spec import ModelSpec, OptimSpec, RunSpec, TaskSpec, TrainSpec
    from ...tasks import build_task

    params = {"length": length, "eval_tokens": eval_tokens}
    spec = RunSpec(task=TaskSpec("text", params),
                   model=ModelSpec(mixer="attention", channel=channel, d_model=d_model, n_layers=n_layers,
                                   mixer_options={"n_heads": n_heads}),
                   optim=OptimSpec(lr=lr), train=TrainSpec(steps=steps, batch_size=batch_size, eval_every=0),
                   seed=seed)
    task = build_task("text", **params)
    with one_thread():
        net, results, status = fit(spec, task)
        if status != "done":
            raise ConfigError(f"wina_vs_teal_text: training ended with status {status!r}; lower lr or check the spec")
        net.eval()
        x = task.eval_set("test").inputs
        out = {"bpc_dense": task.evaluate(net, "test")["bpc"]}
        out.update(compare_rules(net, x, levels, lambda m: task.evaluate(m, "test")["bpc"], "bpc", False))
    return out
