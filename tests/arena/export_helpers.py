"""A small real store for the export tests: a trained run with probes, a pending run in another suite,
and a derived run (what `layerlab compress` records). Trained once per test session; each test module
works on its own copy."""
from __future__ import annotations

import atexit
import shutil
import tempfile
import tomllib
from pathlib import Path

from rich.console import Console

from layerlab.arena.runner import run_suite
from layerlab.arena.store import Store
from layerlab.arena.suite import parse_suite
from layerlab.spec import ModelSpec, RunSpec, TaskSpec, TrainSpec

PROBED = """
name = "probed"
seeds = [0]
lr = [3e-3]
[train]
steps = 12
batch_size = 32
eval_every = 6
log_every = 3
[probes]
names = ["weights", "spectra"]
points = 3
[[tasks]]
name = "digits"
[[models]]
label = "mlp"
backbone = "classifier"
d_model = 16
n_layers = 1
"""

PENDING_SPEC = RunSpec(task=TaskSpec("parity", {"length": 8}), train=TrainSpec(steps=5),
                       model=ModelSpec(backbone="classifier", channel="mlp", d_model=16, n_layers=1), seed=3)


def build_store(root: Path) -> Store:
    """Train the `probed` suite (1 run, 12 steps, probes `weights` and `spectra`) into a store at
    `root`, register a run of suite `other` that never trained, and derive one run from the first."""
    store = Store(root)
    run_suite(parse_suite(tomllib.loads(PROBED)), store, console=Console(quiet=True), show_board=False)
    store.add_run(PENDING_SPEC, suite="other", labels={"task": "parity8", "model": "tiny-mlp"})
    parent = store.suite_rows("probed")[0]["run_id"]
    derived = store.add_derived("d" * 16, parent, {"technique": "magnitude", "level": 0.5, "level_kind": "sparsity",
                                                   "options": {"bias": False}, "seed": 0, "calibration": 8})
    store.finish(derived, status="done", step=1,
                 results={"test": {"accuracy": 0.125}, "savings": {"nonzero_ratio": 0.5}})
    return store


def trained_run_ids(store: Store) -> list[str]:
    return [r["run_id"] for r in store.suite_rows("probed")]


_BUILT: list[Path] = []


def store_copy(dest: Path) -> Store:
    """A copy, at `dest`, of the store `build_store` makes (built on the first call of the session)."""
    if not _BUILT:
        folder = Path(tempfile.mkdtemp(prefix="layerlab-export-test-"))
        atexit.register(shutil.rmtree, folder, True)
        build_store(folder / "store").close()
        _BUILT.append(folder / "store")
    shutil.copytree(_BUILT[0], dest)
    return Store(dest)
