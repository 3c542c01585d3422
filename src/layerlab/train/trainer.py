"""The one training loop: every task, every model, every arena run goes through `Trainer.fit`.

Training methods (``spec.methods``, ``layerlab.methods``) plug into this one loop through hooks,
called in this order (where several methods override one hook, in the order the run lists them):

    once:   model built from the seed -> setup(model, run) -> make_optimizer(model, default)
            -> checkpoint loaded (model, optimizer, and each method's state)
    step t: batch drawn -> transform_batch -> forward -> task loss -> transform_loss
            -> backward -> gradient clipping (optim.grad_clip) -> transform_gradients
            -> optimizer step -> after_step

The recorded training loss is the loss after ``transform_loss`` (what the step minimised).
"""
from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..lens.probes import ProbeRunner, check_probes, probe_cost_warning
from ..methods import MethodStack, RunContext, check_methods
from ..models import build_model, count_parameters
from ..spec import RunSpec
from ..tasks import Task, build_task
from .checkpoint import CorruptCheckpoint, load_checkpoint, save_checkpoint
from .compile import compile_model, fall_back_to_eager
from .footprint import inference_state_size, train_step_memory
from .optim import build_optimizer, lr_at
from .recorder import MemoryRecorder, Recorder

DATA_SEED_SALT = 0x5DEECE66D  # the data stream's seed differs from the init seed, reproducibly


@dataclass
class RunResult:
    status: str  # "done", "diverged" or "interrupted"
    steps: int  # optimizer steps taken
    results: dict[str, dict[str, float]] = field(default_factory=dict)  # split -> metric -> value
    diverged_step: int | None = None
    stop_reason: str = ""  # "steps", "target", "time budget", "diverged", "interrupted"
    n_params: int = 0
    train_time_s: float = 0.0


def close_window(window: list[torch.Tensor], step: int) -> list[tuple[float, int | None]]:
    """Close a logging window: `window` holds the training loss of each step up to `step` since the last
    log (scalars, or one loss per seed of a group: shape (K,)). Per run: the window's mean loss and the
    step of its first non-finite loss (None: all finite). Empties the window."""
    columns = torch.stack(window).float().cpu().reshape(len(window), -1).T.tolist()
    window.clear()
    out = []
    for values in columns:
        bad = next((i for i, v in enumerate(values) if not math.isfinite(v)), None)
        out.append((sum(values) / len(values), None if bad is None else step - len(values) + bad + 1))
    return out


def resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class Trainer:
    """Train `spec.model` on `spec.task`, evaluating on validation, checkpointing, resuming.

    Determinism: the model is initialised from ``spec.seed`` and the data stream from its own
    generator, inside a forked RNG scope (the caller's global RNG is left untouched); on the CPU
    the same spec gives the same loss curve, also across a kill and resume.
    """

    def __init__(
        self,
        spec: RunSpec,
        *,
        task: Task | None = None,
        device: str | torch.device | None = "cpu",
        recorder: Recorder | None = None,
        checkpoint_path: str | Path | None = None,
        on_progress: Callable[[int, int], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> None:
        check_probes(spec.probes.names, spec.probes.options)  # before anything is built or trained
        check_methods(spec.methods)
        self.spec = spec
        self.task = task if task is not None else build_task(spec.task.name, **spec.task.params)
        self.device = resolve_device(device)
        self.dtype = getattr(torch, spec.train.dtype)
        self.recorder: Recorder = recorder if recorder is not None else MemoryRecorder()
        self.checkpoint_path = Path(checkpoint_path) if checkpoint_path else None
        self.on_progress = on_progress
        self.should_stop = should_stop
        self.model: nn.Module | None = None
        self.methods = MethodStack()

    # ------------------------------------------------------------------------------------
    def fit(self) -> RunResult:
        fork_devices = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=fork_devices):
            return self._fit()

    def _fit(self) -> RunResult:
        spec, task, tr = self.spec, self.task, self.spec.train
        torch.manual_seed(spec.seed)
        model = build_model(spec.model, task).to(device=self.device, dtype=self.dtype)
        self.model = model
        methods = self.methods = MethodStack.build(spec.methods)
        methods.setup(model, RunContext(seed=spec.seed, steps=tr.steps, device=self.device, dtype=self.dtype,
                                        loss=task.loss, input_kind=task.input_kind, n_outputs=task.n_outputs))
        optimizer = methods.make_optimizer(model, lambda: build_optimizer(model, spec.optim))
        data_gen = torch.Generator().manual_seed(spec.seed ^ DATA_SEED_SALT)
        result = RunResult(status="done", steps=0, n_params=count_parameters(model))

        start, prior_time, finished = self._resume(model, optimizer, data_gen)
        if tr.compile:
            compile_model(model)
        compiling = tr.compile  # until the first compiled step has run
        total = tr.steps
        model.train()
        window: list[torch.Tensor] = []
        step = start
        stop_reason = "steps"
        clip = spec.optim.grad_clip
        ckpt_every = tr.checkpoint_every or tr.eval_every
        t_start, side_time = time.perf_counter(), 0.0

        def train_time() -> float:  # wall time of this run's training steps, excluding evaluation
            return prior_time + time.perf_counter() - t_start - side_time

        probes = self._probe_runner(model) if spec.probes.names and not finished else None
        probe_steps = set(spec.probes.steps(total))
        if probes is not None and start == 0:
            t_side = time.perf_counter()
            self._probe(probes, 0, model, lr_at(0, total, spec.optim), optimizer)
            side_time += time.perf_counter() - t_side

        while step < total and not finished:
            if self.should_stop is not None and self.should_stop():
                stop_reason = "interrupted"
                break
            lr = lr_at(step, total, spec.optim)
            for group in optimizer.param_groups:
                group["lr"] = lr
            batch = task.train_batch(tr.batch_size, data_gen).to(self.device)
            if methods.has_batch:
                if batch.inputs.is_floating_point():
                    batch = type(batch)(batch.inputs.to(self.dtype), batch.targets, batch.mask)
                batch = methods.transform_batch(batch, step)
            inputs = batch.inputs.to(self.dtype) if batch.inputs.is_floating_point() else batch.inputs

            def forward_backward() -> torch.Tensor:
                outputs = model(inputs)
                loss = task.loss(outputs, batch)
                if methods.has_loss:
                    loss = methods.transform_loss(loss, outputs, batch, step)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                return loss

            if compiling:  # the first compiled call generates the kernels, or fails
                try:
                    loss = forward_backward()
                except Exception as e:  # noqa: BLE001 - any compiler failure: train eagerly
                    fall_back_to_eager(model, e)
                    self.recorder.event(f"train.compile failed ({type(e).__name__}); trained eagerly")
                    loss = forward_backward()
                compiling = False
            else:
                loss = forward_backward()
            if clip:  # None or 0: no clipping
                nn.utils.clip_grad_norm_(model.parameters(), clip)
            if methods.has_gradients:
                methods.transform_gradients(model, step)
            optimizer.step()
            if methods.has_after_step:
                methods.after_step(model, step)
            window.append(loss.detach())
            step += 1

            if step % tr.log_every == 0 or step == total:
                [(mean, bad)] = close_window(window, step)
                if bad is not None:
                    result.diverged_step = bad
                    stop_reason = "diverged"
                    break
                self.recorder.log(step, "train", {"loss": mean, "lr": lr})
                if self.on_progress is not None:
                    self.on_progress(step, total)

            evaluate = (tr.eval_every and step % tr.eval_every == 0) or step == total
            checkpoint = step < total and ckpt_every and step % ckpt_every == 0
            probe = probes is not None and step in probe_steps
            if evaluate or checkpoint or probe:
                trained, t_side = train_time(), time.perf_counter()
                if probe:
                    self._probe(probes, step, model, lr, optimizer)
                    self._check_probe_cost(trained)
                if evaluate and self._validate(model, step):
                    stop_reason = "target"
                if tr.time_budget_s is not None and train_time() >= tr.time_budget_s:
                    stop_reason = "time budget"
                if checkpoint and stop_reason == "steps":
                    self._checkpoint(model, optimizer, data_gen, step, train_time())
                side_time += time.perf_counter() - t_side
                if stop_reason != "steps":
                    break
        result.steps = step
        result.stop_reason = stop_reason
        result.train_time_s = elapsed = train_time()
        return self._conclude(result, model, lambda final: self._checkpoint(model, optimizer, data_gen, step,
                                                                            elapsed, final=final))

    # ------------------------------------------------------------------------------------
    # Pieces of the loop that SeedGroupTrainer (seed_group.py) shares, one run at a time.
    def _validate(self, model: nn.Module, step: int) -> bool:
        """Log the validation metrics at `step`; True once they reach ``train.target``."""
        tr, task = self.spec.train, self.task
        val = task.evaluate(model, "val", batch_size=tr.eval_batch_size)
        self.recorder.log(step, "val", val)
        return tr.target is not None and task.reached(val[task.metric], tr.target)

    def _conclude(self, result: RunResult, model: nn.Module, save: Callable[[bool], None]) -> RunResult:
        """The end of a fit (``result`` holds its steps, stop reason and training time): a diverged run
        says so, an interrupted one is checkpointed, a finished one is evaluated on every split and
        checkpointed as final (``save(final)`` writes the checkpoint)."""
        step, elapsed = result.steps, result.train_time_s
        if result.stop_reason == "diverged":
            result.status = "diverged"
            self.recorder.event(f"diverged: non-finite training loss at step {result.diverged_step}")
        elif result.stop_reason == "interrupted":
            result.status = "interrupted"
            save(False)
        else:
            result.results = self._final_evaluation(model)
            result.results["train"] = {"steps": float(step), "n_params": float(result.n_params),
                                       "time_per_step_ms": 1000.0 * elapsed / max(step, 1),
                                       **self._footprint(model)}
            if self.spec.probes.names:  # what the probes cost, over the whole run (resumes included)
                result.results["train"]["probe_time_s"] = self._probe_seconds
                result.results["train"]["probe_overhead"] = self._probe_seconds / max(elapsed, 1e-9)
                for name, seconds in self._probe_seconds_by.items():
                    result.results["train"][f"probe_time_s/{name}"] = seconds
            save(True)
        self.recorder.flush()
        return result

    # ------------------------------------------------------------------------------------
    def _probe_runner(self, model: nn.Module) -> ProbeRunner:
        p = self.spec.probes
        return ProbeRunner(p.names, p.options, self.task, batch_size=p.batch_size, device=self.device,
                           dtype=self.dtype, load_array=self.recorder.load_artifact)

    def _probe(self, probes: ProbeRunner, step: int, model: nn.Module, lr: float,
               optimizer: torch.optim.Optimizer) -> None:
        """Run the probes; they restore modes, gradients and RNG, so training is unaffected."""
        t0 = time.perf_counter()
        out = probes(step, model, lr=lr, optimizer=optimizer,
                     names=self.spec.probes.names_at(step, self.spec.train.steps))
        self._probe_seconds += time.perf_counter() - t0
        for name, seconds in out.seconds.items():
            self._probe_seconds_by[name] = self._probe_seconds_by.get(name, 0.0) + seconds
        if out.scalars:
            self.recorder.log(step, "probe", out.scalars)
        for name, array in out.arrays.items():
            self.recorder.artifact(step, name, array)

    def _check_probe_cost(self, train_seconds: float) -> None:
        """Say once per fit, as a warning and an event of the run, when the probes cost more than
        `PROBE_COST_WARNING` of the training time; judged from the third probe step on, so one
        costly first call (a cold Lanczos, a reference kernel) does not trip it."""
        self._probe_calls += 1
        if self._probe_cost_warned or self._probe_calls < 2:
            return
        message = probe_cost_warning(self._probe_seconds_by, self._probe_seconds, train_seconds)
        if message is not None:
            self._probe_cost_warned = True
            warnings.warn(message, RuntimeWarning, stacklevel=2)
            self.recorder.event(message)

    def _footprint(self, model: nn.Module) -> dict[str, float]:
        """Training memory of one step (MB) and inference state per sequence (scalars)."""
        tr, task = self.spec.train, self.task
        batch = task.train_batch(tr.batch_size, torch.Generator().manual_seed(0)).to(self.device)
        inputs = batch.inputs.to(self.dtype) if batch.inputs.is_floating_point() else batch.inputs
        slots = 2 if self.spec.optim.name == "adamw" else (1 if self.spec.optim.momentum else 0)
        out = {"peak_memory_mb": train_step_memory(model, lambda m: task.loss(m(inputs), batch),
                                                   optimizer_slots=slots) / 2**20}
        state = inference_state_size(model, task.max_length) if task.input_kind == "tokens" else None
        if state is not None:
            out["state_size"] = float(state)
        return out

    def _final_evaluation(self, model: nn.Module) -> dict[str, dict[str, float]]:
        bs = self.spec.train.eval_batch_size
        return {split: self.task.evaluate(model, split, batch_size=bs) for split in self.task.eval_splits}

    def _checkpoint(self, model: nn.Module, optimizer: torch.optim.Optimizer, data_gen: torch.Generator,
                    step: int, train_time: float, final: bool = False) -> None:
        if self.checkpoint_path is None:
            return
        self._write_checkpoint(model.state_dict(), optimizer.state_dict(), data_gen, step, train_time, final,
                               torch_rng=torch.get_rng_state(),
                               cuda_rng=torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None)

    def _write_checkpoint(self, model_state: dict[str, Any], optimizer_state: dict[str, Any],
                          data_gen: torch.Generator, step: int, train_time: float, final: bool, *,
                          torch_rng: torch.Tensor, cuda_rng: torch.Tensor | None = None) -> None:
        """The checkpoint format (one for the Trainer and the seed group), written atomically."""
        if self.checkpoint_path is None:
            return
        self.recorder.flush()  # metrics up to `step` are durable before the checkpoint says so
        state: dict[str, Any] = {
            "run_id": self.spec.run_id,
            "step": step,
            "final": final,
            "train_time": train_time,
            "probe_time": self._probe_seconds,
            "probe_times": dict(self._probe_seconds_by),
            "model": model_state,
            "optimizer": optimizer_state,
            "methods": self.methods.state_dict(),
            "data_rng": data_gen.get_state(),
            "torch_rng": torch_rng,
        }
        if cuda_rng is not None:
            state["cuda_rng"] = cuda_rng
        save_checkpoint(state, self.checkpoint_path)

    def _resume(self, model: nn.Module, optimizer: torch.optim.Optimizer,
                data_gen: torch.Generator) -> tuple[int, float, bool]:
        """Load the checkpoint if there is one: (start step, training time so far, finished)."""
        state = self._saved_state()
        if state is None:
            return 0, 0.0, False
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        self.methods.load_state_dict(state.get("methods", []))
        data_gen.set_state(state["data_rng"])
        torch.set_rng_state(state["torch_rng"])
        if "cuda_rng" in state and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)
        return int(state["step"]), float(state["train_time"]), bool(state.get("final"))

    def _saved_state(self) -> dict[str, Any] | None:
        """The run's checkpoint, or None (no checkpoint; a corrupt one or another run's is noted as an
        event and deleted, and the run starts from scratch). The recorder forgets what was logged after
        the checkpoint; the probes' time so far goes to ``_probe_seconds`` (by probe: ``_probe_seconds_by``)."""
        self._probe_seconds, self._probe_seconds_by = 0.0, {}
        self._probe_calls, self._probe_cost_warned = 0, False
        if self.checkpoint_path is None:
            return None
        try:
            state = load_checkpoint(self.checkpoint_path)
            if state is not None and state.get("run_id") != self.spec.run_id:
                raise CorruptCheckpoint(f"checkpoint {self.checkpoint_path} belongs to run "
                                        f"{state.get('run_id')}, not {self.spec.run_id}")
        except CorruptCheckpoint as e:
            self.recorder.event(f"{e}; restarting the run from scratch")
            self.checkpoint_path.unlink(missing_ok=True)
            state = None
        if state is None:
            self.recorder.truncate(0)
            return None
        self.recorder.truncate(state["step"])
        self.recorder.event(f"resumed from checkpoint at step {state['step']}")
        self._probe_seconds = float(state.get("probe_time", 0.0))
        self._probe_seconds_by = {k: float(v) for k, v in state.get("probe_times", {}).items()}
        return state
