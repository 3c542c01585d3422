"""B-cosification on digits: a converted trained MLP against a B-cos MLP trained from scratch.

Paper: Arya, Rao, Böhle & Schiele, "B-cosification: Transforming Deep Neural Networks to be
Inherently Interpretable", 2024, arXiv:2411.00715 (abstract: B-cosified models are on par with
B-cos models trained from scratch in interpretability "while often outperforming them in terms of
classification performance at a fraction of the training cost").

Per seed: a ReLU MLP ``64 -> width -> width -> 10`` (with biases) is trained on layerlab's digits
training split for ``pre_steps`` (Adam, ``lr``): the "pretrained" network. ``bcosify`` converts it
(input encoding ``[x, 1 - x]``, biases dropped, ReLUs kept) and it is fine-tuned for ``ft_steps``
while B rises linearly from 1 to ``B`` over the first ``ramp_steps`` (``b_schedule``). A second
network of the same converted architecture, from a fresh random initialisation at B = ``B``, is
trained from scratch for ``scratch_steps`` (default: the fine-tuning budget). Both end at B = ``B``; test accuracies::

    deficit = acc_scratch - acc_bcosified       (<= 0: the converted network is at least as good)

plus ``acc_original`` (the pretrained ReLU MLP) and ``acc_bcosified``, ``acc_scratch``.
"""
from __future__ import annotations

import torch
from torch import nn

from ...errors import ConfigError
from ...models.bcosification import b_schedule, bcosify, set_B
from ...registry import Paper
from . import register_measure
from ._digits_mlp import accuracy, digits_splits, relu_mlp, train_mlp


def _finetune(net: nn.Module, x: torch.Tensor, y: torch.Tensor, seed: int, *, steps: int, lr: float,
              ramp_steps: int, B: float, batch: int = 64) -> None:
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed + 7919)
    net.train()
    for step in range(steps):
        set_B(net, b_schedule(step, ramp_steps=ramp_steps, B_end=B))
        idx = torch.randint(0, len(x), (batch,), generator=gen)
        opt.zero_grad()
        nn.functional.cross_entropy(net(x[idx]), y[idx]).backward()
        opt.step()
    set_B(net, B)
    net.eval()


@register_measure("bcosification_digits", metric="deficit",
                  paper=Paper("B-cosification: Transforming Deep Neural Networks to be Inherently Interpretable",
                              2024, "2411.00715"))
def bcosification_digits(seed: int, *, width: int = 128, pre_steps: int = 1500, ft_steps: int = 300,
                         ramp_steps: int = 150, B: float = 2.0, lr: float = 1e-3,
                         scratch_steps: int | None = None) -> dict[str, float]:
    scratch_steps = ft_steps if scratch_steps is None else scratch_steps
    if min(width, pre_steps, ft_steps, scratch_steps) < 1 or ramp_steps < 0 or not lr > 0 or not B >= 1:
        raise ConfigError(f"bcosification_digits: need width, pre_steps, ft_steps, scratch_steps >= 1, ramp_steps >= 0, lr > 0, "
                          f"B >= 1; got {width}, {pre_steps}, {ft_steps}, {ramp_steps}, {lr}, {B}")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matmuls: extra threads only wait on each other on a loaded machine
    try:
        return _run(seed, width, pre_steps, ft_steps, ramp_steps, B, lr, scratch_steps)
    finally:
        torch.set_num_threads(threads)


def _run(seed: int, width: int, pre_steps: int, ft_steps: int, ramp_steps: int, B: float, lr: float,
         scratch_steps: int) -> dict[str, float]:
    data = digits_splits()
    (x, y), (xt, yt) = data["train"], data["test"]
    original = train_mlp(x, y, seed, width=width, depth=2, steps=pre_steps, lr=lr, n_classes=10)
    with torch.random.fork_rng():
        converted = bcosify(original, B=1.0, encode_input=True)
        _finetune(converted, x, y, seed, steps=ft_steps, lr=lr, ramp_steps=ramp_steps, B=B)
        torch.manual_seed(seed + 104729)
        scratch = bcosify(relu_mlp(x.shape[1], width, 2, 10), B=B, encode_input=True)
        _finetune(scratch, x, y, seed, steps=scratch_steps, lr=lr, ramp_steps=0, B=B)
    acc_b, acc_s = accuracy(converted, xt, yt), accuracy(scratch, xt, yt)
    return {"deficit": acc_s - acc_b, "acc_original": accuracy(original, xt, yt), "acc_bcosified": acc_b,
            "acc_scratch": acc_s}
