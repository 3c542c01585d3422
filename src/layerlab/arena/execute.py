"""Execute stored runs: the unit of work every executor hands to a worker (one run, or the seeds of
one cell trained as one vmapped group).

The worker writes through a store: the ``Store`` at a path (local workers open the SQLite file
themselves), or any object with the same run-writing methods (``spec``, ``mark_running``,
``checkpoint_path``, ``finish`` and what ``StoreRecorder`` calls), such as the Ray executor's
``RemoteStore``, which sends every write to the driver."""
from __future__ import annotations

import os
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..tasks import build_task
from ..train import RunResult, Trainer
from ..train.seed_group import SeedGroupTrainer
from ..train.trainer import resolve_device
from .provenance import device_name, git_revision, package_versions
from .store import Store, StoreRecorder

_PARENT_PID: int | None = None


def init_worker(threads: int, parent_pid: int) -> None:
    """Pool-worker initializer: share the cores, and remember who started us."""
    import torch

    global _PARENT_PID
    torch.set_num_threads(threads)
    _PARENT_PID = parent_pid


def orphaned() -> bool:
    """True once the process that started this worker has died (a killed `layerlab run`)."""
    return _PARENT_PID is not None and os.getppid() != _PARENT_PID


def _provenance(task: Any, device: Any) -> dict[str, Any]:
    return {"git_revision": git_revision(), "versions": package_versions(), "device": device_name(device),
            "data_checksum": task.checksum()}


def _finish(store: Store, run_id: str, result: RunResult, wall_time_s: float) -> None:
    store.finish(run_id, status=result.status, results=result.results, n_params=result.n_params,
                 train_time_s=result.train_time_s, wall_time_s=wall_time_s, stop_reason=result.stop_reason,
                 diverged_step=result.diverged_step, step=result.steps)


def _failed(store: Store, run_ids: Sequence[str], e: Exception, wall_time_s: float) -> None:
    for rid in run_ids:
        store.finish(rid, status="failed", error=f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=8)}",
                     wall_time_s=wall_time_s)


def _open(store: str | Path | Any) -> Any:
    return Store(store) if isinstance(store, (str, Path)) else store


def execute_run(store_root: str | Path | Any, run_id: str, *, device: str = "cpu",
                on_progress: Callable[[int, int], None] | None = None,
                should_stop: Callable[[], bool] | None = None) -> str:
    """Train (or resume) one run recorded in the store; returns its final status."""
    store = _open(store_root)
    spec = store.spec(run_id)
    t0 = time.time()
    try:
        task = build_task(spec.task.name, **spec.task.params)
        dev = resolve_device(device)
        store.mark_running(run_id, _provenance(task, dev))
        recorder = StoreRecorder(store, run_id)
        trainer = Trainer(spec, task=task, device=dev, recorder=recorder,
                          checkpoint_path=store.checkpoint_path(run_id), on_progress=on_progress,
                          should_stop=should_stop or (orphaned if _PARENT_PID is not None else None))
        result = trainer.fit()
    except Exception as e:  # a failing run is recorded; the suite goes on
        _failed(store, [run_id], e, time.time() - t0)
        return "failed"
    if result.status == "interrupted" and orphaned():
        os._exit(1)  # nobody is waiting for us; the next `layerlab run` resumes from the checkpoint
    _finish(store, run_id, result, time.time() - t0)
    store.close()
    return result.status


def execute_group(store_root: str | Path | Any, run_ids: Sequence[str], *, device: str = "cpu",
                  on_progress: Callable[[str, int, int], None] | None = None,
                  should_stop: Callable[[], bool] | None = None) -> dict[str, str]:
    """Train (or resume) runs that differ only in their seed as one vmapped group
    (``SeedGroupTrainer``, which trains them separately where it cannot); each run is recorded in
    the store exactly as ``execute_run`` records it, its wall time being its share of the group's.
    Returns each run's final status."""
    if len(run_ids) == 1:
        rid = run_ids[0]
        progress = (lambda s, t: on_progress(rid, s, t)) if on_progress else None
        return {rid: execute_run(store_root, rid, device=device, on_progress=progress, should_stop=should_stop)}
    store = _open(store_root)
    specs = [store.spec(rid) for rid in run_ids]
    t0 = time.time()
    try:
        task = build_task(specs[0].task.name, **specs[0].task.params)
        dev = resolve_device(device)
        provenance = _provenance(task, dev)
        for rid in run_ids:
            store.mark_running(rid, provenance)
        progress = [(lambda s, t, rid=rid: on_progress(rid, s, t)) if on_progress else None for rid in run_ids]
        group = SeedGroupTrainer(specs, task=task, device=dev, recorders=[StoreRecorder(store, rid) for rid in run_ids],
                                 checkpoint_paths=[store.checkpoint_path(rid) for rid in run_ids],
                                 on_progress=progress,
                                 should_stop=should_stop or (orphaned if _PARENT_PID is not None else None))
        results = group.fit()
    except Exception as e:  # a failing group is recorded (each run failed; a rerun resumes them); the suite goes on
        _failed(store, run_ids, e, time.time() - t0)
        return {rid: "failed" for rid in run_ids}
    if any(r.status == "interrupted" for r in results) and orphaned():
        os._exit(1)
    wall = (time.time() - t0) / len(run_ids)
    for rid, result in zip(run_ids, results):
        _finish(store, rid, result, wall)
    store.close()
    return {rid: r.status for rid, r in zip(run_ids, results)}
