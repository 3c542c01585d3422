"""The issue-17b instruments of lens.certify, lens.inductive_bias and lens.feature_merging: the time of
one call, in seconds and in training steps of the model it observes.

    python benchmarks/lens_certify.py [--threads 1] [--adv-steps 300]

Models: a ReLU MLP 64-32-16-10 on `digits` (PGD adversarially trained for ``--adv-steps`` steps at
l_inf radius 0.05, as in the card sdp-certification-closes-lp-gap-digits) and a ReLU MLP
64-256-256-10 (standard training, 300 steps), each with its training step (forward, backward,
AdamW, batch 256) as the unit. Calls, each once through its public function (repeated, median,
when a call takes under 0.3 s):
  - ``certify``: interval and layer-wise LP pre-activation bounds, the interval and LP margin
    bounds, the BM-r SDP bound (default settings) and the exact margin by MILP, for one test
    point of the adversarial MLP against its runner-up class at radius 0.05;
  - ``inductive_bias``: 1000 hypotheses of the RBF GP on a 100/50-point ridge task in 8-d, and the
    scaled noncentral chi-squared fit of their errors (unit: the 64-32-16-10 step);
  - ``feature_merging``: IFM of the 64-256-256-10 MLP at beta 0 (nothing merges) and 0.8.
Timings on a loaded machine vary from run to run; compare the ratios within one run. This script
asserts nothing about time.
"""
from __future__ import annotations

import argparse
import math

import torch

from layerlab.claims.measures.inductive_bias_dimension import ridge_task
from layerlab.claims.measures._fit import train_relu_mlp
from layerlab.lens import certify, feature_merging, inductive_bias
from layerlab.tasks import build_task
from _lens_common import step_seconds, timed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--adv-steps", type=int, default=300)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    task = build_task("digits")
    train, test = task.train_batch(0, torch.Generator()), task.eval_set("test")
    x, y = train.inputs.float(), train.targets
    small = train_relu_mlp(x, y, (32, 16), 0, args.adv_steps, 3e-3, eps=0.05, pgd_steps=7)
    wide = train_relu_mlp(x, y, (256, 256), 0, 300, 1e-3, eps=0.0, pgd_steps=1)
    batch = task.train_batch(256, torch.Generator().manual_seed(0))
    step_small, step_wide = step_seconds(small, batch.inputs, batch.targets), step_seconds(wide, batch.inputs, batch.targets)

    ws, bs = certify.mlp_weights(small)
    with torch.no_grad():
        logits = small(test.inputs)
    i = int((logits.argmax(1) == test.targets).nonzero()[0])
    x0, label, target, eps = test.inputs[i].double(), int(test.targets[i]), int(logits[i].topk(2).indices[1]), 0.05
    lp_pre = certify.lp_preactivation_bounds(ws, bs, x0, eps)
    prob = certify.problem(ws, bs, x0, eps, lp_pre, label=label, target=target)
    values: dict[str, float] = {}

    def sdp() -> None:
        res = certify.sdp_bound(prob)
        values["sdp"], values["eig"] = res.bound, res.eig_min

    xtr, ytr, xte, yte = ridge_task(8, 0, 100, 50)
    errs = inductive_bias.gp_hypothesis_errors(xtr, ytr, xte, yte, 1000, lengthscale=0.3)
    rows = [
        ("certify.interval_preactivation_bounds", lambda: certify.interval_preactivation_bounds(ws, bs, x0, eps), step_small),
        ("certify.lp_preactivation_bounds (layer-wise LP)", lambda: certify.lp_preactivation_bounds(ws, bs, x0, eps), step_small),
        ("certify.interval_bound", lambda: certify.interval_bound(prob), step_small),
        ("certify.lp_bound (triangle LP)", lambda: values.__setitem__("lp", certify.lp_bound(prob)), step_small),
        ("certify.sdp_bound (BM-r + dual certificate)", sdp, step_small),
        ("certify.exact_margin (MILP)", lambda: values.__setitem__("exact", certify.exact_margin(prob)), step_small),
        ("inductive_bias.gp_hypothesis_errors (1000, 8-d)", lambda: inductive_bias.gp_hypothesis_errors(
            xtr, ytr, xte, yte, 1000, lengthscale=0.3), step_small),
        ("inductive_bias.inductive_bias (ncx2 fit, 1000)", lambda: values.__setitem__(
            "bits", inductive_bias.inductive_bias(errs, 0.25)), step_small),
        ("feature_merging.merge_model, 64-256-256-10, beta 0", lambda: feature_merging.merge_model(wide, 0.0), step_wide),
        ("feature_merging.merge_model, 64-256-256-10, beta 0.8", lambda: values.__setitem__(
            "complexity", feature_merging.merge_model(wide, 0.8)[1].complexity), step_wide),
    ]
    print(f"training step (batch 256, AdamW): MLP 64-32-16-10 {step_small * 1e3:.2f} ms, "
          f"MLP 64-256-256-10 {step_wide * 1e3:.2f} ms")
    print(f"certification problem: {prob.n_unstable} unstable units, {prob.size} SDP variables (1 + inputs + unstable)")
    print(f"{'instrument':52} {'seconds':>9} {'steps':>9}")
    for label_, fn, unit in rows:
        s = timed(fn)
        print(f"{label_:52} {s:9.4f} {s / unit:9.1f}")
    print(f"margin bounds: LP {values['lp']:.4f}, SDP {values['sdp']:.4f} (lambda_min(S) {values['eig']:.1e}), "
          f"exact {values['exact']:.4f}; inductive bias at eps 0.25: {values['bits']:.1f} bits "
          f"({math.log2(1000):.1f} resolvable by counting); IFM complexity at beta 0.8: {values['complexity']}")


if __name__ == "__main__":
    main()
