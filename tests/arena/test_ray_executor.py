"""The Ray executor on a local Ray runtime (2 CPUs, loopback only).

- a small suite gives the same run ids, metrics and results as the local executor;
- a Ray worker killed mid-run: Ray retries the task, which resumes from its checkpoint; every step is
  recorded once;
- a driver killed mid-suite (``layerlab run --executor ray``): a second driver finishes it; nothing
  lost, nothing trained twice, checked as the local SIGKILL test checks;
- without Ray installed, a clear error says how to install it.
"""
import os
import signal
import subprocess
import sys
import threading
import time
import tomllib

import pytest

# A runtime of this machine alone binds to the loopback address (before Ray's first import).
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
import ray  # noqa: E402  the test extra installs it (make test); a missing Ray fails here rather than skipping
from rich.console import Console  # noqa: E402

from layerlab.arena.executor import LocalExecutor  # noqa: E402
from layerlab.arena.ray_executor import RayExecutor  # noqa: E402
from layerlab.arena.runner import run_suite  # noqa: E402
from layerlab.arena.store import Store  # noqa: E402
from layerlab.arena.suite import expand, parse_suite  # noqa: E402
from layerlab.errors import ConfigError  # noqa: E402

SUITE = """
name = "onray"
seeds = {seeds}
lr = [3e-3]
[train]
steps = {steps}
batch_size = 32
eval_every = 50
log_every = 1
[[tasks]]
name = "digits"
[[models]]
label = "mlp"
backbone = "classifier"
channel = "mlp"
d_model = 32
n_layers = 1
"""
TIMINGS = ("time_per_step_ms",)  # wall-clock figures differ between any two runs


@pytest.fixture(scope="module")
def ray_runtime():
    ctx = ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    assert ctx.address_info["gcs_address"].startswith("127.0.0.1:")  # loopback only
    yield ctx.address_info["gcs_address"]
    ray.shutdown()


def _suite(steps: int, seeds: list[int]):
    return parse_suite(tomllib.loads(SUITE.format(steps=steps, seeds=seeds)))


def _quiet() -> Console:
    return Console(file=open(os.devnull, "w"))


def _results_without_timings(store: Store, rid: str) -> dict:
    return {split: {k: v for k, v in m.items() if k not in TIMINGS} for split, m in store.results(rid).items()}


def test_same_results_as_the_local_executor(tmp_path, ray_runtime):
    suite = _suite(60, [0, 1])
    ray_store, local_store = Store(tmp_path / "ray"), Store(tmp_path / "local")
    run_suite(suite, ray_store, executor=RayExecutor(workers=2, threads=1), console=_quiet(), show_board=False)
    run_suite(suite, local_store, executor=LocalExecutor(1, 1), console=_quiet(), show_board=False)
    ids = {r["run_id"] for r in ray_store.runs()}
    assert ids == {r["run_id"] for r in local_store.runs()} == {p.spec.run_id for p in expand(suite)}
    for rid in ids:
        assert ray_store.run(rid)["status"] == "done" and ray_store.run(rid)["attempts"] == 1
        assert ray_store.metrics(rid) == local_store.metrics(rid)  # every value, bit for bit
        assert _results_without_timings(ray_store, rid) == _results_without_timings(local_store, rid)
        assert ray_store.checkpoint_path(rid).exists()  # kept in the store for lens and compress
        assert ray_store.run(rid)["worker_pid"] != os.getpid()  # trained by a Ray worker


def test_a_killed_worker_is_retried_and_resumes(tmp_path, ray_runtime):
    suite = _suite(600, [0])
    store = Store(tmp_path / "store")
    (rid,) = [p.spec.run_id for p in expand(suite)]
    killed: list[int] = []

    def kill_the_worker() -> None:
        watcher = Store(tmp_path / "store")
        deadline = time.time() + 240
        while time.time() < deadline:
            time.sleep(0.2)
            try:
                row = watcher.run(rid)
            except KeyError:
                continue
            if row["status"] == "running" and row["step"] > 120:  # past a checkpoint (every 50 steps)
                os.kill(row["worker_pid"], signal.SIGKILL)
                killed.append(row["step"])
                return

    killer = threading.Thread(target=kill_the_worker)
    killer.start()
    run_suite(suite, store, executor=RayExecutor(workers=1, threads=1), console=_quiet(), show_board=False)
    killer.join()
    assert killed, "the run never got past its first checkpoints"
    row = store.run(rid)
    assert row["status"] == "done" and row["attempts"] == 2
    assert any("resumed from checkpoint" in e for e in store.events(rid))
    steps = [m["step"] for m in store.metrics(rid, split="train", name="loss")]
    assert steps == list(range(1, 601))  # every step once


def _layerlab(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "layerlab.cli", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)


def test_a_killed_driver_loses_and_duplicates_nothing(tmp_path, ray_runtime):
    text = SUITE.format(steps=300, seeds=[0, 1, 2])
    (tmp_path / "onray.toml").write_text(text)
    root = tmp_path / "store"
    args = ("run", str(tmp_path / "onray.toml"), "--store", str(root), "--executor", "ray",
            "--address", ray_runtime, "--workers", "2", "--threads", "1")
    proc = _layerlab(*args)
    deadline, killed_states = time.time() + 240, None
    while time.time() < deadline:
        time.sleep(0.2)
        assert proc.poll() is None, proc.stderr.read().decode()
        if not (root / "store.sqlite").exists():
            continue
        runs = Store(root).runs()
        if [r for r in runs if r["status"] == "done"] and [r for r in runs if r["status"] == "running" and r["step"] > 60]:
            killed_states = {r["run_id"]: (r["status"], r["step"]) for r in runs}
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
            break
    assert killed_states is not None, "the suite never reached a state with one run done and one mid-way"
    time.sleep(1.0)  # Ray cancels the dead driver's tasks
    store = Store(root)
    finished_before = {r["run_id"]: r["finished"] for r in store.runs() if r["status"] == "done"}

    again = _layerlab(*args)
    _, err = again.communicate(timeout=300)
    assert again.returncode == 0, err.decode()
    planned = {p.spec.run_id for p in expand(parse_suite(tomllib.loads(text)))}
    runs = store.runs()
    assert {r["run_id"] for r in runs} == planned and all(r["status"] == "done" for r in runs)
    for r in runs:
        if r["run_id"] in finished_before:  # finished before the kill: not run again
            assert r["finished"] == finished_before[r["run_id"]] and r["attempts"] == 1
        steps = [m["step"] for m in store.metrics(r["run_id"], split="train", name="loss")]
        assert steps == list(range(1, 301)), (r["run_id"], [s for s in steps if steps.count(s) > 1][:5], sorted(set(range(1, 301)) - set(steps))[:5], store.events(r["run_id"]))
    resumed = [rid for rid, (st, step) in killed_states.items() if st == "running" and step > 50]
    assert resumed and all(any("resumed from checkpoint" in e for e in store.events(rid)) for rid in resumed)
    assert store.leases() == []


def test_without_ray_the_error_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    with pytest.raises(ConfigError, match=r"pip install 'layerlab\[ray\]'"):
        RayExecutor()


def test_ray_options_are_checked(ray_runtime):
    with pytest.raises(ConfigError, match="--workers must be >= 1"):
        RayExecutor(workers=0)
    with pytest.raises(ConfigError, match="--threads must be >= 1"):
        RayExecutor(threads=0)
