"""Seeds at once: the seeds of one (task, model, lr) cell trained as one vmapped model.

K runs that differ only in their seed are K independent optimisation problems. Stacking each
parameter along a new leading dimension, θ = [θ_1; ...; θ_K], and mapping the model over it
(``torch.func.functional_call`` under ``torch.func.vmap``) computes all K forward and backward
passes in one batched call per operation:

    L(θ) = Σ_k L_k(θ_k)   so   ∂L/∂θ_k = ∂L_k/∂θ_k   (the runs share no parameter),

and AdamW and SGD are elementwise (their state for entry j of θ_k depends only on that entry's
gradients), so one optimizer over the stacked tensors equals K optimizers over the slices. The
rest stays per seed, as in ``Trainer``: the model built from the seed in the same RNG scope, the
data stream (seed ^ DATA_SEED_SALT), the learning-rate schedule, gradient clipping by each seed's
own global norm, the logging windows, validation, early stop (target, divergence, time budget:
a seed that stops is concluded from its slice and leaves the stack), the recorder, and the
checkpoint: each seed's checkpoint is the Trainer's format, so either loop resumes the other's.

What it pays for is per-operation overhead (one launch for K models): it is meant for GPUs and
tiny models. On a 2-core CPU it measured 0.6-1.3x per step (benchmarks/seeds.py), so it is the
option ``layerlab run --vmap-seeds``, not the default.

Supported: no training methods, no probes, AdamW or SGD, float dtypes, no train.compile, models
that are deterministic in training and leave their buffers alone; ``unsupported_reason`` says why
otherwise, and ``SeedGroupTrainer.fit`` then trains the seeds separately with the plain Trainer
(noting "trained separately: <why>" in each run), as it does when vmap fails on the first step.
"""
from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, vmap

from ..errors import ConfigError
from ..models import build_model, count_parameters
from ..spec import RunSpec
from ..tasks import Task, build_task
from ..tasks.base import Batch
from .checkpoint import CorruptCheckpoint, load_checkpoint
from .optim import decay_groups, lr_at, optimizer_for
from .recorder import Recorder
from .trainer import DATA_SEED_SALT, RunResult, Trainer, close_window, resolve_device

OPTIMIZERS = ("adamw", "sgd")  # elementwise: one optimizer over stacked tensors equals one per seed
SHARED_STATE = ("step",)  # optimizer state that is one number for every entry (and seed); the rest is per entry


def cell_key(spec: RunSpec) -> str:
    """What the seeds of one cell share: the run id of the spec with its seed set to 0."""
    return dataclasses.replace(spec, seed=0).run_id


def _check_group(specs: Sequence[RunSpec]) -> None:
    if not specs:
        raise ConfigError("a seed group needs at least one run spec")
    if len({cell_key(s) for s in specs}) != 1:
        raise ConfigError("a seed group trains runs that differ only in their seed; these specs differ in more "
                          "(group them by layerlab.train.seed_group.cell_key)")
    seeds = [s.seed for s in specs]
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"a seed group needs distinct seeds, got {seeds}")


def _stochastic_modules(model: nn.Module) -> list[str]:
    return [name or type(m).__name__ for name, m in model.named_modules()
            if isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0]


def unsupported_reason(specs: Sequence[RunSpec], task: Task | None = None) -> str | None:
    """Why these seeds cannot train as one vmapped model (None: they can). Checked from the specs
    (and one model built in a forked RNG scope, to find dropout); ``SeedGroupTrainer.fit`` also
    tries one step on a throwaway batch and falls back when vmap fails on an operation there."""
    _check_group(specs)
    spec = specs[0]
    if spec.methods:
        return f"training methods ({', '.join(m.name for m in spec.methods)}) hook into one model's loop"
    if spec.probes.names:
        return "probes look at one model at a time"
    if spec.optim.name not in OPTIMIZERS:
        return f"optimizer {spec.optim.name!r} is not elementwise (vmapped seeds take {', '.join(OPTIMIZERS)})"
    if not getattr(torch, spec.train.dtype).is_floating_point:
        return f"dtype {spec.train.dtype} is not a float dtype"
    if getattr(spec.train, "compile", False):
        return "train.compile compiles one model"
    task = task if task is not None else build_task(spec.task.name, **spec.task.params)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        stochastic = _stochastic_modules(build_model(spec.model, task))
    if stochastic:
        return f"the model is stochastic in training (dropout p > 0 in {', '.join(stochastic[:3])})"
    return None


def group_loss(task: Task, outputs: Tensor, batch: Batch) -> Tensor:
    """``task.loss`` in a form vmap can batch. The base loss (mean cross-entropy over the scored
    positions) selects them with a boolean mask, whose size depends on the data; the mask-weighted
    mean of the per-position cross-entropy, Σ m_i ce_i / Σ m_i, is the same quantity."""
    if batch.mask is None or type(task).loss is not Task.loss:
        return task.loss(outputs, batch)
    ce = F.cross_entropy(outputs.flatten(0, -2), batch.targets.flatten(), reduction="none")
    m = batch.mask.flatten().to(ce.dtype)
    return (ce * m).sum() / m.sum()


def _peek(member: Trainer) -> tuple[int, bool]:
    """(step, final) of a run's checkpoint without touching the run: (0, False) where there is none,
    or one the run will discard (corrupt, another run's)."""
    if member.checkpoint_path is None:
        return 0, False
    try:
        state = load_checkpoint(member.checkpoint_path)
    except CorruptCheckpoint:
        return 0, False
    if state is None or state.get("run_id") != member.spec.run_id:
        return 0, False
    return int(state["step"]), bool(state.get("final"))


class SeedGroupTrainer:
    """Train runs that differ only in their seed as one vmapped model; ``fit`` returns one
    ``RunResult`` per spec, in order, each what ``Trainer(spec).fit()`` returns up to float rounding.

    ``recorders``, ``checkpoint_paths`` and ``on_progress`` are per run (lists beside ``specs``);
    ``should_stop`` is shared (it interrupts the whole group: every seed checkpoints).
    """

    def __init__(
        self,
        specs: Sequence[RunSpec],
        *,
        task: Task | None = None,
        device: str | torch.device | None = "cpu",
        recorders: Sequence[Recorder | None] | None = None,
        checkpoint_paths: Sequence[str | Path | None] | None = None,
        on_progress: Sequence[Callable[[int, int], None] | None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> None:
        _check_group(specs)
        k = len(specs)
        for name, given in (("recorders", recorders), ("checkpoint_paths", checkpoint_paths),
                            ("on_progress", on_progress)):
            if given is not None and len(given) != k:
                raise ConfigError(f"SeedGroupTrainer: {name} has {len(given)} entries for {k} specs; give one per spec")
        self.specs = list(specs)
        self.task = task if task is not None else build_task(specs[0].task.name, **specs[0].task.params)
        self.device = resolve_device(device)
        self.should_stop = should_stop
        self.members = [Trainer(spec, task=self.task, device=self.device,
                                recorder=recorders[i] if recorders else None,
                                checkpoint_path=checkpoint_paths[i] if checkpoint_paths else None,
                                on_progress=on_progress[i] if on_progress else None, should_stop=should_stop)
                        for i, spec in enumerate(self.specs)]
        self.fallback_reason: str | None = None  # why the seeds were trained separately (None: as a group)

    # ------------------------------------------------------------------------------------
    def fit(self) -> list[RunResult]:
        results: list[RunResult | None] = [None] * len(self.specs)
        reason = unsupported_reason(self.specs, self.task)
        if reason is not None:
            return self._separately(range(len(self.specs)), reason, results)
        marks = [_peek(m) for m in self.members]
        finished = [i for i, (_, final) in enumerate(marks) if final]
        for i in finished:  # a concluded run only re-evaluates: nothing to batch
            results[i] = self.members[i].fit()
        rest = [i for i in range(len(self.specs)) if i not in finished]
        if len({marks[i][0] for i in rest}) > 1:
            steps = ", ".join(f"seed {self.specs[i].seed}: {marks[i][0]}" for i in rest)
            return self._separately(rest, f"the seeds' checkpoints are at different steps ({steps})", results)
        if rest:
            fork_devices = [self.device.index or 0] if self.device.type == "cuda" else []
            with torch.random.fork_rng(devices=fork_devices), warnings.catch_warnings():
                # vmap runs an op without a batching rule (CPU flash attention) as a loop, and warns at
                # every call site; the cost is what benchmarks/seeds.py measures
                warnings.filterwarnings("ignore", message=".*not yet implemented the batching rule.*")
                group = self._fit(rest)
            if isinstance(group, str):
                return self._separately(rest, group, results)
            for i, r in zip(rest, group):
                results[i] = r
        return [r for r in results if r is not None]

    def _separately(self, indices: Sequence[int], reason: str, results: list[RunResult | None]) -> list[RunResult]:
        self.fallback_reason = reason
        for i in indices:
            self.members[i].recorder.event(f"trained separately: {reason}")
            results[i] = self.members[i].fit()
        return [r for r in results if r is not None]

    # ------------------------------------------------------------------------------------
    def _fit(self, seeds: list[int]) -> list[RunResult] | str:
        """Train the runs `seeds` (indices into the specs) as one group: their results, or why they
        cannot be (then nothing of theirs was touched)."""
        spec, task, tr = self.specs[seeds[0]], self.task, self.specs[seeds[0]].train
        dtype = getattr(torch, tr.dtype)
        members = [self.members[i] for i in seeds]
        models, rng, cuda_rng = [], [], []
        for m in members:  # each model from its own seed, as Trainer._fit builds it
            torch.manual_seed(m.spec.seed)
            models.append(build_model(spec.model, task).to(device=self.device, dtype=dtype))
            rng.append(torch.get_rng_state())
            cuda_rng.append(torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None)
        self.template = template = _template(models[0])
        reason = self._trial(template, models, dtype)
        if reason is not None:
            return reason

        gens = [torch.Generator().manual_seed(m.spec.seed ^ DATA_SEED_SALT) for m in members]
        opt_states: list[dict[str, Any] | None] = []
        times, start = [], 0
        for m, model, gen, j in zip(members, models, gens, range(len(members))):
            state = m._saved_state()
            if state is None:
                opt_states.append(None)
                times.append(0.0)
                continue
            model.load_state_dict(state["model"])
            gen.set_state(state["data_rng"])
            rng[j] = state["torch_rng"]
            cuda_rng[j] = state.get("cuda_rng", cuda_rng[j])
            opt_states.append(state["optimizer"])
            times.append(float(state["train_time"]))
            start = int(state["step"])
        stack = _Stack(models, spec, opt_states)
        for m, model in zip(members, models):
            m.model = model  # each run's model holds its slice once the run concludes
        for m in members:
            m.recorder.event(f"trained as one vmapped group with seeds {', '.join(str(x.spec.seed) for x in members)}")

        results = [RunResult(status="done", steps=0, n_params=count_parameters(model)) for model in models]
        active = list(range(len(members)))  # positions in `members`; the stack holds these, in order
        window: list[Tensor] = []
        clip, total, step = spec.optim.grad_clip, tr.steps, start
        ckpt_every = tr.checkpoint_every or tr.eval_every
        batched = vmap(self._seed_loss, in_dims=(0, 0, 0, 0, 0), randomness="error")
        batched_nomask = vmap(lambda p, b, x, t: self._seed_loss(p, b, x, t, None), randomness="error")

        def conclude(j: int, reason: str) -> None:
            res = results[j]
            res.steps, res.stop_reason, res.train_time_s = step, reason, times[j]
            stack.load_into(active.index(j), models[j])
            save = lambda final: members[j]._write_checkpoint(  # noqa: E731
                models[j].state_dict(), stack.optimizer_state(active.index(j)), gens[j], step, times[j], final,
                torch_rng=rng[j], cuda_rng=cuda_rng[j])
            members[j]._conclude(res, models[j], save)

        while step < total and active:
            if self.should_stop is not None and self.should_stop():
                for j in list(active):
                    conclude(j, "interrupted")
                active = []
                break
            t0 = time.perf_counter()
            lr = lr_at(step, total, spec.optim)
            for group in stack.optimizer.param_groups:
                group["lr"] = lr
            batches = [task.train_batch(tr.batch_size, gens[j]).to(self.device) for j in active]
            x = torch.stack([b.inputs for b in batches])
            x = x.to(dtype) if x.is_floating_point() else x
            y = torch.stack([b.targets for b in batches])
            if batches[0].mask is None:
                losses = batched_nomask(stack.params, stack.buffers, x, y)
            else:
                losses = batched(stack.params, stack.buffers, x, y, torch.stack([b.mask for b in batches]))
            stack.optimizer.zero_grad(set_to_none=True)
            losses.sum().backward()  # the seeds share no parameter: each slice gets its own gradient
            if clip:
                stack.clip_per_seed(clip)
            stack.optimizer.step()
            window.append(losses.detach())
            step += 1

            stopped: dict[int, str] = {}
            if step % tr.log_every == 0 or step == total:
                for j, (mean, bad) in zip(list(active), close_window(window, step)):
                    if bad is not None:
                        results[j].diverged_step = bad
                        stopped[j] = "diverged"
                    else:
                        members[j].recorder.log(step, "train", {"loss": mean, "lr": lr})
                        if members[j].on_progress is not None:
                            members[j].on_progress(step, total)
            share = (time.perf_counter() - t0) / len(active)  # the step's wall time, split among its seeds
            for j in active:
                times[j] += share

            evaluate = (tr.eval_every and step % tr.eval_every == 0) or step == total
            checkpoint = step < total and ckpt_every and step % ckpt_every == 0
            if evaluate or checkpoint:
                for j in active:
                    if j in stopped:
                        continue
                    stack.load_into(active.index(j), models[j])
                    reached = evaluate and members[j]._validate(models[j], step)
                    if tr.time_budget_s is not None and times[j] >= tr.time_budget_s:  # as in Trainer: wins
                        stopped[j] = "time budget"
                    elif reached:
                        stopped[j] = "target"
                    elif checkpoint:
                        members[j]._write_checkpoint(models[j].state_dict(), stack.optimizer_state(active.index(j)),
                                                     gens[j], step, times[j], False,
                                                     torch_rng=rng[j], cuda_rng=cuda_rng[j])
            if step == total:
                for j in active:
                    stopped.setdefault(j, "steps")
            if stopped:
                for j in active:
                    if j in stopped:
                        conclude(j, stopped[j])
                keep = [p for p, j in enumerate(active) if j not in stopped]
                if window:
                    window[:] = [w[keep] for w in window]
                active = [active[p] for p in keep]
                if active:
                    stack.keep(keep)
        return results

    def _seed_loss(self, params: dict[str, Tensor], buffers: dict[str, Tensor], x: Tensor, y: Tensor,
                   mask: Tensor | None) -> Tensor:
        outputs = functional_call(self.template, (params, buffers), (x,))
        return group_loss(self.task, outputs, Batch(x, y, mask))

    def _trial(self, template: nn.Module, models: list[nn.Module], dtype: torch.dtype) -> str | None:
        """One vmapped forward and backward on copies, a throwaway batch and a forked RNG: why the
        group cannot train (vmap fails on an operation, the model draws random numbers or updates its
        buffers in training), or None."""
        spec = self.specs[0]
        params = {n: torch.stack([dict(m.named_parameters())[n].detach() for m in models]).requires_grad_()
                  for n, _ in models[0].named_parameters()}
        buffers = {n: torch.stack([dict(m.named_buffers())[n] for m in models]) for n, _ in models[0].named_buffers()}
        before = {n: b.clone() for n, b in buffers.items()}
        gen = torch.Generator().manual_seed(0)
        batches = [self.task.train_batch(spec.train.batch_size, gen).to(self.device) for _ in models]
        x = torch.stack([b.inputs for b in batches])
        x = x.to(dtype) if x.is_floating_point() else x
        y = torch.stack([b.targets for b in batches])
        mask = None if batches[0].mask is None else torch.stack([b.mask for b in batches])
        try:
            with torch.random.fork_rng(devices=[]):
                if mask is None:
                    loss = vmap(lambda p, b, x, t: self._seed_loss(p, b, x, t, None), randomness="error")(
                        params, buffers, x, y)
                else:
                    loss = vmap(self._seed_loss, randomness="error")(params, buffers, x, y, mask)
                loss.sum().backward()
        except Exception as e:  # noqa: BLE001 - whatever vmap cannot batch: train the seeds separately
            first = (str(e).strip().splitlines() or [""])[0][:200]
            if "randomness" in first or "random" in first.lower():
                return f"the model draws random numbers in training ({type(e).__name__}: {first})"
            return f"vmap failed on the first step ({type(e).__name__}: {first})"
        changed = [n for n, b in buffers.items() if not torch.equal(b, before[n])]
        if changed:
            return f"the model updates its buffers in training ({', '.join(changed[:3])})"
        return None


def _template(model: nn.Module) -> nn.Module:
    """The module functional_call runs with each seed's parameters (a copy: the seeds' own models
    keep their slices for evaluation and checkpoints)."""
    import copy

    template = copy.deepcopy(model)
    template.train()
    return template


class _Stack:
    """The active seeds' parameters and buffers stacked along dim 0, and one optimizer over them
    with ``decay_groups``' layout (so its state dict slices into each seed's Trainer state dict)."""

    def __init__(self, models: list[nn.Module], spec: RunSpec,
                 optimizer_states: Sequence[dict[str, Any] | None] | None = None) -> None:
        self.spec = spec
        named = [dict(m.named_parameters()) for m in models]
        names = {id(p): n for n, p in models[0].named_parameters()}
        self.params = {n: torch.stack([d[n].detach() for d in named]).requires_grad_(p.requires_grad)
                       for n, p in named[0].items()}
        self.buffers = {n: torch.stack([dict(m.named_buffers())[n] for m in models])
                        for n, _ in models[0].named_buffers()}
        self.groups = [[names[id(p)] for p in g["params"]] for g in decay_groups(models[0], spec.optim)]
        self.optimizer = optimizer_for([{"params": [self.params[n] for n in names_], "weight_decay": g["weight_decay"]}
                                        for names_, g in zip(self.groups, decay_groups(models[0], spec.optim))],
                                       spec.optim)
        if optimizer_states is not None and any(s is not None for s in optimizer_states):
            if any(s is None for s in optimizer_states):
                raise ConfigError("a seed group resumes only when every seed has a checkpoint at the same step")
            self.optimizer.load_state_dict(self._stacked_state(optimizer_states))

    def _stacked_state(self, states: Sequence[dict[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {"param_groups": states[0]["param_groups"], "state": {}}
        for idx, per_param in states[0]["state"].items():
            out["state"][idx] = {
                key: (torch.stack([s["state"][idx][key] for s in states])
                      if isinstance(v, Tensor) and key not in SHARED_STATE else v)
                for key, v in per_param.items()}
        return out

    def optimizer_state(self, k: int) -> dict[str, Any]:
        """Seed `k`'s optimizer state dict, as its own optimizer (``build_optimizer``) would hold it."""
        full = self.optimizer.state_dict()
        state = {}
        for idx, per_param in full["state"].items():
            state[idx] = {key: (v.clone() if key in SHARED_STATE else v[k].clone()) if isinstance(v, Tensor) else v
                          for key, v in per_param.items()}
        return {"state": state, "param_groups": full["param_groups"]}

    @torch.no_grad()
    def load_into(self, k: int, model: nn.Module) -> None:
        """Copy seed `k`'s slice into its own model (for evaluation and checkpoints)."""
        for n, p in model.named_parameters():
            p.copy_(self.params[n][k])
        for n, b in model.named_buffers():
            b.copy_(self.buffers[n][k])

    @torch.no_grad()
    def clip_per_seed(self, max_norm: float) -> None:
        """``clip_grad_norm_`` applied to each seed's gradients on their own (the global norm over
        that seed's parameters): g_k <- g_k * min(1, max_norm / (||g_k|| + 1e-6))."""
        grads = [p.grad for p in self.params.values() if p.grad is not None]
        if not grads:
            return
        norms = torch.stack([g.flatten(1).norm(dim=1) for g in grads], dim=1).norm(dim=1)  # (K,)
        coef = (max_norm / (norms + 1e-6)).clamp(max=1.0)
        for g in grads:
            g.mul_(coef.view(-1, *([1] * (g.ndim - 1))).to(g.dtype))

    def keep(self, positions: list[int]) -> None:
        """Drop the seeds that stopped: restack the rest (parameters, buffers, optimizer state)."""
        states = [self.optimizer_state(k) for k in positions]
        self.params = {n: p.detach()[positions].clone().requires_grad_(p.requires_grad)
                       for n, p in self.params.items()}
        self.buffers = {n: b[positions].clone() for n, b in self.buffers.items()}
        param_groups = self.optimizer.param_groups
        self.optimizer = optimizer_for([{"params": [self.params[n] for n in names_],
                                         "weight_decay": g["weight_decay"]}
                                        for names_, g in zip(self.groups, param_groups)], self.spec.optim)
        self.optimizer.load_state_dict(self._stacked_state(states))
