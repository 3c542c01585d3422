import multiprocessing as mp

import pytest

from layerlab.arena.store import Store, StoreRecorder
from layerlab.spec import RunSpec, TaskSpec, TrainSpec


def spec(seed=0) -> RunSpec:
    return RunSpec(task=TaskSpec("digits"), train=TrainSpec(steps=5), seed=seed)


def test_add_run_is_idempotent_and_keeps_spec(tmp_path):
    st = Store(tmp_path)
    rid = st.add_run(spec(), suite="s", labels={"task": "digits", "model": "m"})
    assert st.add_run(spec(), suite="s", labels={"task": "digits", "model": "m"}) == rid
    assert len(st.runs()) == 1 and len(st.suite_rows("s")) == 1
    assert st.spec(rid) == spec()
    assert st.run(rid)["status"] == "pending"
    assert st.run(rid[:6])["run_id"] == rid  # unique prefix works


def test_unknown_run_id_says_so(tmp_path):
    with pytest.raises(KeyError, match="no run 'nope'"):
        Store(tmp_path).run("nope")


def test_metrics_replace_not_duplicate_and_truncate(tmp_path):
    st = Store(tmp_path)
    rid = st.add_run(spec())
    st.write_metrics(rid, [(1, "train", "loss", 2.0), (2, "train", "loss", 1.5)], step=2)
    st.write_metrics(rid, [(2, "train", "loss", 1.5), (3, "train", "loss", 1.0)], step=3)
    assert [(m["step"], m["value"]) for m in st.metrics(rid)] == [(1, 2.0), (2, 1.5), (3, 1.0)]
    st.truncate_metrics(rid, 1)
    assert [m["step"] for m in st.metrics(rid)] == [1]
    assert st.run(rid)["step"] == 1


def test_finish_records_results_and_status(tmp_path):
    st = Store(tmp_path)
    rid = st.add_run(spec())
    st.mark_running(rid, {"git_revision": "abc", "versions": {"torch": "x"}, "device": "cpu", "data_checksum": "d"})
    assert st.run(rid)["status"] == "running" and st.run(rid)["attempts"] == 1
    st.finish(rid, status="done", results={"test": {"accuracy": 0.5}}, n_params=10)
    r = st.run(rid)
    assert (r["status"], r["n_params"], r["git_revision"], r["data_checksum"]) == ("done", 10, "abc", "d")
    assert st.results(rid) == {"test": {"accuracy": 0.5}}
    with pytest.raises(ValueError, match="unknown run fields"):
        st.finish(rid, status="done", colour="red")


def test_recorder_buffers_then_flushes(tmp_path):
    st = Store(tmp_path)
    rid = st.add_run(spec())
    rec = StoreRecorder(st, rid, flush_every_s=3600)
    rec.log(1, "train", {"loss": 1.0})
    assert st.metrics(rid) == []
    rec.flush()
    assert st.metrics(rid)[0]["value"] == 1.0


def _writer(root: str, run_id: str, worker: int, n: int) -> None:
    st = Store(root)
    for i in range(n):
        st.write_metrics(run_id, [(i, f"w{worker}", "loss", float(i))], step=i)
        st.add_event(run_id, f"{worker}:{i}")


def test_several_processes_write_safely(tmp_path):
    st = Store(tmp_path)
    rid = st.add_run(spec())
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), rid, w, 150)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    assert len(st.metrics(rid)) == 450
    assert len(st.events(rid)) == 450
    assert st.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def verdict(card="c", **kw):
    rec = {"card_id": card, "card_hash": "h" * 16, "paper": "2411.12537", "claim": "x", "kind": "comparative",
           "rule": {"type": "difference"}, "verdict": "supported", "observed": 0.4, "lo": 0.3, "hi": 0.5,
           "details": {"models": {"a": {"mean": 0.9}}}, "run_ids": ["r1", "r2"], "suite": "c@1234",
           "git_revision": "abc", "seconds": 1.5}
    rec.update(kw)
    return rec


def test_verdicts_round_trip_latest_per_card(tmp_path):
    st = Store(tmp_path)
    first = st.add_verdict(verdict("a"))
    st.add_verdict(verdict("b", verdict="contradicted"))
    last = st.add_verdict(verdict("a", card_hash="g" * 16, verdict="inconclusive", observed=float("nan"),
                                  details={"x": float("inf")}))
    assert last > first
    latest = st.verdicts()
    assert [(v["card_id"], v["verdict"]) for v in latest] == [("a", "inconclusive"), ("b", "contradicted")]
    a = st.verdicts("a")[0]
    assert a["verdict_id"] == last and a["card_hash"] == "g" * 16 and a["observed"] is None
    assert a["details"] == {"x": None} and a["run_ids"] == ["r1", "r2"] and a["rule"] == {"type": "difference"}
    assert a["created"].endswith("Z") and a["git_revision"] == "abc" and a["seconds"] == 1.5
    assert [v["verdict_id"] for v in st.verdicts("a", latest=False)] == [first, last]
    assert len(st.verdicts(latest=False)) == 3
    assert Store(tmp_path).verdicts("b")[0]["lo"] == 0.3  # another connection reads it


def test_bad_verdict_writes_nothing(tmp_path):
    st = Store(tmp_path)
    for bad, msg in [({"verdict": "maybe"}, "verdict must be one of"), ({"card_hash": ""}, "needs 'card_hash'"),
                     ({"colour": 1}, "unknown verdict fields")]:
        with pytest.raises(ValueError, match=msg):
            st.add_verdict(verdict(**bad))
    assert st.verdicts(latest=False) == []


def test_verdicts_table_added_to_an_existing_store(tmp_path):
    import sqlite3

    st = Store(tmp_path)
    st.conn.execute("DROP TABLE verdicts")  # a store made before verdicts existed
    st.close()
    assert "verdicts" not in {r[0] for r in sqlite3.connect(tmp_path / "store.sqlite").execute(
        "SELECT name FROM sqlite_master WHERE type='table'")}
    assert Store(tmp_path).add_verdict(verdict()) == 1
