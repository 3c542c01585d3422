"""Fuzzing settings and the stores the fuzz tests try to damage.

By default (CI and `make test`) every fuzz test runs a fixed number of examples from a seed derived
from the test itself (``derandomize=True``), so every run tries the same inputs and is reproducible.
Locally, ``LAYERLAB_FUZZ=deep`` draws fresh random inputs, ten times as many (``LAYERLAB_FUZZ_SCALE=N``
to choose the factor); a failure prints the example and a ``@reproduce_failure`` blob.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from .harness import TRIED, cli, snapshot

_COMMON = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
               print_blob=True)
settings.register_profile("ci", derandomize=True, database=None, **_COMMON)
settings.register_profile("deep", derandomize=False, **_COMMON)
PROFILE = os.environ.get("LAYERLAB_FUZZ", "ci")
if PROFILE not in ("ci", "deep"):
    raise pytest.UsageError(f"LAYERLAB_FUZZ={PROFILE!r}: use 'ci' (fixed seed, the default) or 'deep'")
settings.load_profile(PROFILE)
SCALE = int(os.environ.get("LAYERLAB_FUZZ_SCALE", "10" if PROFILE == "deep" else "1"))


def examples(n: int) -> int:
    """How many examples a test tries: `n` in CI, `n` x LAYERLAB_FUZZ_SCALE locally."""
    return n * SCALE


# One tiny finished run (digits, classifier, 3 steps): runs, metrics, results, a checkpoint; plus an
# event and a verdict row, so that "no new rows" is checked against tables that have rows.
TINY = """
name = "fz-base"
seeds = [{seed}]
lr = [0.01]
train = {{ steps = 3, batch_size = 16, eval_every = 0, log_every = 1 }}
[[tasks]]
name = "digits"
[[models]]
label = "mlp"
backbone = "classifier"
channel = "mlp"
d_model = 8
n_layers = 1
"""


def _make_store(root: Path, seed: int) -> Path:
    from layerlab.arena.store import Store

    suite = root.parent / f"{root.name}.toml"
    suite.write_text(TINY.format(seed=seed))
    got = cli(["run", str(suite), "--store", str(root)])
    assert got.code == 0, str(got)
    store = Store(root)
    run_id = store.runs()[0]["run_id"]
    store.add_event(run_id, "fuzz: an event row")
    store.add_verdict({"card_id": "fz-card", "card_hash": "0" * 16, "verdict": "inconclusive",
                       "observed": None, "lo": None, "hi": None, "run_ids": [run_id]})
    store.close()
    assert snapshot(root)["rows"]["runs"] == 1
    return root


@pytest.fixture(scope="session")
def store(tmp_path_factory) -> Path:
    """A store with one finished run, an event and a verdict; fuzz tests must leave it as it is."""
    return _make_store(tmp_path_factory.mktemp("fuzz") / "store", seed=0)


@pytest.fixture(scope="session")
def foreign_run_id(tmp_path_factory) -> str:
    """The id of a run that exists in another store only."""
    from layerlab.arena.store import Store

    root = _make_store(tmp_path_factory.mktemp("fuzz-foreign") / "store", seed=1)
    store = Store(root)
    rid = store.runs()[0]["run_id"]
    store.close()
    return rid


@pytest.fixture(scope="session")
def scratch(tmp_path_factory) -> Path:
    """A directory for the files the fuzz tests write (suites, cards, things that are not stores)."""
    return tmp_path_factory.mktemp("fuzz-files")


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if TRIED:
        terminalreporter.write_line(f"fuzz ({PROFILE} profile): {len(TRIED)} distinct bad inputs tried, each refused "
                                    f"in one line with exit status 2 and the store unchanged"
                                    + ("" if exitstatus == 0 else " (some failed: see above)"))
