"""Executors run stored runs: local processes here, a Ray cluster in ``layerlab.arena.ray_executor``.

Every executor shares one dispatch loop (``Executor.execute``): it groups the runs into jobs (one
run, or the seeds of one cell with ``vmap_seeds``), leases each job in the store before it starts it
(``layerlab.arena.leases``: each run trains once, however many drivers share the store), hands it to
a worker when one is free, and reports every run's final status. An executor only says how a job
starts and how its end is awaited (``Session``). Local workers open the store themselves and write
everything there, so progress and results travel through the store.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..train.seed_group import cell_key
from .execute import execute_group, init_worker
from .leases import DEFAULT_TTL_S, Leases
from .store import Store

OnProgress = Callable[[str, int, int], None]  # run_id, step, total
OnFinished = Callable[[str, str], None]  # run_id, status
OnPoll = Callable[[], None]  # called while waiting, to refresh progress read from the store
WAIT_S = 0.5  # how often the driver looks at its workers and at runs other drivers hold


class Session(AbstractContextManager):
    """Workers that run jobs for one ``execute`` call."""

    capacity: int  # jobs that may run at once

    @abstractmethod
    def submit(self, job: list[str]) -> Any:
        """Start the job; returns a handle that ``wait`` gives back when it ends."""

    @abstractmethod
    def wait(self, handles: Sequence[Any], timeout: float) -> dict[Any, dict[str, str]]:
        """The handles that ended within ``timeout`` seconds, each with its runs' final statuses."""

    def __exit__(self, *exc: object) -> None:
        return None


class Executor(ABC):
    """Runs stored runs to a final status; subclasses give the workers (``session``)."""

    vmap_seeds: bool = False
    lease_ttl_s: float = DEFAULT_TTL_S

    @abstractmethod
    def session(self, store_root: str | Path, *, device: str, on_progress: OnProgress | None) -> Session:
        """Workers for one ``execute`` call (entered as a context manager)."""

    def execute(self, store_root: str | Path, run_ids: Sequence[str], *, device: str = "cpu",
                on_progress: OnProgress | None = None, on_finished: OnFinished | None = None,
                on_poll: OnPoll | None = None) -> None:
        """Run every id to a final status (done, diverged, failed): the runs this driver leases, it
        trains; runs another live driver holds, it waits for and reports as that driver recorded them."""
        jobs = seed_groups(store_root, run_ids) if self.vmap_seeds else [[rid] for rid in run_ids]
        with Leases(store_root, self.lease_ttl_s) as leases, \
                self.session(store_root, device=device, on_progress=on_progress) as workers:

            def report(rids: Sequence[str], statuses: dict[str, str] | None = None) -> None:
                for rid in rids:
                    if on_finished:
                        on_finished(rid, statuses[rid] if statuses else leases.store.run(rid)["status"])

            waiting, in_flight = list(jobs), {}
            while waiting or in_flight:
                for job in list(waiting):
                    if len(in_flight) >= workers.capacity:
                        break
                    claim = leases.claim(job)
                    ended_elsewhere = claim.finished + claim.failed_elsewhere
                    report(ended_elsewhere)
                    if claim.claimed:
                        in_flight[workers.submit(claim.claimed)] = claim.claimed
                    if not claim.waiting:
                        waiting.remove(job)
                    elif ended_elsewhere:  # part of a group ended under another driver; wait for the rest
                        waiting[waiting.index(job)] = [r for r in job if r not in ended_elsewhere]
                if in_flight:
                    for handle, statuses in workers.wait(list(in_flight), WAIT_S).items():
                        job = in_flight.pop(handle)
                        leases.release(job)
                        report(job, statuses)
                elif waiting:
                    time.sleep(WAIT_S)  # every job left is another driver's: look again shortly
                if on_poll:
                    on_poll()


def seed_groups(store_root: str | Path, run_ids: Sequence[str]) -> list[list[str]]:
    """The runs grouped by cell (same spec but the seed), in the order their first run comes."""
    store = Store(store_root)
    groups: dict[str, list[str]] = {}
    for rid in run_ids:
        groups.setdefault(cell_key(store.spec(rid)), []).append(rid)
    store.close()
    return list(groups.values())


class _InProcess(Session):
    """One worker: this process, with ``threads`` torch threads for the session's time."""

    capacity = 1

    def __init__(self, store_root: str | Path, device: str, on_progress: OnProgress | None, threads: int) -> None:
        self.root, self.device, self.on_progress, self.threads = str(store_root), device, on_progress, threads

    def __enter__(self) -> _InProcess:
        import torch

        self._previous = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        return self

    def __exit__(self, *exc: object) -> None:
        import torch

        torch.set_num_threads(self._previous)

    def submit(self, job: list[str]) -> tuple[str, ...]:
        self._done = execute_group(self.root, job, device=self.device, on_progress=self.on_progress)
        return tuple(job)

    def wait(self, handles, timeout):
        return {h: self._done for h in handles}


class _ProcessPool(Session):
    """``workers`` spawned processes sharing the cores; they write progress to the store."""

    def __init__(self, store_root: str | Path, device: str, workers: int, threads: int) -> None:
        self.root, self.device, self.capacity = str(store_root), device, workers
        ctx = mp.get_context("spawn")  # fork after torch has started threads can deadlock
        self.pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=init_worker,
                                        initargs=(threads, os.getpid()))
        self._jobs: dict[Future, list[str]] = {}

    def submit(self, job: list[str]) -> Future:
        fut = self.pool.submit(execute_group, self.root, job, device=self.device)
        self._jobs[fut] = job
        return fut

    def wait(self, handles, timeout):
        done, _ = wait(handles, timeout=timeout, return_when=FIRST_COMPLETED)
        return {fut: fut.result() if fut.exception() is None else dict.fromkeys(self._jobs.pop(fut), "failed")
                for fut in done}

    def __exit__(self, *exc: object) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


class LocalExecutor(Executor):
    """`workers` = 1: in this process. More: a pool of spawned processes sharing the cores.

    ``threads_per_worker`` (default: cores // workers) is set in every worker, and in this process
    for the time of ``execute`` when ``workers`` = 1. ``vmap_seeds``: the seeds of one cell train as one
    vmapped model (``layerlab.train.seed_group``), one job per cell; runs, ids and records are unchanged.
    ``lease_ttl_s``: how long a lease of this driver outlives its last heartbeat (``layerlab.arena.leases``).
    """

    def __init__(self, workers: int = 1, threads_per_worker: int | None = None, *, vmap_seeds: bool = False,
                 lease_ttl_s: float = DEFAULT_TTL_S) -> None:
        if workers < 1:
            raise ConfigError(f"workers must be >= 1, got {workers}")
        if threads_per_worker is not None and threads_per_worker < 1:
            raise ConfigError(f"threads per worker must be >= 1 (or None: cores // workers), got {threads_per_worker}")
        if not lease_ttl_s > 0:
            raise ConfigError(f"the lease time-to-live must be > 0 seconds, got {lease_ttl_s}")
        self.workers = workers
        self.threads = threads_per_worker or max(1, (os.cpu_count() or 1) // workers)
        self.vmap_seeds = vmap_seeds
        self.lease_ttl_s = lease_ttl_s

    def session(self, store_root, *, device, on_progress):
        if self.workers == 1:
            return _InProcess(store_root, device, on_progress, self.threads)
        return _ProcessPool(store_root, device, self.workers, self.threads)
