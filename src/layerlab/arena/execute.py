"""Execute one stored run: the unit of work every executor hands to a worker."""
from __future__ import annotations

import os
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from ..tasks import build_task
from ..train import Trainer
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


def execute_run(store_root: str | Path, run_id: str, *, device: str = "cpu",
                on_progress: Callable[[int, int], None] | None = None,
                should_stop: Callable[[], bool] | None = None) -> str:
    """Train (or resume) one run recorded in the store; returns its final status."""
    store = Store(store_root)
    spec = store.spec(run_id)
    t0 = time.time()
    try:
        task = build_task(spec.task.name, **spec.task.params)
        dev = resolve_device(device)
        store.mark_running(run_id, {"git_revision": git_revision(), "versions": package_versions(),
                                    "device": device_name(dev), "data_checksum": task.checksum()})
        recorder = StoreRecorder(store, run_id)
        trainer = Trainer(spec, task=task, device=dev, recorder=recorder,
                          checkpoint_path=store.checkpoint_path(run_id), on_progress=on_progress,
                          should_stop=should_stop or (orphaned if _PARENT_PID is not None else None))
        result = trainer.fit()
    except Exception as e:  # a failing run is recorded; the suite goes on
        store.finish(run_id, status="failed", error=f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=8)}",
                     wall_time_s=time.time() - t0)
        return "failed"
    if result.status == "interrupted" and orphaned():
        os._exit(1)  # nobody is waiting for us; the next `layerlab run` resumes from the checkpoint
    store.finish(run_id, status=result.status, results=result.results, n_params=result.n_params,
                 train_time_s=result.train_time_s, wall_time_s=time.time() - t0, stop_reason=result.stop_reason,
                 diverged_step=result.diverged_step, step=result.steps)
    store.close()
    return result.status
