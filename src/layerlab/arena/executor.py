"""Executors run stored runs. A local process pool now; a distributed engine plugs into the same interface.

An executor only needs the store's location and run ids: each worker opens the store itself,
trains, and writes everything there, so progress and results travel through the store.
"""
from __future__ import annotations

import multiprocessing as mp
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path

from ..errors import ConfigError
from ..train.seed_group import cell_key
from .execute import execute_group, init_worker
from .store import Store

OnProgress = Callable[[str, int, int], None]  # run_id, step, total
OnFinished = Callable[[str, str], None]  # run_id, status
OnPoll = Callable[[], None]  # called while waiting, to refresh progress read from the store


class Executor(ABC):
    @abstractmethod
    def execute(self, store_root: str | Path, run_ids: Sequence[str], *, device: str = "cpu",
                on_progress: OnProgress | None = None, on_finished: OnFinished | None = None,
                on_poll: OnPoll | None = None) -> None:
        """Run every id to a final status (done, diverged, failed)."""


def seed_groups(store_root: str | Path, run_ids: Sequence[str]) -> list[list[str]]:
    """The runs grouped by cell (same spec but the seed), in the order their first run comes."""
    store = Store(store_root)
    groups: dict[str, list[str]] = {}
    for rid in run_ids:
        groups.setdefault(cell_key(store.spec(rid)), []).append(rid)
    store.close()
    return list(groups.values())


class LocalExecutor(Executor):
    """`workers` = 1: in this process. More: a pool of spawned processes sharing the cores.

    ``threads_per_worker`` (default: cores // workers) is set in every worker, and in this process
    for the time of ``execute`` when ``workers`` = 1. ``vmap_seeds``: the seeds of one cell train as one
    vmapped model (``layerlab.train.seed_group``), one job per cell; runs, ids and records are unchanged.
    """

    def __init__(self, workers: int = 1, threads_per_worker: int | None = None, *, vmap_seeds: bool = False) -> None:
        if workers < 1:
            raise ConfigError(f"workers must be >= 1, got {workers}")
        if threads_per_worker is not None and threads_per_worker < 1:
            raise ConfigError(f"threads per worker must be >= 1 (or None: cores // workers), got {threads_per_worker}")
        self.workers = workers
        self.threads = threads_per_worker or max(1, (os.cpu_count() or 1) // workers)
        self.vmap_seeds = vmap_seeds

    def execute(self, store_root, run_ids, *, device="cpu", on_progress=None, on_finished=None, on_poll=None):
        jobs = seed_groups(store_root, run_ids) if self.vmap_seeds else [[rid] for rid in run_ids]
        if self.workers == 1:
            import torch

            previous = torch.get_num_threads()
            torch.set_num_threads(self.threads)
            try:
                for job in jobs:
                    for rid, status in execute_group(store_root, job, device=device, on_progress=on_progress).items():
                        if on_finished:
                            on_finished(rid, status)
            finally:
                torch.set_num_threads(previous)
            return
        ctx = mp.get_context("spawn")  # fork after torch has started threads can deadlock
        with ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=init_worker,
                                 initargs=(self.threads, os.getpid())) as pool:
            pending: dict[Future, list[str]] = {pool.submit(execute_group, str(store_root), job, device=device): job
                                                for job in jobs}
            while pending:
                done, _ = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                for fut in done:
                    job = pending.pop(fut)
                    statuses = fut.result() if fut.exception() is None else dict.fromkeys(job, "failed")
                    for rid in job:
                        if on_finished:
                            on_finished(rid, statuses[rid])
                if on_poll:
                    on_poll()
