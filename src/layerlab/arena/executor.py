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

from .execute import execute_run, init_worker

OnProgress = Callable[[str, int, int], None]  # run_id, step, total
OnFinished = Callable[[str, str], None]  # run_id, status
OnPoll = Callable[[], None]  # called while waiting, to refresh progress read from the store


class Executor(ABC):
    @abstractmethod
    def execute(self, store_root: str | Path, run_ids: Sequence[str], *, device: str = "cpu",
                on_progress: OnProgress | None = None, on_finished: OnFinished | None = None,
                on_poll: OnPoll | None = None) -> None:
        """Run every id to a final status (done, diverged, failed)."""


class LocalExecutor(Executor):
    """`workers` = 1: in this process. More: a pool of spawned processes sharing the cores."""

    def __init__(self, workers: int = 1, threads_per_worker: int | None = None) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.workers = workers
        self.threads = threads_per_worker or max(1, (os.cpu_count() or 1) // workers)

    def execute(self, store_root, run_ids, *, device="cpu", on_progress=None, on_finished=None, on_poll=None):
        if self.workers == 1:
            for rid in run_ids:
                progress = (lambda s, t, rid=rid: on_progress(rid, s, t)) if on_progress else None
                status = execute_run(store_root, rid, device=device, on_progress=progress)
                if on_finished:
                    on_finished(rid, status)
            return
        ctx = mp.get_context("spawn")  # fork after torch has started threads can deadlock
        with ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=init_worker,
                                 initargs=(self.threads, os.getpid())) as pool:
            pending: dict[Future, str] = {pool.submit(execute_run, str(store_root), rid, device=device): rid
                                          for rid in run_ids}
            while pending:
                done, _ = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                for fut in done:
                    rid = pending.pop(fut)
                    status = fut.result() if fut.exception() is None else "failed"
                    if on_finished:
                        on_finished(rid, status)
                if on_poll:
                    on_poll()
