"""Measure recurformer_text on a tiny budget: the measured cache ratio is the kept fraction of heads
plus the recurrences' states, and the reported excess is the difference it names."""
import math

from layerlab.claims.measures import get_measure


def test_tiny_run_reports_measured_cache_ratio_and_excess():
    out = get_measure("recurformer_text")(0, d_model=16, n_layers=1, n_heads=4, steps=2, batch_size=4, length=16,
                                          eval_tokens=256, levels=[0.5], card_level=0.5, finetune_steps=1)
    # 1 layer, 4 heads of width 4, one test window of 16 tokens: K, V = 2 * 16 * 16 scalars; half the heads
    # kept -> 256, plus 2 LRU states of 4 complex numbers (16 reals)
    assert out["cache_scalars_dense"] == 2 * 16 * 16
    assert math.isclose(out["cache_ratio_rf0.5"], (256 + 16) / 512, rel_tol=1e-12)
    assert math.isclose(out["bpc_excess"], out["bpc_rf0.5"] - out["bpc_continued"], abs_tol=1e-12)
    assert 0.0 <= out["recency_min"] <= out["recency_max"] <= 1.0
