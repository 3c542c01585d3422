"""Probe a stored run after the fact: `layerlab lens RUN_ID --probe hessian,spectra`."""
from __future__ import annotations

from typing import Any

from ..errors import DataError
from ..lens.probes import ProbeOutput, ProbeRunner
from ..models import build_model
from ..tasks import build_task
from ..train.checkpoint import load_checkpoint
from ..train.trainer import resolve_device
from .store import Store, StoreRecorder


def probe_checkpoint(store: Store, run_id: str, names: tuple[str, ...], *,
                     options: dict[str, dict[str, Any]] | None = None, batch_size: int = 256,
                     device: str = "cpu") -> tuple[int, ProbeOutput]:
    """Run probes on the run's latest checkpoint; record scalars and arrays at its step.

    Returns (step, output). The probes see the same probe batch as during training (the first
    `batch_size` validation examples), so their numbers extend the run's own probe series.
    """
    run_id = store.run(run_id)["run_id"]
    spec = store.spec(run_id)
    state, task, model = checkpoint_model(store, run_id, device)
    import torch

    dev, dtype = resolve_device(device), getattr(torch, spec.train.dtype)
    recorder = StoreRecorder(store, run_id)
    runner = ProbeRunner(names, options or {}, task, batch_size=batch_size, device=dev, dtype=dtype,
                         load_array=recorder.load_artifact)
    step = int(state["step"])
    from ..train.optim import lr_at

    out = runner(step, model, lr=lr_at(max(step - 1, 0), spec.train.steps, spec.optim))
    if out.scalars:
        store.write_metrics(run_id, [(step, "probe", k, v) for k, v in out.scalars.items()])
    for name, array in out.arrays.items():
        store.write_artifact(run_id, step, name, array)
    return step, out


def checkpoint_model(store: Store, run_id: str, device: str = "cpu") -> tuple[dict[str, Any], Any, Any]:
    """The run's latest checkpoint (its state dict), task and model with the checkpoint's weights
    loaded, in the run's dtype on ``device``, in train mode (as the trainer leaves it)."""
    run_id = store.run(run_id)["run_id"]
    spec = store.spec(run_id)
    state = load_checkpoint(store.checkpoint_path(run_id))
    if state is None:
        raise DataError(f"run {run_id} has no checkpoint in {store.root} (it has not reached its first "
                        "evaluation yet); run its suite first, or probe a finished run")
    task = build_task(spec.task.name, **spec.task.params)
    import torch

    model = build_model(spec.model, task).to(device=resolve_device(device), dtype=getattr(torch, spec.train.dtype))
    model.load_state_dict(state["model"])
    model.train()  # as the trainer leaves it; the probes switch to eval themselves
    return state, task, model
