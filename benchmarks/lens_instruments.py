"""The issue-17 instruments of the instruments helper: the time of each, in training steps of the
model it observes, and the overhead of their probes on a training run.

    python benchmarks/lens_instruments.py [--width 128] [--run-steps 1000] [--every 100]
                                          [--threads 1] [--skip-run]

Part 1, instruments, each called once through its public function (repeated, median, when a call
takes under 0.3 s), in seconds and in units of one training step (forward, backward, AdamW) of
the model it observes:
  - ``regions.line_regions``: 4 segments between digits examples through layerlab's classifier
    backbone (2 residual MLP blocks of width ``--width``, GELU: the count is the proxy there) and
    through an ``nn.Sequential`` ReLU MLP 64-w-w-10 (exact), beside the layer-wise reference
    ``mlp_line_regions`` on the same 4 segments;
  - ``lipschitz.local_lipschitz_bound``: the ReLU MLP at one digits example, eps 0.1;
  - ``capacity``: simulation of a 50-unit tanh ESN on 20,000 inputs and its empirical memory
    capacity (100 delays), and the linear closed form (1,000 delays) (unit: a step of the MLP);
  - ``information.information_plane``: every activation unit's output of the classifier on 256
    examples, 30 adaptive bins;
  - ``diffusion_entropy.dse`` and ``dsmi``: the classifier head's input on 256 examples;
  - ``depth.contributions`` and ``skip_effects`` of the classifier's 2 blocks on 256 examples;
  - ``layer_gradients.nuclear_norms`` of one batch's gradients of the classifier;
  - ``hash_codes.code_categorization`` (K-NN, K-Means, logistic regression on the MLP's codes,
    128 training and 128 test examples), ``convergent.sparse_prediction`` and ``spectral_groups``
    between the first hidden layers of two MLPs (256 examples), and ``rsa`` on 10 class means.
Part 2, probes: one ``Trainer.fit()`` of the classifier on `digits` (batch 64, ``--run-steps``)
without probes (first and last) and with each probe every ``--every`` steps (probe batch 256):
overhead in-run = (fit - its training time) / its training time (the Trainer's clock, so load
between fits does not enter) against the issue's 10%, the whole-fit ratio beside it, and whether
the training loss curve is bit-identical. Probes: regions (defaults: 1 segment, grid 128),
information_plane, diffusion_entropy, depth.

Timings on a loaded machine vary from run to run; compare the ratios within one run. This script
asserts nothing about time.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from layerlab.lens import (capacity, convergent, depth, diffusion_entropy, dynamics, hash_codes, information,
                           layer_gradients, lipschitz, regions, rsa)
from layerlab.models import build_model
from layerlab.spec import ModelSpec
from layerlab.tasks import build_task
from _lens_common import print_timings, relu_mlp, run_main, step_seconds

PROBES = ("regions", "information_plane", "diffusion_entropy", "depth")


def instruments(width: int) -> None:
    task = build_task("digits")
    torch.manual_seed(0)
    clf = build_model(ModelSpec(backbone="classifier", d_model=width, n_layers=2), task)
    mlp = relu_mlp(width)
    batch = task.train_batch(256, torch.Generator().manual_seed(0))
    x, y = batch.inputs.float(), batch.targets
    step_clf, step_mlp = step_seconds(clf, x, y), step_seconds(mlp, x, y)
    starts, ends = x[0:8:2], x[1:8:2]
    ws, bs = regions.mlp_weights(mlp)
    units = dynamics.capture(clf, x, dynamics.threshold_modules(clf), kind="output")
    head = dynamics.capture(clf, x, ["head"], kind="input")["head"]
    g = torch.Generator().manual_seed(0)
    A = torch.randn(50, 50, generator=g, dtype=torch.float64)
    A = 0.9 * A / torch.linalg.eigvals(A).abs().max()
    C, z = torch.randn(50, generator=g, dtype=torch.float64), torch.randn(20_000, generator=g, dtype=torch.float64)
    hidden = dynamics.capture(mlp, x, ["1"], kind="output")["1"]
    hidden2 = dynamics.capture(relu_mlp(width, seed=1), x, ["1"], kind="output")["1"]
    means = torch.stack([hidden[y == c].mean(0) for c in y.unique()])
    means_in = torch.stack([x[y == c].mean(0) for c in y.unique()])
    counts: dict[str, Any] = {}
    nn.functional.cross_entropy(clf(x), y).backward()
    grads = {n: p.grad.clone() for n, p in clf.named_parameters()}
    clf.zero_grad(set_to_none=True)

    def walk_clf() -> None:
        counts["clf"] = sum(r.n_regions for r in regions.line_regions(clf, starts, ends))

    def walk_mlp() -> None:
        counts["mlp"] = sum(r.n_regions for r in regions.line_regions(mlp, starts, ends))

    rows = [
        ("regions.line_regions, classifier, 4 segments", walk_clf, step_clf),
        ("regions.line_regions, ReLU MLP, 4 segments", walk_mlp, step_mlp),
        ("regions.mlp_line_regions (reference), 4 segments",
         lambda: [regions.mlp_line_regions(ws, bs, a, b) for a, b in zip(starts, ends)], step_mlp),
        ("lipschitz.local_lipschitz_bound, ReLU MLP, eps 0.1", lambda: lipschitz.local_lipschitz_bound(ws, bs, x[0], 0.1),
         step_mlp),
        ("capacity: ESN N=50, T=20000 + MC (100 delays)",
         lambda: capacity.memory_capacity(capacity.esn_states(A, C, z), z[100:], 100), step_mlp),
        ("capacity.linear_memory_capacity (1000 delays)", lambda: capacity.linear_memory_capacity(A, C, 1000), step_mlp),
        ("information.information_plane, classifier units", lambda: information.information_plane(
            {n: t.reshape(256, -1) for n, t in units.items()}, y), step_clf),
        ("diffusion_entropy.dse + dsmi, head input", lambda: (diffusion_entropy.dse(head), diffusion_entropy.dsmi(head, y)),
         step_clf),
        ("depth.contributions + skip_effects, classifier", lambda: (depth.contributions(clf, x), depth.skip_effects(clf, x)),
         step_clf),
        ("layer_gradients.nuclear_norms, classifier", lambda: layer_gradients.nuclear_norms(clf, grads), step_clf),
        ("hash_codes.code_categorization, ReLU MLP, 128/128", lambda: hash_codes.code_categorization(
            mlp, (x[:128], y[:128]), (x[128:], y[128:])), step_mlp),
        ("convergent.sparse_prediction, two MLP layers, lam 0.05", lambda: convergent.sparse_prediction(
            hidden, hidden2, 0.05, tol=1e-9), step_mlp),
        ("convergent.spectral_groups, two MLP layers, k 10", lambda: convergent.spectral_groups(
            hidden, hidden2, 10, generator=torch.Generator().manual_seed(0)), step_mlp),
        ("rsa.rdm + rdm_similarity, 10 class means", lambda: rsa.rdm_similarity(rsa.rdm(means), rsa.rdm(means_in)),
         step_mlp),
    ]
    print_timings(rows, width, step_clf, step_mlp)
    print(f"regions met by the 4 segments: classifier {counts['clf']}, ReLU MLP {counts['mlp']}")


def main() -> None:
    run_main(__doc__, instruments, PROBES)


if __name__ == "__main__":
    main()
