r"""DataMUX on a digits MLP: accuracy lost and inference throughput gained by multiplexing N inputs.

Paper: Murahari, Jimenez, Yang & Narasimhan, "DataMUX: Data Multiplexing for Neural Networks",
NeurIPS 2022, arXiv:2202.09318 (abstract: "DataMUX for Transformers can multiplex up to 20x/40x
inputs, achieving up to 11x/18x increase in inference throughput with absolute performance drops
of < 2% and < 4%"; viable "to a much lesser extent" for MLPs and CNNs). ``models.datamux.DataMux``:
fixed per-index transforms of the shared embedding, averaged, one pass of the base network, one
demux head per index, a shared classifier.

For each ``n`` in ``ns`` the measurement trains ``DataMux(n=n)`` (``n = 1``: the plain ReLU MLP
``64 -> width x depth -> 10``) on layerlab's `digits`: Adam ``lr``, ``steps`` steps, each on
``batch`` groups of ``n`` training examples drawn with replacement (``n x batch`` examples, one
backbone pass per group), cross-entropy averaged over every example. The test split is read in
consecutive groups of ``n`` (``DataMux.predict``). Reported: ``acc_n<n>``, ``acc_drop_n<n>`` =
``acc_n1 - acc_n<n>``, ``acc_drop`` (that of ``card_n``), and the inference throughput measured in
this run: ``throughput_n<n>`` (examples per second of ``predict`` on ``throughput_examples``
examples, no gradients, one thread, the best of ``repeats`` rounds that time the models in turn) and ``speedup_n<n>`` (its
ratio to ``n = 1``). Throughputs are wall-clock measurements and vary with the machine's load.
"""
from __future__ import annotations

import time

import torch
from torch import nn

from ...errors import ConfigError
from ...models.datamux import MUXES, DataMux
from ...registry import Paper
from . import register_measure
from ._digits_mlp import digits_splits
from ._fit import one_thread


def _train(model: DataMux, x: torch.Tensor, y: torch.Tensor, seed: int, steps: int, lr: float, batch: int) -> DataMux:
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(x), (batch, model.n), generator=gen)
        opt.zero_grad()
        logits = model(x[idx])
        nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y[idx].reshape(-1)).backward()
        opt.step()
    return model.eval()


def throughputs(models: list[DataMux], x: torch.Tensor, repeats: int) -> list[float]:
    """Examples per second of ``predict(x)`` for each model (no gradients): the best of ``repeats``
    rounds, the models timed in turn within each round so that they share the machine's load."""
    best = [float("inf")] * len(models)
    with torch.no_grad():
        for m in models:
            m.predict(x[: 4 * m.n])  # warm-up
        for _ in range(repeats):
            for i, m in enumerate(models):
                t0 = time.perf_counter()
                m.predict(x)
                best[i] = min(best[i], time.perf_counter() - t0)
    return [len(x) / b for b in best]


@register_measure("datamux_digits", metric="acc_drop",
                  paper=Paper("DataMUX: Data Multiplexing for Neural Networks", 2022, "2202.09318"))
def datamux_digits(seed: int, *, width: int = 128, depth: int = 3, steps: int = 1500, lr: float = 1e-3,
                   batch: int = 64, ns: tuple[int, ...] | list[int] = (1, 2, 4, 8), mux: str = "hadamard",
                   card_n: int = 2, throughput_examples: int = 4096, repeats: int = 5) -> dict[str, float]:
    ns = sorted({int(n) for n in ns})
    if width < 1 or depth < 1 or steps < 1 or batch < 1 or not lr > 0 or throughput_examples < 1 or repeats < 1:
        raise ConfigError(f"datamux_digits: need width, depth, steps, batch, throughput_examples, repeats >= 1 and "
                          f"lr > 0; got {width}, {depth}, {steps}, {batch}, {throughput_examples}, {repeats}, {lr}")
    if not ns or ns[0] != 1 or int(card_n) not in ns:
        raise ConfigError(f"datamux_digits: ns must include 1 (the plain model) and card_n; got ns {ns}, card_n {card_n}")
    if mux not in MUXES:
        raise ConfigError(f"datamux_digits: unknown mux {mux!r}; use one of {', '.join(MUXES)}")
    data = digits_splits()
    (x, y), (xt, yt) = data["train"], data["test"]
    bench = x[torch.randint(0, len(x), (throughput_examples,), generator=torch.Generator().manual_seed(seed))]
    out: dict[str, float] = {}
    models = []
    with one_thread(), torch.random.fork_rng():
        for n in ns:
            torch.manual_seed(seed)
            model = _train(DataMux(x.shape[1], int(y.max()) + 1, n=n, width=width, depth=depth, mux=mux, seed=seed),
                           x, y, seed, steps, lr, batch)
            with torch.no_grad():
                out[f"acc_n{n}"] = float((model.predict(xt).argmax(1) == yt).float().mean())
            out[f"params_n{n}"] = float(sum(p.numel() for p in model.parameters()))
            models.append(model)
        for n, rate in zip(ns, throughputs(models, bench, repeats)):
            out[f"throughput_n{n}"] = rate
    for n in ns:
        out[f"acc_drop_n{n}"] = out["acc_n1"] - out[f"acc_n{n}"]
        out[f"speedup_n{n}"] = out[f"throughput_n{n}"] / out["throughput_n1"]
    out["acc_drop"] = out[f"acc_drop_n{int(card_n)}"]
    return out
