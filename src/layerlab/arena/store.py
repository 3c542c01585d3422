"""The embedded store: SQLite in WAL mode under ``./layerlab-runs/`` (checkpoints beside it).

Everything a run produced is here; the views (leaderboard, export, plots) only read it.
Every process opens its own connection; SQLite's WAL and a busy timeout let several worker
processes write safely. Metric rows are keyed by (run, step, split, name), so a resumed run
that logs a step again replaces the row instead of duplicating it.
"""
from __future__ import annotations

import json
import math
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..spec import RunSpec

DEFAULT_ROOT = "layerlab-runs"
FINISHED = ("done", "diverged")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    spec_json TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',   -- pending, running, done, diverged, interrupted, failed
    step INTEGER NOT NULL DEFAULT 0,          -- last step recorded (progress)
    total_steps INTEGER NOT NULL,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    git_revision TEXT,
    versions_json TEXT,
    device TEXT,
    data_checksum TEXT,
    n_params INTEGER,
    train_time_s REAL,
    wall_time_s REAL,
    stop_reason TEXT,
    diverged_step INTEGER,
    error TEXT,
    worker_pid INTEGER
);
CREATE TABLE IF NOT EXISTS metrics (
    run_id TEXT NOT NULL, step INTEGER NOT NULL, split TEXT NOT NULL, name TEXT NOT NULL,
    value REAL,
    PRIMARY KEY (run_id, step, split, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS results (
    run_id TEXT NOT NULL, split TEXT NOT NULL, name TEXT NOT NULL, value REAL,
    PRIMARY KEY (run_id, split, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS suite_runs (
    suite TEXT NOT NULL, run_id TEXT NOT NULL,
    task TEXT NOT NULL, model TEXT NOT NULL, lr REAL NOT NULL, seed INTEGER NOT NULL,
    metric TEXT NOT NULL, higher_is_better INTEGER NOT NULL, chance REAL,
    PRIMARY KEY (suite, run_id)
);
CREATE TABLE IF NOT EXISTS events (
    run_id TEXT NOT NULL, time REAL NOT NULL, message TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS artifacts (
    run_id TEXT NOT NULL, step INTEGER NOT NULL, name TEXT NOT NULL, path TEXT NOT NULL,
    PRIMARY KEY (run_id, step, name)
);
CREATE TABLE IF NOT EXISTS verdicts (            -- one row per `layerlab check` of a claim card
    verdict_id INTEGER PRIMARY KEY AUTOINCREMENT,
    card_id TEXT NOT NULL, card_hash TEXT NOT NULL, paper TEXT, claim TEXT, kind TEXT,
    rule_json TEXT NOT NULL, verdict TEXT NOT NULL,  -- supported, contradicted, inconclusive
    observed REAL, lo REAL, hi REAL,                -- the rule's statistic and its 95% CI (NULL: none)
    details_json TEXT NOT NULL, run_ids_json TEXT NOT NULL, suite TEXT,
    git_revision TEXT, created TEXT NOT NULL, seconds REAL
);
CREATE INDEX IF NOT EXISTS verdicts_by_card ON verdicts (card_id, verdict_id);
CREATE TABLE IF NOT EXISTS derived (             -- a run made from a stored run by `layerlab compress`
    run_id TEXT PRIMARY KEY,                     -- also a row of runs: status, provenance, results
    parent_id TEXT NOT NULL,                     -- the trained run whose checkpoint it compresses
    technique TEXT NOT NULL, level REAL NOT NULL, level_kind TEXT,
    options_json TEXT NOT NULL,                  -- every option of the technique, defaults included
    seed INTEGER NOT NULL, calibration INTEGER NOT NULL,   -- seed and size of the calibration batch
    paper TEXT                                   -- the technique's paper, cited
);
CREATE INDEX IF NOT EXISTS derived_by_parent ON derived (parent_id, technique, level);
CREATE TABLE IF NOT EXISTS leases (              -- who is training a run now (layerlab.arena.leases)
    run_id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,                         -- the driver: host:pid:random
    acquired REAL NOT NULL,
    heartbeat REAL NOT NULL,                     -- refreshed by the owner every ttl / 4 seconds
    ttl REAL NOT NULL                            -- the lease is stale once heartbeat + ttl has passed
);
"""
# Stores written before derived runs existed gain the `derived` table (CREATE ... IF NOT EXISTS) the
# first time this version opens them; their runs and results are untouched, and so with `leases`
# (version 3). `user_version` records the schema a store has been brought to.
SCHEMA_VERSION = 3
_DERIVED_KEYS = ("parent_id", "technique", "level", "level_kind", "options", "seed", "calibration", "paper")
VERDICTS = ("supported", "contradicted", "inconclusive")
_VERDICT_KEYS = ("card_id", "card_hash", "paper", "claim", "kind", "rule", "verdict", "observed", "lo", "hi",
                 "details", "run_ids", "suite", "git_revision", "created", "seconds")


def _finite_or_none(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _json_safe(obj: Any) -> Any:
    """NaN and infinities become null, so the stored JSON is standard JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


class Store:
    """A directory holding ``store.sqlite``, ``checkpoints/`` and ``artifacts/``."""

    def __init__(self, root: str | Path = DEFAULT_ROOT) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.path = self.root / "store.sqlite"
        self._conn: sqlite3.Connection | None = None
        self._pid = -1
        self.conn.executescript(_SCHEMA)  # idempotent; executescript manages its own transaction
        self._migrate()

    def _migrate(self) -> None:
        """Bring an older store to ``SCHEMA_VERSION`` (version 2 added the ``derived`` table, version 3
        ``leases``; the schema script creates them where they are missing); one transaction, safe with
        several processes."""
        if self.conn.execute("PRAGMA user_version").fetchone()[0] >= SCHEMA_VERSION:
            return
        with self._tx() as c:
            c.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    # --- connection ----------------------------------------------------------------
    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None or self._pid != os.getpid():  # never share a connection across fork
            self._conn = sqlite3.connect(self.path, timeout=120.0, isolation_level=None)
            self._conn.row_factory = sqlite3.Row
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA busy_timeout=120000")
            self._pid = os.getpid()
        return self._conn

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        c = self.conn
        c.execute("BEGIN IMMEDIATE")
        try:
            yield c
        except BaseException:
            c.execute("ROLLBACK")
            raise
        c.execute("COMMIT")

    def close(self) -> None:
        if self._conn is not None and self._pid == os.getpid():
            self._conn.close()
        self._conn = None

    def checkpoint_path(self, run_id: str) -> Path:
        return self.root / "checkpoints" / f"{run_id}.pt"

    def artifact_dir(self, run_id: str) -> Path:
        return self.root / "artifacts" / run_id

    # --- runs ----------------------------------------------------------------------
    def add_run(self, spec: RunSpec, *, suite: str | None = None, labels: dict[str, Any] | None = None) -> str:
        """Register a run (idempotent: the same spec is the same run) and its suite membership."""
        run_id = spec.run_id
        with self._tx() as c:
            c.execute("INSERT OR IGNORE INTO runs (run_id, spec_json, total_steps, created) VALUES (?, ?, ?, ?)",
                      (run_id, spec.to_json(), spec.train.steps, time.time()))
            if suite is not None:
                lab = labels or {}
                c.execute(
                    "INSERT OR REPLACE INTO suite_runs (suite, run_id, task, model, lr, seed, metric, "
                    "higher_is_better, chance) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (suite, run_id, lab.get("task", spec.task.name), lab.get("model", spec.model.label()),
                     spec.optim.lr, spec.seed, lab.get("metric", ""), int(lab.get("higher_is_better", True)),
                     lab.get("chance")))
        return run_id

    def spec(self, run_id: str) -> RunSpec:
        return RunSpec.from_dict(json.loads(self.run(run_id)["spec_json"]))

    def run(self, run_id: str) -> dict[str, Any]:
        row = self.conn.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            prefix = self.conn.execute("SELECT * FROM runs WHERE run_id LIKE ?", (run_id + "%",)).fetchall()
            if len(prefix) == 1:
                return dict(prefix[0])
            raise KeyError(f"no run {run_id!r} in {self.path}" +
                           (f" ({len(prefix)} runs start with it; give more characters)" if prefix else ""))
        return dict(row)

    def runs(self, *, suite: str | None = None, status: str | None = None) -> list[dict[str, Any]]:
        q = "SELECT r.* FROM runs r"
        args: list[Any] = []
        where = []
        if suite is not None:
            q += " JOIN suite_runs s ON s.run_id = r.run_id"
            where.append("s.suite = ?")
            args.append(suite)
        if status is not None:
            where.append("r.status = ?")
            args.append(status)
        if where:
            q += " WHERE " + " AND ".join(where)
        return [dict(r) for r in self.conn.execute(q + " ORDER BY r.created, r.run_id", args)]

    def suite_rows(self, suite: str) -> list[dict[str, Any]]:
        q = ("SELECT s.*, r.status, r.n_params, r.train_time_s, r.step, r.total_steps, r.diverged_step "
             "FROM suite_runs s JOIN runs r ON r.run_id = s.run_id WHERE s.suite = ? ORDER BY s.task, s.model, s.lr, s.seed")
        return [dict(r) for r in self.conn.execute(q, (suite,))]

    def suites(self) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT DISTINCT suite FROM suite_runs ORDER BY suite")]

    def mark_running(self, run_id: str, provenance: dict[str, Any], worker_pid: int | None = None) -> None:
        """A worker starts (or resumes) the run: one more attempt, with its provenance and process id
        (``worker_pid``: a remote worker's; default this process)."""
        with self._tx() as c:
            c.execute("UPDATE runs SET status='running', started=COALESCE(started, ?), attempts=attempts+1, "
                      "git_revision=?, versions_json=?, device=?, data_checksum=?, worker_pid=?, error=NULL "
                      "WHERE run_id=?",
                      (time.time(), provenance.get("git_revision"), json.dumps(provenance.get("versions", {})),
                       provenance.get("device"), provenance.get("data_checksum"), worker_pid or os.getpid(), run_id))

    def finish(self, run_id: str, *, status: str, results: dict[str, dict[str, float]] | None = None,
               **fields: Any) -> None:
        allowed = {"n_params", "train_time_s", "wall_time_s", "stop_reason", "diverged_step", "error", "step"}
        bad = set(fields) - allowed
        if bad:
            raise ValueError(f"unknown run fields {sorted(bad)}")
        sets = ", ".join(f"{k}=?" for k in fields)
        with self._tx() as c:
            c.execute(f"UPDATE runs SET status=?, finished=?{', ' + sets if sets else ''} WHERE run_id=?",
                      (status, time.time(), *fields.values(), run_id))
            if results:
                c.execute("DELETE FROM results WHERE run_id=?", (run_id,))
                c.executemany("INSERT INTO results VALUES (?, ?, ?, ?)",
                              [(run_id, split, k, float(v)) for split, m in results.items() for k, v in m.items()])

    def results(self, run_id: str) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        for r in self.conn.execute("SELECT split, name, value FROM results WHERE run_id=?", (run_id,)):
            out.setdefault(r["split"], {})[r["name"]] = r["value"]
        return out

    # --- metrics -------------------------------------------------------------------
    def write_metrics(self, run_id: str, rows: list[tuple[int, str, str, float]], step: int | None = None) -> None:
        with self._tx() as c:
            c.executemany("INSERT OR REPLACE INTO metrics VALUES (?, ?, ?, ?, ?)",
                          [(run_id, s, sp, n, v) for s, sp, n, v in rows])
            if step is not None:
                c.execute("UPDATE runs SET step=? WHERE run_id=?", (step, run_id))

    def truncate_metrics(self, run_id: str, after_step: int) -> None:
        with self._tx() as c:
            c.execute("DELETE FROM metrics WHERE run_id=? AND step>?", (run_id, after_step))
            c.execute("DELETE FROM artifacts WHERE run_id=? AND step>?", (run_id, after_step))
            c.execute("UPDATE runs SET step=? WHERE run_id=?", (after_step, run_id))

    def metrics(self, run_id: str, split: str | None = None, name: str | None = None) -> list[dict[str, Any]]:
        q, args = "SELECT step, split, name, value FROM metrics WHERE run_id=?", [run_id]
        if split is not None:
            q += " AND split=?"
            args.append(split)
        if name is not None:
            q += " AND name=?"
            args.append(name)
        return [dict(r) for r in self.conn.execute(q + " ORDER BY step, split, name", args)]

    # --- artifacts (arrays probes measured) ----------------------------------------------
    def write_artifact(self, run_id: str, step: int, name: str, array: Any) -> Path:
        """Save `array` losslessly as ``artifacts/<run>/<step>/<name>.npy`` (atomic) and index it."""
        import numpy as np
        import torch

        if isinstance(array, torch.Tensor):
            array = array.detach().cpu().numpy()
        rel = Path(str(step)) / (name.replace("/", "__") + ".npy")
        path = self.artifact_dir(run_id) / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            np.save(f, np.asarray(array), allow_pickle=False)
        os.replace(tmp, path)
        with self._tx() as c:
            c.execute("INSERT OR REPLACE INTO artifacts VALUES (?, ?, ?, ?)", (run_id, step, name, str(rel)))
        return path

    def artifacts(self, run_id: str, name: str | None = None) -> list[dict[str, Any]]:
        """Index rows (step, name, path relative to the run's artifact folder), by step and name."""
        q, args = "SELECT step, name, path FROM artifacts WHERE run_id=?", [run_id]
        if name is not None:
            q += " AND name=?"
            args.append(name)
        return [dict(r) for r in self.conn.execute(q + " ORDER BY step, name", args)]

    def load_artifact(self, run_id: str, step: int, name: str) -> Any:
        """The array recorded as `name` at `step` (a numpy array), or None."""
        import numpy as np

        row = self.conn.execute("SELECT path FROM artifacts WHERE run_id=? AND step=? AND name=?",
                                (run_id, step, name)).fetchone()
        if row is None:
            return None
        return np.load(self.artifact_dir(run_id) / row[0], allow_pickle=False)

    def add_event(self, run_id: str, message: str) -> None:
        with self._tx() as c:
            c.execute("INSERT INTO events VALUES (?, ?, ?)", (run_id, time.time(), message))

    def events(self, run_id: str) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT message FROM events WHERE run_id=? ORDER BY time", (run_id,))]

    # --- verdicts of claim cards -------------------------------------------------------
    def add_verdict(self, record: dict[str, Any]) -> int:
        """Record one check of a claim card (keys: ``_VERDICT_KEYS``; ``created`` defaults to now, UTC
        ISO); one transaction, so a killed check leaves either the whole row or nothing. Returns its id."""
        bad = set(record) - set(_VERDICT_KEYS)
        if bad:
            raise ValueError(f"unknown verdict fields {sorted(bad)}; valid: {', '.join(_VERDICT_KEYS)}")
        for key in ("card_id", "card_hash", "verdict"):
            if not record.get(key):
                raise ValueError(f"a verdict needs {key!r}")
        if record["verdict"] not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {record['verdict']!r}")
        created = record.get("created") or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        row = (record["card_id"], record["card_hash"], record.get("paper"), record.get("claim"), record.get("kind"),
               json.dumps(_json_safe(record.get("rule", {})), sort_keys=True), record["verdict"],
               _finite_or_none(record.get("observed")), _finite_or_none(record.get("lo")),
               _finite_or_none(record.get("hi")), json.dumps(_json_safe(record.get("details", {})), sort_keys=True),
               json.dumps(list(record.get("run_ids", []))), record.get("suite"), record.get("git_revision"),
               created, _finite_or_none(record.get("seconds")))
        with self._tx() as c:
            cur = c.execute("INSERT INTO verdicts (card_id, card_hash, paper, claim, kind, rule_json, verdict, observed, "
                            "lo, hi, details_json, run_ids_json, suite, git_revision, created, seconds) "
                            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
            return int(cur.lastrowid)

    def verdicts(self, card_id: str | None = None, latest: bool = True) -> list[dict[str, Any]]:
        """Recorded verdicts, oldest first (by card id with ``latest``: only each card's newest row).
        Rows carry ``_VERDICT_KEYS`` plus ``verdict_id``; rule, details and run ids decoded."""
        q, args = "SELECT * FROM verdicts", []
        where = []
        if card_id is not None:
            where.append("card_id = ?")
            args.append(card_id)
        if latest:
            where.append("verdict_id IN (SELECT MAX(verdict_id) FROM verdicts GROUP BY card_id)")
        if where:
            q += " WHERE " + " AND ".join(where)
        q += " ORDER BY card_id, verdict_id" if latest else " ORDER BY verdict_id"
        out = []
        for r in self.conn.execute(q, args):
            d = dict(r)
            d["rule"] = json.loads(d.pop("rule_json"))
            d["details"] = json.loads(d.pop("details_json"))
            d["run_ids"] = json.loads(d.pop("run_ids_json"))
            out.append(d)
        return out

    # --- derived runs (`layerlab compress`) ----------------------------------------------
    def add_derived(self, run_id: str, parent_id: str, derivation: dict[str, Any]) -> str:
        """Register a derived run (idempotent: the same id is the same run): a row of ``runs`` holding
        the parent's spec (the task and model it evaluates; one step: the compression), and its
        derivation (keys ``_DERIVED_KEYS`` but ``parent_id``). Returns ``run_id``."""
        bad = set(derivation) - set(_DERIVED_KEYS)
        missing = {"technique", "level", "options", "seed", "calibration"} - set(derivation)
        if bad or missing:
            raise ValueError(f"derivation: unknown keys {sorted(bad)}, missing {sorted(missing)}; valid: "
                             f"{', '.join(_DERIVED_KEYS[1:])}")
        parent = self.run(parent_id)
        if self.derivation(parent["run_id"]) is not None:
            raise ValueError(f"run {parent['run_id']} is itself a derived run; derive from a trained run")
        with self._tx() as c:
            c.execute("INSERT OR IGNORE INTO runs (run_id, spec_json, total_steps, created) VALUES (?, ?, 1, ?)",
                      (run_id, parent["spec_json"], time.time()))
            c.execute("INSERT OR IGNORE INTO derived (run_id, parent_id, technique, level, level_kind, options_json, "
                      "seed, calibration, paper) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                      (run_id, parent["run_id"], derivation["technique"], float(derivation["level"]),
                       derivation.get("level_kind"), json.dumps(_json_safe(derivation["options"]), sort_keys=True),
                       int(derivation["seed"]), int(derivation["calibration"]), derivation.get("paper")))
        return run_id

    @staticmethod
    def _derivation_row(row: sqlite3.Row) -> dict[str, Any]:
        d = {k: row[k] for k in _DERIVED_KEYS if k != "options"}
        d["options"] = json.loads(row["options_json"])
        return d

    def derivation(self, run_id: str) -> dict[str, Any] | None:
        """How run ``run_id`` was derived (parent, technique, level, options, seed, ...), or None for
        a trained run."""
        row = self.conn.execute("SELECT * FROM derived WHERE run_id = ?", (run_id,)).fetchone()
        return None if row is None else self._derivation_row(row)

    def derived_runs(self, parent_id: str | None = None, technique: str | None = None) -> list[dict[str, Any]]:
        """Derived runs (of ``parent_id``, of ``technique``): each run's row with its derivation
        (keys ``_DERIVED_KEYS``), by parent, technique, level and seed."""
        q = "SELECT r.*, d.parent_id, d.technique, d.level, d.level_kind, d.options_json AS options_json, " \
            "d.seed AS derived_seed, d.calibration, d.paper FROM derived d JOIN runs r ON r.run_id = d.run_id"
        where, args = [], []
        if parent_id is not None:
            where.append("d.parent_id = ?")
            args.append(parent_id)
        if technique is not None:
            where.append("d.technique = ?")
            args.append(technique)
        if where:
            q += " WHERE " + " AND ".join(where)
        out = []
        for row in self.conn.execute(q + " ORDER BY d.parent_id, d.technique, d.level, d.seed, d.run_id", args):
            r = dict(row)
            r["options"] = json.loads(r.pop("options_json"))
            r["seed"] = r.pop("derived_seed")
            out.append(r)
        return out

    # --- leases: each run trains once, whoever drives (layerlab.arena.leases) -------------------
    def claim(self, run_ids: list[str], owner: str, ttl: float,
              dead: Callable[[str], bool] = lambda owner: False) -> tuple[list[str], list[str], dict[str, str]]:
        """Lease every unfinished run of ``run_ids`` to ``owner``, all or none, in one transaction.

        Returns (claimed, finished, busy): the runs now leased to ``owner`` (empty when any of them is
        held by a live lease of another owner), the runs already finished (never leased), and the
        live leases of others (run id -> owner). A stale lease (heartbeat + ttl passed, or ``dead(owner)``:
        its driver died) is taken over, with an event on the run."""
        now = time.time()
        with self._tx() as c:
            marks = ",".join("?" * len(run_ids))
            status = dict(c.execute(f"SELECT run_id, status FROM runs WHERE run_id IN ({marks})", run_ids).fetchall())
            leases = {r["run_id"]: r for r in c.execute(f"SELECT * FROM leases WHERE run_id IN ({marks})", run_ids)}
            finished = [rid for rid in run_ids if status.get(rid) in FINISHED]
            todo = [rid for rid in run_ids if rid not in finished]
            busy = {rid: leases[rid]["owner"] for rid in todo if rid in leases and leases[rid]["owner"] != owner
                    and leases[rid]["heartbeat"] + leases[rid]["ttl"] > now and not dead(leases[rid]["owner"])}
            if busy or not todo:
                return [], finished, busy
            for rid in todo:
                old = leases.get(rid)
                if old is not None and old["owner"] != owner:
                    c.execute("INSERT INTO events VALUES (?, ?, ?)",
                              (rid, now, f"lease taken over by {owner} from {old['owner']} "
                                         f"(no heartbeat for {now - old['heartbeat']:.0f} s"
                                         f"{'; its process is gone' if dead(old['owner']) else ''})"))
            c.executemany("INSERT OR REPLACE INTO leases VALUES (?, ?, ?, ?, ?)",
                          [(rid, owner, now, now, float(ttl)) for rid in todo])
        return todo, finished, {}

    def renew(self, run_ids: list[str], owner: str) -> list[str]:
        """Refresh ``owner``'s heartbeat on these runs; returns those it no longer holds (taken over)."""
        if not run_ids:
            return []
        now = time.time()
        marks = ",".join("?" * len(run_ids))
        with self._tx() as c:
            c.execute(f"UPDATE leases SET heartbeat=? WHERE owner=? AND run_id IN ({marks})", (now, owner, *run_ids))
            held = {r[0] for r in c.execute(f"SELECT run_id FROM leases WHERE owner=? AND run_id IN ({marks})",
                                            (owner, *run_ids))}
        return [rid for rid in run_ids if rid not in held]

    def release(self, run_ids: list[str], owner: str) -> None:
        """Give back ``owner``'s leases on these runs (a lease another owner took over stays)."""
        if not run_ids:
            return
        marks = ",".join("?" * len(run_ids))
        with self._tx() as c:
            c.execute(f"DELETE FROM leases WHERE owner=? AND run_id IN ({marks})", (owner, *run_ids))

    def leases(self) -> list[dict[str, Any]]:
        """Every lease row (run_id, owner, acquired, heartbeat, ttl), stale ones included."""
        return [dict(r) for r in self.conn.execute("SELECT * FROM leases ORDER BY acquired, run_id")]

    def progress(self, run_ids: list[str]) -> dict[str, tuple[str, int, int]]:
        """run_id -> (status, step, total_steps), for progress bars polling from another process."""
        if not run_ids:
            return {}
        marks = ",".join("?" * len(run_ids))
        rows = self.conn.execute(f"SELECT run_id, status, step, total_steps FROM runs WHERE run_id IN ({marks})", run_ids)
        return {r[0]: (r[1], r[2], r[3]) for r in rows}


class StoreRecorder:
    """The trainer's Recorder, writing into the store; buffers rows and flushes every few seconds."""

    def __init__(self, store: Store, run_id: str, flush_every_s: float = 5.0) -> None:
        self.store, self.run_id, self.flush_every_s = store, run_id, flush_every_s
        self._rows: list[tuple[int, str, str, float]] = []
        self._last_step = 0
        self._last_flush = time.monotonic()

    def log(self, step: int, split: str, metrics: dict[str, float]) -> None:
        self._rows.extend((step, split, k, float(v)) for k, v in metrics.items())
        self._last_step = max(self._last_step, step)
        if time.monotonic() - self._last_flush >= self.flush_every_s:
            self.flush()

    def flush(self) -> None:
        if self._rows:
            self.store.write_metrics(self.run_id, self._rows, step=self._last_step)
            self._rows = []
        self._last_flush = time.monotonic()

    def truncate(self, after_step: int) -> None:
        self._rows = [r for r in self._rows if r[0] <= after_step]
        self._last_step = after_step
        self.store.truncate_metrics(self.run_id, after_step)

    def event(self, message: str) -> None:
        self.store.add_event(self.run_id, message)

    def artifact(self, step: int, name: str, array: Any) -> None:
        self.store.write_artifact(self.run_id, step, name, array)

    def load_artifact(self, step: int, name: str) -> Any:
        import torch

        array = self.store.load_artifact(self.run_id, step, name)
        return None if array is None else torch.from_numpy(array)
