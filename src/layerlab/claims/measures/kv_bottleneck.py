"""The discrete key-value bottleneck forgets less than a linear head in class-incremental learning.

Paper: Träuble et al., "Discrete Key-Value Bottleneck", ICML 2023, arXiv:2207.11240: a frozen
encoder's output is projected into C heads, each snapped to its nearest key
``k_c(x) = argmin_k ||z_c - e_{c,k}||``; the fetched values ``V[c, k_c(x)]`` are averaged (the
non-parametric decoder) into the logits, and only the values are trained. A gradient step then
moves only the values of the keys its inputs select, so learning new classes leaves the values
of other keys, and the classes they encode, untouched; in class-incremental CIFAR10 (5 tasks of
2 classes) it keeps far more of the earlier tasks than a linear probe on the same encoder.

Protocol per seed (all draws from the seed's ``torch.Generator``):

* data: scikit-learn's 8x8 digits (the ``digits`` task's stratified splits), features
  standardized with the training mean and std: the "frozen encoder" is this fixed map;
* the 10 classes in an order drawn per seed, cut into ``n_tasks`` tasks of equal size, trained one
  after the other with cross-entropy over all 10 logits on that task's training rows only
  (no replay, no task id at test time), ``steps_per_task`` SGD steps of ``batch_size``;
* DKVB: ``KVBottleneck(64, heads, n_keys, key_dim, value_dim=10, combine="mean")``, keys fitted
  before any task by ``kmeans_steps`` Lloyd steps (``fit_keys`` with decay 0) on the unlabeled
  training inputs; logits ``= mean_c V[c, k_c(x)]`` (the block's decoder is not used);
* baseline: a linear head ``nn.Linear(64, 10)`` on the same features, trained the same way;
* each model's learning rate is chosen from ``lrs`` by the final validation accuracy on all 10
  classes; the test split is read once at that rate.

Returns ``gap = accuracy_linear - accuracy_dkvb`` (final test accuracy on all classes; the claim:
gap < 0), both accuracies and their learning rates, and each model's average forgetting (the
mean over the earlier tasks of the drop of test accuracy on that task's classes from just after
it was learned to the end).
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...blocks.channels.kv_bottleneck import VALUE_STD, KVBottleneck
from ...errors import ConfigError
from ...registry import Paper
from ...tasks import build_task
from . import register_measure

N_CLASSES = 10


def _standardized_digits() -> dict[str, tuple[Tensor, Tensor]]:
    task = build_task("digits")
    data = {s: (b.inputs.double(), b.targets) for s in ("train", "val", "test")
            for b in [task.train_batch(0, torch.Generator()) if s == "train" else task.eval_set(s)]}
    mean, std = data["train"][0].mean(0), data["train"][0].std(0).clamp_min(1e-3)  # constant pixels: std 0
    return {s: ((x - mean) / std, y) for s, (x, y) in data.items()}


def _accuracy(logits: Tensor, y: Tensor, classes: Tensor | None = None) -> float:
    if classes is not None:
        keep = torch.isin(y, classes)
        logits, y = logits[keep], y[keep]
    return (logits.argmax(-1) == y).double().mean().item()


def _run(params: list[Tensor], logits_of: Callable[[Tensor], Tensor], data: dict[str, tuple[Tensor, Tensor]],
         tasks: list[Tensor], lr: float, steps: int, batch_size: int, g: torch.Generator) -> dict[str, float]:
    """Train on the tasks in order; final val/test accuracy and average forgetting on test."""
    opt = torch.optim.SGD(params, lr=lr)
    x_tr, y_tr = data["train"]
    x_te, y_te = data["test"]
    just_learned = []
    for classes in tasks:
        rows = torch.nonzero(torch.isin(y_tr, classes)).squeeze(1)
        for _ in range(steps):
            idx = rows[torch.randint(len(rows), (batch_size,), generator=g)]
            loss = F.cross_entropy(logits_of(idx), y_tr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            just_learned.append(_accuracy(logits_of(("test", None)), y_te, classes))
    with torch.no_grad():
        test_logits = logits_of(("test", None))
        final = [_accuracy(test_logits, y_te, c) for c in tasks]
        return {"val": _accuracy(logits_of(("val", None)), data["val"][1]), "test": _accuracy(test_logits, y_te),
                "forgetting": sum(a - b for a, b in zip(just_learned[:-1], final[:-1])) / max(len(tasks) - 1, 1)}


@register_measure("kv_bottleneck_class_incremental", metric="gap",
                  paper=Paper("Discrete Key-Value Bottleneck", 2023, "2207.11240"))
def kv_bottleneck_class_incremental(seed: int, *, n_tasks: int = 5, heads: int = 32, n_keys: int = 64,
                                    key_dim: int = 8, kmeans_steps: int = 10, steps_per_task: int = 100,
                                    batch_size: int = 32, lrs: tuple[float, ...] | list[float] = (0.1, 1.0, 10.0)
                                    ) -> dict[str, float]:
    if isinstance(n_tasks, bool) or not isinstance(n_tasks, int) or n_tasks < 1 or N_CLASSES % n_tasks:
        raise ConfigError(f"kv_bottleneck_class_incremental: n_tasks must divide the 10 classes (1, 2, 5 or 10), "
                          f"got {n_tasks!r}")
    if not lrs or any(not lr > 0 for lr in lrs) or steps_per_task < 1 or batch_size < 1 or kmeans_steps < 0:
        raise ConfigError("kv_bottleneck_class_incremental: need a non-empty lrs of positive rates, "
                          f"steps_per_task >= 1, batch_size >= 1, kmeans_steps >= 0; got lrs={lrs}, "
                          f"steps_per_task={steps_per_task}, batch_size={batch_size}, kmeans_steps={kmeans_steps}")
    g = torch.Generator().manual_seed(seed)
    data = _standardized_digits()
    order = torch.randperm(N_CLASSES, generator=g)
    tasks = list(order.view(n_tasks, -1))
    d = data["train"][0].shape[1]

    with torch.random.fork_rng(devices=[]):  # the constructors' own draws leave the global RNG as it was
        kv = KVBottleneck(d, heads=heads, n_keys=n_keys, key_dim=key_dim, value_dim=N_CLASSES, combine="mean",
                          generator=g, dtype=torch.float64)
        linear = nn.Linear(d, N_CLASSES, dtype=torch.float64)
    if kmeans_steps:
        kv.fit_keys(data["train"][0], decay=0.0, steps=kmeans_steps)  # unlabeled inputs only
    codes = {s: kv.nearest_keys(x) for s, (x, _) in data.items()}  # (N, C): fixed, the encoder is frozen
    heads_ix = torch.arange(heads)
    init_values = torch.randn(heads, n_keys, N_CLASSES, generator=g, dtype=torch.float64) * VALUE_STD
    bound = d ** -0.5
    init_w = torch.empty(N_CLASSES, d, dtype=torch.float64).uniform_(-bound, bound, generator=g)
    init_b = torch.empty(N_CLASSES, dtype=torch.float64).uniform_(-bound, bound, generator=g)

    def select(arg: Tensor | tuple[str, None], table: dict[str, Tensor]) -> Tensor:
        return table["train"][arg] if isinstance(arg, Tensor) else table[arg[0]]

    results: dict[str, dict[str, float]] = {}
    for name in ("dkvb", "linear"):
        best: dict[str, float] | None = None
        for lr in lrs:
            run_g = torch.Generator().manual_seed(seed * 1_000_003 + 17)  # the same batches for every model and lr
            if name == "dkvb":
                with torch.no_grad():
                    kv.values.copy_(init_values)
                params = [kv.values]

                def logits_of(arg, kv=kv):  # mean over heads of the fetched values
                    return kv.values[heads_ix, select(arg, codes)].mean(-2)
            else:
                with torch.no_grad():
                    linear.weight.copy_(init_w)
                    linear.bias.copy_(init_b)
                params = list(linear.parameters())
                feats = {s: x for s, (x, _) in data.items()}

                def logits_of(arg, feats=feats):
                    return linear(select(arg, feats))
            out = _run(params, logits_of, data, tasks, lr, steps_per_task, batch_size, run_g)
            if best is None or out["val"] > best["val"]:
                best = {**out, "lr": lr}
        assert best is not None
        results[name] = best
    kv_res, lin = results["dkvb"], results["linear"]
    return {"gap": lin["test"] - kv_res["test"], "accuracy_dkvb": kv_res["test"], "accuracy_linear": lin["test"],
            "forgetting_dkvb": kv_res["forgetting"], "forgetting_linear": lin["forgetting"],
            "lr_dkvb": kv_res["lr"], "lr_linear": lin["lr"]}
