"""A store filled without training (for the HTML tests) and hostile text to escape."""
from __future__ import annotations

from pathlib import Path

import pytest

from layerlab.arena.store import Store
from layerlab.spec import ModelSpec, OptimSpec, RunSpec, TaskSpec, TrainSpec

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)> & "quotes"'
# test accuracy per (model, seed): the means are 0.80 and 0.70, 3 seeds each
TEST_ACC = {"mlp": (0.79, 0.80, 0.81), "swiglu": (0.68, 0.70, 0.72)}


def fake_suite(store: Store, suite: str = "toy", models: dict[str, tuple[float, ...]] | None = None,
               label_prefix: str = "") -> dict[str, list[str]]:
    """Register finished runs of `suite` on digits with given test accuracies (one per seed),
    validation curves at steps 10 and 20, and train timings; returns model label -> run ids."""
    out: dict[str, list[str]] = {}
    for model, accs in (models or TEST_ACC).items():
        for seed, acc in enumerate(accs):
            spec = RunSpec(task=TaskSpec("digits"), model=ModelSpec(backbone="classifier", channel=model, d_model=16,
                                                                     n_layers=1),
                           train=TrainSpec(steps=20), optim=OptimSpec(lr=1e-2), seed=seed)
            label = label_prefix + model
            rid = store.add_run(spec, suite=suite, labels={"task": "digits", "model": label, "metric": "accuracy",
                                                             "higher_is_better": True, "chance": 0.1})
            store.write_metrics(rid, [(10, "val", "accuracy", acc - 0.2), (20, "val", "accuracy", acc),
                                      (10, "train", "loss", 1.0), (20, "train", "loss", 0.5)])
            store.finish(rid, status="done", n_params=1000 + seed,
                         results={"val": {"accuracy": acc}, "test": {"accuracy": acc},
                                  "train": {"time_per_step_ms": 2.5}})
            out.setdefault(label, []).append(rid)
    return out


def verdict_record(card_id: str, run_ids: list[str], **over) -> dict:
    rec = {"card_id": card_id, "card_hash": "0123456789abcdef", "paper": "2002.05202",
           "claim": "SwiGLU beats an MLP at equal parameters", "kind": "comparative",
           "rule": {"type": "difference", "model": "swiglu", "baseline": "mlp", "margin": 0.0},
           "verdict": "contradicted", "observed": -0.1, "lo": -0.13, "hi": -0.07,
           "details": {"rule": "swiglu − mlp on digits > 0", "bound": 0.0, "metric": "accuracy", "split": "test",
                       "models": {"mlp": {"task": "digits", "mean": 0.8, "lo": 0.775, "hi": 0.825,
                                          "values": {"0": 0.79, "1": 0.8, "2": 0.81}, "lr": 0.01, "n_params": 1000,
                                          "run_ids": run_ids[:3]},
                                  "swiglu": {"task": "digits", "mean": 0.7, "lo": 0.65, "hi": 0.75,
                                             "values": {"0": 0.68, "1": 0.7, "2": 0.72}, "lr": 0.01,
                                             "n_params": 1000, "run_ids": run_ids[3:]}}},
           "run_ids": run_ids, "suite": "toy", "git_revision": "abc1234", "seconds": 1.5}
    rec.update(over)
    return rec


@pytest.fixture
def toy_store(tmp_path: Path) -> Store:
    return Store(tmp_path / "runs")
