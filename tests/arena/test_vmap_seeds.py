"""`layerlab run --vmap-seeds` and `--threads`: the seeds of a cell train as one vmapped group,
and every run keeps its id, its records and its results (to float tolerance)."""
import textwrap

import pytest
import torch

from layerlab.arena.executor import LocalExecutor, seed_groups
from layerlab.arena.runner import run_suite
from layerlab.arena.store import Store
from layerlab.arena.suite import expand, parse_suite
from layerlab.cli import main

SUITE = """
name = "vmapped"
seeds = [0, 1]
lr = [3e-3]
[train]
steps = 12
batch_size = 16
eval_every = 6
log_every = 3
[[tasks]]
name = "digits"
models = ["mlp"]
[[tasks]]
name = "parity"
params = { length = 8, n_eval = 64 }
models = ["attention"]
[[models]]
label = "mlp"
backbone = "classifier"
channel = "mlp"
d_model = 16
n_layers = 1
[[models]]
label = "attention"
backbone = "sequence"
mixer = "attention"
mixer_options = { n_heads = 2 }
d_model = 16
n_layers = 1
"""


def suite():
    import tomllib

    return parse_suite(tomllib.loads(textwrap.dedent(SUITE)))


def train(root, executor):
    from rich.console import Console

    store = Store(root)
    counts = run_suite(suite(), store, executor=executor, console=Console(quiet=True), show_board=False)
    return store, counts


def test_vmap_seeds_keeps_every_run_its_id_records_and_results(tmp_path):
    planned = {p.spec.run_id for p in expand(suite())}
    plain, counts = train(tmp_path / "plain", LocalExecutor(1, 1))
    assert counts == {"done": 4}
    vm, counts = train(tmp_path / "vmapped", LocalExecutor(1, 1, vmap_seeds=True))
    assert counts == {"done": 4}
    assert {r["run_id"] for r in vm.runs()} == {r["run_id"] for r in plain.runs()} == planned
    assert [len(g) for g in seed_groups(vm.root, sorted(planned))] == [2, 2]
    for rid in planned:
        assert vm.events(rid)[0].startswith("trained as one vmapped group with seeds 0, 1")
        assert not any("vmapped" in e for e in plain.events(rid))
        a, b = vm.metrics(rid), plain.metrics(rid)
        assert [(m["step"], m["split"], m["name"]) for m in a] == [(m["step"], m["split"], m["name"]) for m in b]
        assert [m["value"] for m in a] == pytest.approx([m["value"] for m in b], rel=1e-4, abs=1e-6)
        ra, rb = vm.results(rid), plain.results(rid)
        assert ra["test"] == pytest.approx(rb["test"], rel=1e-4, abs=1e-6)
        assert ra.keys() == rb.keys()
        row = vm.run(rid)
        assert (row["status"], row["step"], row["stop_reason"]) == ("done", 12, "steps")
        assert "x1 threads" in row["device"]


def test_threads_per_worker_and_vmap_seeds_in_a_pool(tmp_path):
    before = torch.get_num_threads()
    store, counts = train(tmp_path / "pool", LocalExecutor(2, 1, vmap_seeds=True))
    assert counts == {"done": 4}
    for r in store.runs():
        assert "x1 threads" in r["device"], r["device"]  # set in each worker
        assert store.events(r["run_id"])[0].startswith("trained as one vmapped group")
    assert torch.get_num_threads() == before


def test_threads_in_this_process_for_one_worker_are_restored(tmp_path, monkeypatch):
    import layerlab.arena.executor as executor

    seen = []
    real = executor.execute_group
    monkeypatch.setattr(executor, "execute_group", lambda *a, **k: (seen.append(torch.get_num_threads()),
                                                                    real(*a, **k))[1])
    before = torch.get_num_threads()
    want = 1 if before != 1 else 2
    store, counts = train(tmp_path / "one", LocalExecutor(1, want))
    assert counts == {"done": 4} and seen == [want] * 4
    assert torch.get_num_threads() == before


def test_cli_threads_must_be_positive(capsys):
    assert main(["run", "quick", "--threads", "0"]) == 2
    assert "--threads must be >= 1" in capsys.readouterr().err
    assert main(["check", "--all", "--threads", "-1", "--vmap-seeds"]) == 2
    assert "--threads must be >= 1" in capsys.readouterr().err
