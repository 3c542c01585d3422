"""The SparseProp fine-tuning measurement (arXiv:2302.04852): the sparse and the dense masked fine-tunings
of a magnitude-pruned digits MLP agree (float64), the support has the pruned density, bad options fail."""
from __future__ import annotations

import pytest

from layerlab.claims.measures import get_measure
from layerlab.errors import ConfigError


def test_sparse_and_masked_fine_tuning_agree_on_a_pruned_mlp():
    out = get_measure("sparseprop_finetune_digits")(1, width=32, depth=2, steps=60, sparsity=0.9, finetune_steps=15,
                                                    finetune_lr=1e-2)
    assert out["error"] <= 1e-10
    assert out["error"] == max(out["curve_error"], out["grad_error"], out["weight_error"])
    # every Linear pruned to 90% (round(0.9 n) zeros per layer): the kept fraction over all three layers
    sizes = [64 * 32, 32 * 32, 32 * 10]
    assert out["density"] == pytest.approx(sum(n - round(0.9 * n) for n in sizes) / sum(sizes), abs=1e-12)
    assert out["loss_last"] < out["loss_first"]  # fine-tuning learned
    assert out["speedup"] == pytest.approx(out["time_masked_s"] / out["time_sparse_s"], rel=1e-12)
    assert 0 <= out["acc_pruned"] <= 1 and 0 <= out["acc_finetuned"] <= 1


def test_bad_options_are_config_errors():
    with pytest.raises(ConfigError, match="sparsity"):
        get_measure("sparseprop_finetune_digits")(0, sparsity=1.0)
    with pytest.raises(ConfigError, match="finetune_steps"):
        get_measure("sparseprop_finetune_digits")(0, finetune_steps=0)
