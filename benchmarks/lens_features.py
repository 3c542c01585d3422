"""The issue-17b feature instruments (VCI, WDiscOOD, PatternNet, interaction bases): the time of each,
in training steps of the model it observes, and the overhead of their probes on a training run.

    python benchmarks/lens_features.py [--width 128] [--run-steps 1000] [--every 100]
                                       [--threads 1] [--skip-run]

Part 1, instruments, each called once through its public function (repeated, median, when a call
takes under 0.3 s), in seconds and in units of one training step (forward, backward, AdamW on a
batch of 256) of the model it observes:
  - ``variability.vci`` of the classifier's head input on 256 digits examples, and
    ``vci_reference`` (the d x d pinv formula) beside it;
  - ``wdiscood.fit_wlda`` on those features and ``wdiscood_score`` + ``mahalanobis_score`` of
    256 examples;
  - ``patterns.fit_patterns`` (two-component) of a ReLU MLP 64-w-w-10 on 256 examples,
    ``signal_quality`` (filter estimator, held out) of its first layer, ``pattern_attribution``;
  - ``interaction_basis.interaction_bases`` (LIB and PCA) of that MLP on 256 examples,
    ``interaction_graph`` in LIB and ``degeneracy``.
Part 2, probes: one ``Trainer.fit()`` of the classifier (``--width``, 2 blocks) on `digits` (batch
64, ``--run-steps``) without probes (first and last) and with each probe every ``--every`` steps
(probe batch 256): overhead in-run = (fit - its training time) / its training time (the Trainer's
clock) against the issue's 10%, the whole-fit ratio beside it, and whether the training loss curve
is bit-identical. Probes: variability, degeneracy.

Timings on a loaded machine vary from run to run; compare the ratios within one run. This script
asserts nothing about time.
"""
from __future__ import annotations

from typing import Any

import torch

from layerlab.lens import dynamics, interaction_basis, patterns, variability, wdiscood
from layerlab.models import build_model
from layerlab.spec import ModelSpec
from layerlab.tasks import build_task
from _lens_common import print_timings, relu_mlp, run_main, step_seconds

PROBES = ("variability", "degeneracy")


def instruments(width: int) -> None:
    task = build_task("digits")
    torch.manual_seed(0)
    clf = build_model(ModelSpec(backbone="classifier", d_model=width, n_layers=2), task)
    mlp = relu_mlp(width)
    batch = task.train_batch(256, torch.Generator().manual_seed(0))
    x, y = batch.inputs.float(), batch.targets
    held = task.train_batch(256, torch.Generator().manual_seed(1)).inputs.float()
    step_clf, step_mlp = step_seconds(clf, x, y), step_seconds(mlp, x, y)
    head = dynamics.capture(clf, x, ["head"], kind="input")["head"]
    model = wdiscood.fit_wlda(head, y)
    fitted = patterns.fit_patterns(mlp, x)
    w0 = mlp[0].weight.detach()
    lib = interaction_basis.interaction_bases(mlp, x, "lib")
    sizes: dict[str, Any] = {}

    def bases(kind: str) -> None:
        sizes[kind] = [b.size for b in interaction_basis.interaction_bases(mlp, x, kind)]

    rows = [
        ("variability.vci, head input (256 x d)", lambda: variability.vci(head, y), step_clf),
        ("variability.vci_reference (pinv formula)", lambda: variability.vci_reference(head, y), step_clf),
        ("wdiscood.fit_wlda, head input", lambda: wdiscood.fit_wlda(head, y), step_clf),
        ("wdiscood + mahalanobis scores, 256 examples",
         lambda: (wdiscood.wdiscood_score(model, head), wdiscood.mahalanobis_score(model, head)), step_clf),
        ("patterns.fit_patterns (two-component), ReLU MLP", lambda: patterns.fit_patterns(mlp, x), step_mlp),
        ("patterns.signal_quality (filter), layer 1, held out",
         lambda: patterns.signal_quality(x, w0, "filter", x_eval=held), step_mlp),
        ("patterns.pattern_attribution, 256 examples", lambda: patterns.pattern_attribution(mlp, x, y, fitted), step_mlp),
        ("interaction_bases (LIB), ReLU MLP", lambda: bases("lib"), step_mlp),
        ("interaction_bases (PCA), ReLU MLP", lambda: bases("pca"), step_mlp),
        ("interaction_graph (LIB)", lambda: interaction_basis.interaction_graph(mlp, x, lib), step_mlp),
        ("interaction_basis.degeneracy", lambda: interaction_basis.degeneracy(mlp, x), step_mlp),
    ]
    print_timings(rows, width, step_clf, step_mlp)
    print(f"basis sizes per node layer: LIB {sizes['lib']}, PCA {sizes['pca']}")


def main() -> None:
    run_main(__doc__, instruments, PROBES)


if __name__ == "__main__":
    main()
