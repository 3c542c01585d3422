"""Kill `layerlab run` with SIGKILL mid-suite; running it again completes with no run lost or duplicated."""
import os
import signal
import subprocess
import sys
import time
import tomllib

from layerlab.arena.store import Store
from layerlab.arena.suite import expand, parse_suite

SUITE = """
name = "killme"
seeds = [0, 1, 2]
lr = [3e-3]
[train]
steps = 600
batch_size = 64
eval_every = 25
log_every = 1
[[tasks]]
name = "digits"
[[models]]
label = "mlp"
backbone = "classifier"
channel = "mlp"
d_model = 64
n_layers = 2
"""


def _layerlab(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "layerlab.cli", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True, **kw)


def test_sigkill_mid_suite_then_rerun(tmp_path):
    suite_file = tmp_path / "killme.toml"
    suite_file.write_text(SUITE)
    root = tmp_path / "store"
    proc = _layerlab("run", str(suite_file), "--store", str(root), "--workers", "2")
    deadline = time.time() + 120
    killed_states = None
    while time.time() < deadline:
        time.sleep(0.2)
        assert proc.poll() is None, proc.stderr.read().decode()
        if not (root / "store.sqlite").exists():
            continue
        runs = Store(root).runs()
        done = [r for r in runs if r["status"] == "done"]
        mid = [r for r in runs if r["status"] == "running" and 50 < r["step"] < 600]
        if done and mid:
            killed_states = {r["run_id"]: (r["status"], r["step"]) for r in runs}
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
            break
    assert killed_states is not None, "the suite never reached a state with one run done and one mid-way"
    time.sleep(0.5)
    store = Store(root)
    finished_before = {r["run_id"]: r["finished"] for r in store.runs() if r["status"] == "done"}

    again = _layerlab("run", str(suite_file), "--store", str(root))
    _, err = again.communicate(timeout=300)
    assert again.returncode == 0, err.decode()

    planned = {p.spec.run_id for p in expand(parse_suite(tomllib.loads(SUITE)))}
    runs = store.runs()
    assert {r["run_id"] for r in runs} == planned  # none lost, none extra
    assert all(r["status"] == "done" for r in runs)
    for r in runs:
        if r["run_id"] in finished_before:  # finished before the kill: not run again
            assert r["finished"] == finished_before[r["run_id"]] and r["attempts"] == 1
        steps = [m["step"] for m in store.metrics(r["run_id"], split="train", name="loss")]
        assert steps == list(range(1, 601))  # every step once: nothing lost, nothing duplicated
    resumed = [rid for rid, (st, step) in killed_states.items() if st == "running" and step > 25]
    assert resumed and all(any("resumed from checkpoint" in e for e in store.events(rid)) for rid in resumed)
