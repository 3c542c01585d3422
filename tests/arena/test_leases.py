"""Run leases (``layerlab.arena.leases``): each run trains once, whoever drives.

The store's claim is all-or-none and respects live leases; a stale lease is taken over with an event;
two drivers on one suite train every run once; a driver killed mid-run is taken over by another,
which resumes the run from its checkpoint with every step recorded once.
"""
import os
import signal
import socket
import subprocess
import sys
import time
import tomllib

import pytest

from layerlab.arena.executor import LocalExecutor
from layerlab.arena.leases import Leases, owner_is_dead
from layerlab.arena.store import Store
from layerlab.arena.suite import expand, parse_suite
from layerlab.errors import ConfigError
from layerlab.spec import RunSpec

SUITE = """
name = "shared"
seeds = {seeds}
lr = {lrs}
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


def _runs(store: Store, n: int) -> list[str]:
    ids = []
    for seed in range(n):
        spec = RunSpec.from_dict({"task": {"name": "digits"}, "seed": seed, "train": {"steps": 5}})
        ids.append(store.add_run(spec))
    return ids


def test_claim_is_all_or_none_and_respects_live_leases(tmp_path):
    store = Store(tmp_path)
    a, b, c = _runs(store, 3)
    claimed, finished, busy = store.claim([a, b], "one", ttl=60)
    assert claimed == [a, b] and not finished and not busy
    claimed, finished, busy = store.claim([b, c], "two", ttl=60)  # b is one's: nothing of the job is leased
    assert claimed == [] and busy == {b: "one"}
    assert {r["run_id"]: r["owner"] for r in store.leases()} == {a: "one", b: "one"}
    store.release([b], "two")  # another owner cannot release it
    assert len(store.leases()) == 2
    store.release([b], "one")
    assert store.claim([b, c], "two", ttl=60)[0] == [b, c]
    store.finish(a, status="done")
    store.release([a], "one")
    assert store.claim([a], "two", ttl=60) == ([], [a], {})  # a finished run is never leased


def test_stale_lease_is_taken_over_with_an_event_and_its_owner_learns_it(tmp_path):
    store = Store(tmp_path)
    (a,) = _runs(store, 1)
    assert store.claim([a], "dead", ttl=0.2)[0] == [a]
    assert store.claim([a], "alive", ttl=60)[2] == {a: "dead"}  # live for 0.2 s
    time.sleep(0.3)
    assert store.claim([a], "alive", ttl=60)[0] == [a]
    assert any("lease taken over by alive from dead" in e for e in store.events(a))
    assert store.renew([a], "dead") == [a]  # the old owner's heartbeat finds it lost
    assert store.renew([a], "alive") == []


def test_a_dead_local_owner_is_taken_over_at_once(tmp_path):
    store = Store(tmp_path)
    (a,) = _runs(store, 1)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    here = socket.gethostname()
    assert owner_is_dead(f"{here}:{gone.pid}:abc") and not owner_is_dead(f"{here}:{os.getpid()}:abc")
    assert not owner_is_dead(f"elsewhere.example:{gone.pid}:abc")  # another host: judged by heartbeat
    assert store.claim([a], f"{here}:{gone.pid}:abc", ttl=600)[0] == [a]
    assert Leases(tmp_path, ttl=60, owner="me").claim([a]).claimed == [a]
    assert any("its process is gone" in e for e in store.events(a))


def test_heartbeat_keeps_a_lease_alive_past_its_ttl(tmp_path):
    store = Store(tmp_path)
    (a,) = _runs(store, 1)
    with Leases(tmp_path, ttl=0.4, owner="beating") as leases:
        assert leases.claim([a]).claimed == [a]
        time.sleep(1.0)  # 2.5 ttl: without the heartbeat the lease would be stale
        assert store.claim([a], "other", ttl=60)[2] == {a: "beating"}
    assert store.leases() == []  # released on exit


def test_bad_ttl_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="time-to-live must be > 0"):
        LocalExecutor(1, lease_ttl_s=0)
    with pytest.raises(ConfigError, match="time-to-live"):
        Leases(tmp_path, ttl=-1)


def _layerlab(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "layerlab.cli", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)


def _planned(suite_text: str) -> set[str]:
    return {p.spec.run_id for p in expand(parse_suite(tomllib.loads(suite_text)))}


def test_two_drivers_on_one_store_train_every_run_once(tmp_path):
    text = SUITE.format(steps=300, seeds=[0, 1], lrs=[3e-3, 1e-2])
    (tmp_path / "shared.toml").write_text(text)
    root = tmp_path / "store"
    args = ("run", str(tmp_path / "shared.toml"), "--store", str(root), "--threads", "1")
    first = _layerlab(*args)
    time.sleep(0.3)  # the second driver starts while the first starts up or trains
    second = _layerlab(*args)
    for proc in (first, second):
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err.decode()
    runs = Store(root).runs()
    assert {r["run_id"] for r in runs} == _planned(text)
    assert all(r["status"] == "done" for r in runs)
    assert [r["attempts"] for r in runs] == [1] * len(runs)
    assert Store(root).leases() == []
    # both drivers trained: the work was shared, not done once per driver
    assert len({r["worker_pid"] for r in runs}) == 2


def test_a_driver_waits_for_a_live_lease_and_takes_it_over_when_its_heartbeat_stops(tmp_path):
    # another driver (on another host: judged by its heartbeat alone) holds one run and then dies
    suite = parse_suite(tomllib.loads(SUITE.format(steps=20, seeds=[0, 1], lrs=[3e-3])))
    store = Store(tmp_path)
    for p in expand(suite):
        store.add_run(p.spec, suite=suite.name)
    held, free = [p.spec.run_id for p in expand(suite)]
    assert store.claim([held], "elsewhere.example:1:dead", ttl=3.0)[0] == [held]
    order: list[str] = []
    t0 = time.time()
    LocalExecutor(1, 1).execute(tmp_path, [held, free], on_finished=lambda rid, st: order.append(rid))
    waited = time.time() - t0
    assert order == [free, held]  # the free run first; the held one after its lease went stale
    assert waited >= 2.5  # it waited for the ttl (3 s from the claim) rather than training it at once
    assert all(store.run(r)["status"] == "done" and store.run(r)["attempts"] == 1 for r in (held, free))
    assert any("lease taken over" in e and "elsewhere.example" in e for e in store.events(held))
    assert store.leases() == []


def test_a_killed_drivers_run_is_taken_over_and_resumed(tmp_path):
    text = SUITE.format(steps=600, seeds=[0, 1], lrs=[3e-3])
    (tmp_path / "shared.toml").write_text(text)
    root = tmp_path / "store"
    args = ("run", str(tmp_path / "shared.toml"), "--store", str(root), "--threads", "1")
    doomed = _layerlab(*args)
    deadline, victim = time.time() + 180, None
    while time.time() < deadline and victim is None:
        time.sleep(0.05)
        assert doomed.poll() is None, doomed.stderr.read().decode()
        if (root / "store.sqlite").exists():
            mid = [r for r in Store(root).runs() if r["status"] == "running" and 100 < r["step"] < 500]
            if mid:
                victim = mid[0]["run_id"]
                os.killpg(doomed.pid, signal.SIGKILL)  # mid-run, past its first checkpoints
                doomed.wait(10)
    assert victim is not None, "the first driver never got a run past its first checkpoint"
    assert Store(root).leases()[0]["run_id"] == victim  # the dead driver's lease is still there
    rescuer = _layerlab(*args)
    _, err = rescuer.communicate(timeout=300)
    assert rescuer.returncode == 0, err.decode()

    store = Store(root)
    runs = {r["run_id"]: r for r in store.runs()}
    assert set(runs) == _planned(text) and all(r["status"] == "done" for r in runs.values())
    assert runs[victim]["attempts"] == 2
    assert all(r["attempts"] == 1 for rid, r in runs.items() if rid != victim)
    events = store.events(victim)
    assert any("lease taken over" in e and "its process is gone" in e for e in events)
    assert any("resumed from checkpoint" in e for e in events)
    for rid in runs:  # every step once: nothing lost, nothing duplicated
        steps = [m["step"] for m in store.metrics(rid, split="train", name="loss")]
        assert steps == list(range(1, 601))
    assert store.leases() == []
