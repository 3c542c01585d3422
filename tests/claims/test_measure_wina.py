"""The WINA-vs-TEAL digits measurement (arXiv:2505.19427): errors and accuracies are those of the
sparsified networks, s = 0 is exact, the statistics are the worst case over the sparsities."""
from __future__ import annotations

import pytest
import torch

from layerlab.claims.measures import get_measure
from layerlab.claims.measures._digits_mlp import digits_splits
from layerlab.claims.measures._fit import one_thread
from layerlab.claims.measures.wina import relative_excess, train
from layerlab.compress.wina import n_kept
from layerlab.errors import ConfigError

OPTS = {"width": 16, "depth": 2, "steps": 60, "lr": 1e-2}


def test_measure_matches_a_direct_computation_and_zero_sparsity_is_exact():
    out = get_measure("wina_vs_teal_digits")(3, sparsities=[0.0, 0.5], **OPTS)
    for rule in ("wina", "winat", "teal"):
        assert out[f"out_err_{rule}_s0"] < 1e-5 and out[f"layer_err_{rule}_s0"] < 1e-5  # (winat: rotation round-off)
        assert out[f"acc_{rule}_s0"] == out["acc_dense"]
    assert out["layer_err_wina_s0"] == out["layer_err_teal_s0"] == 0.0
    # the statistics are the worst case over the sparsities
    for suffix, rule in (("", "wina"), ("_transform", "winat")):
        assert out["layer_excess" + suffix] == pytest.approx(max(
            relative_excess(out[f"layer_err_{rule}_s{t}"], out[f"layer_err_teal_s{t}"]) for t in (0, 50)), abs=1e-12)
        assert out["acc_deficit" + suffix] == pytest.approx(max(
            out[f"acc_teal_s{t}"] - out[f"acc_{rule}_s{t}"] for t in (0, 50)), abs=1e-12)
    # the first layer's error at s = 0.5, recomputed from its definition with the same trained network
    data = digits_splits()
    with one_thread():
        net = train(*data["train"], 3, activation="silu", **OPTS)
    x = data["test"][0]
    w, b = net[0].weight.detach(), net[0].bias.detach()
    with torch.no_grad():
        h = net[1](net[0](x))
    k1, k2 = n_kept(64, 0.5), n_kept(16, 0.5)
    errs = []
    for lin, inp, k in ((net[0], x, k1), (net[2], h, k2)):
        w, b = lin.weight.detach(), lin.bias.detach()
        score = inp.abs() * w.norm(dim=0)  # WINA
        keep = torch.zeros_like(inp).scatter_(1, score.topk(k, dim=1).indices, 1.0)
        errs.append(float(((inp * keep) @ w.T - inp @ w.T).norm() / (inp @ w.T + b).norm()))
    assert out["layer_err_wina_s50"] == pytest.approx(sum(errs) / 2, rel=1e-5)


def test_text_measure_zero_sparsity_is_exact_and_statistics_are_worst_cases():
    out = get_measure("wina_vs_teal_text")(0, d_model=16, n_layers=1, steps=3, batch_size=4, length=16,
                                          eval_tokens=256, sparsities=[0.0, 0.5])
    for rule in ("wina", "teal"):
        assert out[f"layer_err_{rule}_s0"] == 0.0 and out[f"bpc_{rule}_s0"] == out["bpc_dense"]
    assert out["layer_err_wina_s50"] > 0 and out["layer_err_teal_s50"] > 0
    assert out["bpc_deficit"] == pytest.approx(max(out[f"bpc_wina_s{t}"] - out[f"bpc_teal_s{t}"] for t in (0, 50)),
                                               abs=1e-12)


def test_bad_options_are_config_errors():
    m = get_measure("wina_vs_teal_digits")
    with pytest.raises(ConfigError, match="activation"):
        m(0, activation="tanh", **OPTS)
    with pytest.raises(ConfigError, match="sparsities"):
        m(0, sparsities=[1.5], **OPTS)
