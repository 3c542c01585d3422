"""The Ray executor: every job (a run, or the seeds of one cell) is a Ray task on a cluster.

``layerlab run SUITE --executor ray [--address auto|HOST:PORT] [--workers N] [--checkpoint-dir DIR]``

- The driver (the ``layerlab`` process) owns the store: a worker never opens the SQLite file. It
  trains through a ``RemoteStore``, which sends every write (metrics, events, probe arrays, the run's
  start and its end) to the driver through a ``Mailbox`` actor; the driver applies them to the store
  in the order they were sent and acknowledges them. A flush of metrics (the trainer flushes before
  every checkpoint) waits for that acknowledgement, so a checkpoint never gets ahead of the metrics
  in the store, even when the driver is killed. Progress bars read the store as with local workers.
- Checkpoints go to ``--checkpoint-dir``, a path every node can reach (a shared filesystem; default
  the store's own ``checkpoints/`` folder, which serves a one-machine cluster). Probe arrays are
  kept there too, so a probe that compares with its step-0 array still finds it after a retry. When
  a run ends, the driver copies its checkpoint into the store, where ``layerlab lens`` and
  ``layerlab compress`` look for it.
- A task whose worker dies is retried by Ray (``max_retries``) and resumes from its last checkpoint:
  the metrics logged after that checkpoint are dropped and logged again, so nothing is lost or
  recorded twice. Leases (``layerlab.arena.leases``) keep another driver off the run meanwhile.
- Each task asks for ``threads`` CPUs, and one GPU when the device is CUDA.

Ray is an optional extra: ``pip install 'layerlab[ray]'``.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..spec import RunSpec
from .execute import execute_group
from .executor import Executor, Session
from .leases import DEFAULT_TTL_S
from .store import Store

# The store methods a worker's writes call on the driver, and nothing else.
_APPLIED = ("mark_running", "finish", "write_metrics", "truncate_metrics", "add_event", "write_artifact")


def import_ray(local: bool = False) -> Any:
    """Ray, or a ConfigError saying how to install it. ``local``: a runtime of this machine alone will
    be started, so Ray is told (before its first import) to bind to the loopback address, not to
    the machine's network address. Otherwise a cluster is joined, with the token ``ray start`` saved
    where there is one."""
    if local:
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # Ray's switch for a loopback-only node
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    elif "RAY_AUTH_MODE" not in os.environ and (Path.home() / ".ray" / "auth_token").exists():
        # `ray start` (2.5x) turns token authentication on and saves the token there; a client joining
        # the cluster sends it only in token mode.
        os.environ["RAY_AUTH_MODE"] = "token"
    try:
        import ray
    except ImportError:
        raise ConfigError("the Ray executor needs Ray, which is not installed: pip install 'layerlab[ray]' "
                          "(or pip install ray); or run without --executor ray") from None
    return ray


class Mailbox:
    """Writes from workers to the driver, in order (a Ray actor: its methods run one at a time).

    ``put`` numbers each write; the driver ``take``s them, applies them, and ``ack``s the last number
    applied, which ``acked`` tells a worker waiting for its writes to be durable."""

    def __init__(self) -> None:
        self.sent, self.applied, self.pending = 0, 0, []

    def put(self, message: tuple) -> int:
        self.sent += 1
        self.pending.append((self.sent, message))
        return self.sent

    def take(self) -> list[tuple[int, tuple]]:
        out, self.pending = self.pending, []
        return out

    def ack(self, seq: int) -> None:
        self.applied = max(self.applied, seq)

    def acked(self) -> int:
        return self.applied


class RemoteStore:
    """What a Ray worker trains through: the store's run-writing methods, each sent to the driver.

    Specs come with the task; checkpoints and probe arrays live under ``checkpoint_dir``."""

    def __init__(self, mailbox: Any, specs: dict[str, dict], checkpoint_dir: str) -> None:
        self.mailbox, self.specs, self.checkpoint_dir = mailbox, specs, Path(checkpoint_dir)

    def _send(self, method: str, *args: Any, **kwargs: Any) -> int:
        import ray

        return ray.get(self.mailbox.put.remote((method, args, kwargs)))

    def _until_applied(self, seq: int) -> None:
        import ray

        while ray.get(self.mailbox.acked.remote()) < seq:
            time.sleep(0.02)

    def spec(self, run_id: str) -> RunSpec:
        return RunSpec.from_dict(self.specs[run_id])

    def checkpoint_path(self, run_id: str) -> Path:
        return self.checkpoint_dir / f"{run_id}.pt"

    def _array_path(self, run_id: str, step: int, name: str) -> Path:
        return self.checkpoint_dir / "artifacts" / run_id / str(step) / (name.replace("/", "__") + ".npy")

    def mark_running(self, run_id: str, provenance: dict[str, Any]) -> None:
        self._send("mark_running", run_id, provenance, worker_pid=os.getpid())

    def finish(self, run_id: str, **kwargs: Any) -> None:
        self._send("finish", run_id, **kwargs)

    def write_metrics(self, run_id: str, rows: list, step: int | None = None) -> None:
        """The recorder's flush: durable (in the driver's store) when this returns; every earlier
        write of this worker was sent before it, so it is durable too."""
        self._until_applied(self._send("write_metrics", run_id, rows, step=step))

    def truncate_metrics(self, run_id: str, after_step: int) -> None:
        self._send("truncate_metrics", run_id, after_step)

    def add_event(self, run_id: str, message: str) -> None:
        self._send("add_event", run_id, message)

    def write_artifact(self, run_id: str, step: int, name: str, array: Any) -> None:
        import numpy as np
        import torch

        if isinstance(array, torch.Tensor):
            array = array.detach().cpu().numpy()
        array = np.asarray(array)
        path = self._array_path(run_id, step, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            np.save(f, array, allow_pickle=False)
        os.replace(tmp, path)
        self._send("write_artifact", run_id, step, name, array)

    def load_artifact(self, run_id: str, step: int, name: str) -> Any:
        import numpy as np

        path = self._array_path(run_id, step, name)
        return np.load(path, allow_pickle=False) if path.exists() else None

    def close(self) -> None:
        pass


def train_job(specs: dict[str, dict], run_ids: list[str], mailbox: Any, checkpoint_dir: str, device: str,
              threads: int) -> dict[str, str]:
    """The body of one Ray task: train (or resume) the job through a ``RemoteStore``."""
    import torch

    torch.set_num_threads(threads)
    return execute_group(RemoteStore(mailbox, specs, checkpoint_dir), run_ids, device=device)


class _RaySession(Session):
    def __init__(self, executor: RayExecutor, store_root: str | Path, device: str) -> None:
        self.ex, self.store, self.device = executor, Store(store_root), device
        self.checkpoint_dir = Path(executor.checkpoint_dir or self.store.root / "checkpoints").resolve()
        self._jobs: dict[Any, list[str]] = {}

    def __enter__(self) -> _RaySession:
        ray = import_ray()
        self._started = not ray.is_initialized()
        if self._started:
            kwargs: dict[str, Any] = {"address": self.ex.address, "include_dashboard": False,
                                      "log_to_driver": False, "configure_logging": False}
            if self.ex.address is None and self.ex.workers is not None:  # a local runtime of that size
                kwargs["num_cpus"] = self.ex.workers * self.ex.threads
            try:
                ray.init(**kwargs)
            except ConnectionError as e:
                raise ConfigError(f"cannot reach a Ray cluster at {self.ex.address!r}: {e}. Start one "
                                  "(`ray start --head`) or leave out --address for a local runtime") from None
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.capacity = self.ex.workers or max(1, cpus // self.ex.threads)
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        self.mailbox = ray.remote(Mailbox).options(num_cpus=0).remote()
        self._remote = ray.remote(train_job).options(
            num_cpus=self.ex.threads, num_gpus=1 if self.device.startswith("cuda") else 0,
            max_retries=self.ex.max_retries, retry_exceptions=False)
        return self

    def submit(self, job: list[str]) -> Any:
        specs = {rid: json.loads(self.store.run(rid)["spec_json"]) for rid in job}
        ref = self._remote.remote(specs, job, self.mailbox, str(self.checkpoint_dir), self.device, self.ex.threads)
        self._jobs[ref] = job
        return ref

    def _drain(self) -> None:
        """Apply the workers' writes to the store, in the order they were sent, and acknowledge them."""
        ray = import_ray()
        while messages := ray.get(self.mailbox.take.remote()):
            for _, (method, args, kwargs) in messages:
                if method not in _APPLIED:
                    raise RuntimeError(f"a worker sent an unknown store write {method!r}")
                getattr(self.store, method)(*args, **kwargs)
            ray.get(self.mailbox.ack.remote(messages[-1][0]))

    def wait(self, handles: Sequence[Any], timeout: float) -> dict[Any, dict[str, str]]:
        ray = import_ray()
        deadline = time.monotonic() + timeout
        while True:  # apply writes often: a worker's flush waits for them
            self._drain()
            ready, _ = ray.wait(list(handles), num_returns=len(handles), timeout=0.05)
            if ready or time.monotonic() > deadline:
                break
        self._drain()  # a task returns after its last write is sent
        out = {}
        for ref in ready:
            job = self._jobs.pop(ref)
            try:
                out[ref] = ray.get(ref)
            except Exception as e:  # retries spent: the worker kept dying
                for rid in job:
                    self.store.finish(rid, status="failed", error=f"Ray task failed: {type(e).__name__}: {e}")
                out[ref] = dict.fromkeys(job, "failed")
            for rid in job:
                self._keep_checkpoint(rid)
        return out

    def _keep_checkpoint(self, run_id: str) -> None:
        src, dst = self.checkpoint_dir / f"{run_id}.pt", self.store.checkpoint_path(run_id).resolve()
        if src.exists() and src != dst:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)

    def __exit__(self, *exc: object) -> None:
        ray = import_ray()
        for ref in list(self._jobs):
            ray.cancel(ref, force=True)
        self._drain()
        if self._started:
            ray.shutdown()
        self.store.close()


class RayExecutor(Executor):
    """Runs jobs as Ray tasks (see the module docstring).

    ``address``: None starts a local runtime in this process (``workers`` × ``threads`` CPUs);
    "auto" or "HOST:PORT" joins a running cluster. ``workers``: jobs in flight at once (default: the
    cluster's CPUs // ``threads``). ``threads``: torch threads, and CPUs asked, per task.
    ``checkpoint_dir``: where workers keep checkpoints (reachable from every node). ``max_retries``:
    how often Ray reruns a task whose worker died."""

    def __init__(self, address: str | None = None, workers: int | None = None, threads: int = 1, *,
                 checkpoint_dir: str | Path | None = None, max_retries: int = 3, vmap_seeds: bool = False,
                 lease_ttl_s: float = DEFAULT_TTL_S) -> None:
        import_ray(local=address is None)
        if workers is not None and workers < 1:
            raise ConfigError(f"--workers must be >= 1 (Ray tasks in flight at once), got {workers}")
        if threads < 1:
            raise ConfigError(f"--threads must be >= 1 (torch threads and CPUs per Ray task), got {threads}")
        if max_retries < 0:
            raise ConfigError(f"max_retries must be >= 0, got {max_retries}")
        if not lease_ttl_s > 0:
            raise ConfigError(f"the lease time-to-live must be > 0 seconds, got {lease_ttl_s}")
        self.address, self.workers, self.threads = address, workers, threads
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.max_retries, self.vmap_seeds, self.lease_ttl_s = max_retries, vmap_seeds, lease_ttl_s

    def session(self, store_root, *, device, on_progress):
        return _RaySession(self, store_root, device)
