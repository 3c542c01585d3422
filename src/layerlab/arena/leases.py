"""Run leases: each run trains once, whoever drives.

A *driver* is one ``layerlab run`` or ``layerlab check`` process, whatever executor it uses. Before it
hands a run (or a vmapped group of seeds) to a worker, it leases the run in the store: a row of the
``leases`` table with the driver's id and a heartbeat, which a thread of the driver refreshes every
``ttl / 4`` seconds while the run trains, and which the driver deletes when the run ends.

Another driver on the same store

- skips a run whose lease is live, trains the others, then waits for it: when its owner finishes it,
  the waiting driver reports it as the owner recorded it (done, diverged, or failed: a run that failed
  under another driver is not retried in the same pass);
- takes over a lease whose heartbeat is older than the owner's ``ttl`` (the owner was killed), or at
  once when the owner was a process of this host that is gone. The run then resumes from its last
  checkpoint, like any interrupted run, and gets an event saying whose lease was taken over.

So two drivers on one suite train every run once (``attempts`` = 1), and a killed driver's run is
resumed by another with nothing lost or done twice. A driver stalled longer than ``ttl`` (a suspended
laptop) can lose its lease; the heartbeat notes that as an event and the run is trained by whoever
took it over (its results are the same: training is deterministic). Choose ``ttl`` well above the
longest pause a live driver can have; the default is 30 s.
"""
from __future__ import annotations

import os
import socket
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError
from .store import Store

DEFAULT_TTL_S = 30.0


def new_owner() -> str:
    """An id no other driver has: host, process and a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def owner_is_dead(owner: str) -> bool:
    """True when ``owner`` is a driver of this host whose process is gone: its leases need not wait
    for their ttl (a driver killed here and started again resumes at once). Owners on other hosts,
    or in a form this does not know, are judged by their heartbeat alone."""
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, someone else's
        return False
    return False


@dataclass
class Claim:
    """What ``Leases.claim`` found for one job (a run, or a group of seeds)."""

    claimed: list[str]          # leased to us now: train these
    finished: list[str]         # finished by anyone: report, never train
    failed_elsewhere: list[str]  # failed under another driver during this pass: report, do not retry
    busy: dict[str, str] = field(default_factory=dict)  # live leases of others (run id -> owner): wait

    @property
    def waiting(self) -> bool:
        return bool(self.busy)


class Leases:
    """The leases one driver holds in one store, and the thread that keeps them alive."""

    def __init__(self, store_root: str | Path, ttl: float = DEFAULT_TTL_S, owner: str | None = None) -> None:
        if not ttl > 0:
            raise ConfigError(f"the lease time-to-live must be > 0 seconds, got {ttl}")
        self.root, self.ttl = Path(store_root), float(ttl)
        self.owner = owner or new_owner()
        self.store = Store(self.root)
        self.held: set[str] = set()
        self._seen_busy: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- claiming ----------------------------------------------------------------------
    def claim(self, run_ids: Sequence[str]) -> Claim:
        """Lease the unfinished runs of one job, all or none."""
        claimed, finished, busy = self.store.claim(list(run_ids), self.owner, self.ttl, dead=owner_is_dead)
        failed_elsewhere = []
        if claimed:  # a run we saw leased by another driver, now released as failed: theirs, not ours to retry
            status = {rid: self.store.run(rid)["status"] for rid in claimed if rid in self._seen_busy}
            failed_elsewhere = [rid for rid, st in status.items() if st == "failed"]
            if failed_elsewhere:
                self.store.release(failed_elsewhere, self.owner)
                claimed = [rid for rid in claimed if rid not in failed_elsewhere]
        self._seen_busy.update(busy)
        with self._lock:
            self.held.update(claimed)
        return Claim(claimed, finished, failed_elsewhere, busy)

    def release(self, run_ids: Sequence[str]) -> None:
        with self._lock:
            self.held.difference_update(run_ids)
        self.store.release(list(run_ids), self.owner)

    # --- the heartbeat -----------------------------------------------------------------
    def _beat(self) -> None:
        store = Store(self.root)  # a connection of this thread's own
        try:
            while not self._stop.wait(self.ttl / 4):
                with self._lock:
                    held = sorted(self.held)
                for rid in store.renew(held, self.owner):
                    store.add_event(rid, f"lease of {self.owner} was taken over by another driver "
                                         f"(no heartbeat for more than {self.ttl:g} s)")
                    with self._lock:
                        self.held.discard(rid)
        finally:
            store.close()

    def __enter__(self) -> Leases:
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name="layerlab-lease-heartbeat", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            held = sorted(self.held)
            self.held.clear()
        self.store.release(held, self.owner)  # runs interrupted in this driver (Ctrl-C) are free at once
        self.store.close()
