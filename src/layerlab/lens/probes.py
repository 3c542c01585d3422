"""Probes: instruments attached to a training run at chosen steps, writing into its record.

A probe is a function ``probe(ctx, **options) -> ProbeOutput`` registered by name. The trainer
calls every probe of ``spec.probes`` at the steps ``ProbeSpec.steps(total)`` gives (step 0 is the
initialization), with a ``ProbeContext``: the model, the task, a fixed probe batch (the first
examples of the validation split: probes never draw from the training stream), the loss on it,
the current learning rate and a per-run ``state`` dict for what a probe keeps between calls
(e.g. the kernel at initialization). Scalars are recorded as metrics of split ``"probe"`` named
``"<probe>/<key>"``; arrays are stored losslessly as files referenced from the run.

Every probe runs inside ``side_effect_free``: training with probes gives bit-identical losses
to training without them (tested).
"""
from __future__ import annotations

import inspect
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import ConfigError, ShapeError, unknown_name
from ..registry import Entry, Registry
from ._util import side_effect_free


@dataclass
class ProbeContext:
    model: nn.Module
    task: Any  # layerlab.tasks.Task
    batch: Any  # layerlab.tasks.Batch on the model's device, inputs in the model's dtype
    step: int
    lr: float
    state: dict[str, Any]
    load_array: Callable[[int, str], Tensor | None]  # (step, "<probe>/<key>") -> stored array
    optimizer: torch.optim.Optimizer | None = None  # the run's optimizer (read only); None offline
    grads: dict[str, Tensor] = field(default_factory=dict)  # the last step's gradients, by parameter name
    # module inputs/outputs on the whole probe batch from one forward pass shared by the probes of
    # this step (what each probe's registration says it captures), by module name; a probe
    # captures what is missing itself
    activations: dict[str, Tensor] = field(default_factory=dict)

    def loss_fn(self, model: nn.Module, batch: Any) -> Tensor:
        """The task's training loss of `model` on `batch` (a mean over scored positions)."""
        return self.task.loss(model(batch.inputs), batch)


@dataclass
class ProbeOutput:
    scalars: dict[str, float] = field(default_factory=dict)
    arrays: dict[str, Tensor] = field(default_factory=dict)
    # wall seconds of each probe in this call (``ProbeRunner``; "shared_pass": the one forward
    # pass of the probes that read activations); not a metric, so identical runs log identical rows
    seconds: dict[str, float] = field(default_factory=dict)


Probe = Callable[..., ProbeOutput]
Captures = Callable[[nn.Module], dict[str, str]]  # model -> {module name: "input" | "output"}
# probe name -> the probe, with its entry's meta "check" and "captures" (see register_probe)
PROBES: Registry[Entry] = Registry("probe")


def register_probe(name: str, *, check: Callable[[dict[str, Any]], None] | None = None,
                   captures: Captures | None = None) -> Callable[[Probe], Probe]:
    """Register a probe. `check(options)` raises ConfigError for bad option values (run by
    ``check_probes``, before any training); `captures(model)` names the module inputs/outputs the
    probe reads, captured for all the probes of a step in one forward pass (``shared_activations``)."""
    def deco(fn: Probe) -> Probe:
        PROBES.add(name, fn, check=check, captures=captures)
        return fn

    return deco


def _require(name: str, options: dict[str, Any], key: str, ok: Callable[[Any], bool], what: str) -> None:
    if key in options and not ok(options[key]):
        raise ConfigError(f"probes.options.{name}.{key} must be {what}, got {options[key]!r}")


def _is_int(v: Any, low: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= low


def probe_names() -> list[str]:
    return PROBES.names()


def _option_names(fn: Probe) -> list[str]:
    return [p.name for p in list(inspect.signature(fn).parameters.values())[1:]]


def check_probes(names: tuple[str, ...] | list[str], options: dict[str, dict[str, Any]]) -> None:
    """Unknown probe names or options fail before any training, naming the valid ones."""
    for name in names:
        if name not in PROBES:
            raise unknown_name("probe", name, PROBES)
    for name, opts in options.items():
        if name not in names:
            raise ConfigError(f"probes.options names probe {name!r}, which is not in probes.names "
                              f"{list(names)}; add it there or remove its options")
        if not isinstance(opts, dict):
            raise ConfigError(f"probes.options.{name} must be a table of options, got {opts!r}")
        valid = _option_names(PROBES[name])
        for key in opts:
            if key not in valid:
                raise unknown_name(f"option of probe {name!r}", key, valid)
        check = PROBES.entry(name).meta["check"]
        if check is not None:
            check(opts)


PROBE_COST_WARNING = 0.25  # probe time over training time above which a run says what to change
PROBE_COST_MIN_SECONDS = 1.0  # ...once the probes have taken this long (a short run needs no advice)


def probe_cost_warning(seconds: dict[str, float], total: float, train_seconds: float,
                       threshold: float | None = None, min_seconds: float | None = None) -> str | None:
    """A message naming the costliest probe and what to change, when the probes so far (`total`
    seconds, `seconds` by probe) took more than `threshold` of the training time and at least
    `min_seconds` (defaults: `PROBE_COST_WARNING`, `PROBE_COST_MIN_SECONDS`); else None."""
    threshold = PROBE_COST_WARNING if threshold is None else threshold
    min_seconds = PROBE_COST_MIN_SECONDS if min_seconds is None else min_seconds
    if train_seconds <= 0 or total < min_seconds or total <= threshold * train_seconds:
        return None
    name, worst = max(((n, t) for n, t in seconds.items() if n != "shared_pass"), key=lambda x: x[1],
                      default=("shared_pass", total))
    return (f"probes cost {total / train_seconds:.0%} of the training time so far ({total:.3g} s against "
            f"{train_seconds:.3g} s of training); {name!r} takes {worst / total:.0%} of it. Probe less "
            f"often (probes.every, probes.points, or probes.stride = {{{name} = 5}} for that probe alone) "
            f"or on fewer examples (probes.batch_size, or the probe's n_examples option)")


class ProbeRunner:
    """Runs the probes of one run; the trainer calls it at each probe step."""

    def __init__(self, names: tuple[str, ...], options: dict[str, dict[str, Any]], task: Any,
                 *, batch_size: int, device: torch.device, dtype: torch.dtype,
                 load_array: Callable[[int, str], Tensor | None] | None = None) -> None:
        check_probes(names, options)
        self.names, self.options, self.task = tuple(names), options, task
        split = "val" if "val" in task.eval_splits else task.eval_splits[0]
        batch = task.eval_set(split).slice(0, batch_size).to(device)
        if batch.inputs.is_floating_point():
            batch.inputs = batch.inputs.to(dtype)
        self.batch = batch
        self.state: dict[str, dict[str, Any]] = {name: {} for name in names}
        self.load_array = load_array or (lambda step, name: None)

    def __call__(self, step: int, model: nn.Module, *, lr: float,
                 optimizer: torch.optim.Optimizer | None = None,
                 names: tuple[str, ...] | None = None) -> ProbeOutput:
        """Run the probes (`names`: a subset of this runner's, by default all of them)."""
        out = ProbeOutput()
        active = self.names if names is None else names
        # side_effect_free sets the .grad fields aside; the probes read the step's gradients here
        grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
        t0 = time.perf_counter()
        activations = shared_activations(model, self.batch.inputs, active)
        if activations:
            out.seconds["shared_pass"] = time.perf_counter() - t0
        for name in active:
            t0 = time.perf_counter()
            ctx = ProbeContext(model=model, task=self.task, batch=self.batch, step=step, lr=lr,
                               state=self.state[name], load_array=self.load_array, optimizer=optimizer,
                               grads=grads, activations=activations)
            with side_effect_free(model):
                result = PROBES[name](ctx, **self.options.get(name, {}))
            out.scalars.update({f"{name}/{k}": float(v) for k, v in result.scalars.items()})
            out.arrays.update({f"{name}/{k}": v.detach().cpu() for k, v in result.arrays.items()})
            out.seconds[name] = time.perf_counter() - t0
        return out


# ---- one forward pass for the probes that read activations --------------------------------------
def _dynamics_modules(model: nn.Module) -> tuple[list[str], list[str], list[str]]:
    """(residual blocks, attention modules, threshold units) of the model."""
    import layerlab.lens.dynamics as dynamics

    return _block_names(model), dynamics.attention_modules(model), dynamics.threshold_modules(model)


def _reads(blocks: list[str], attention: list[str], units: list[str]) -> dict[str, str]:
    """What the dynamics probe reads: the blocks' outputs, the others' inputs."""
    return {**{n: "input" for n in attention + units}, **{n: "output" for n in blocks}}


def _dynamics_reads(model: nn.Module) -> dict[str, str]:
    return _reads(*_dynamics_modules(model))


def _head_input(model: nn.Module) -> dict[str, str]:
    return {"head": "input"} if isinstance(getattr(model, "head", None), nn.Linear) else {}


def _block_outputs(model: nn.Module) -> dict[str, str]:
    return {n: "output" for n in _block_names(model)}


def shared_activations(model: nn.Module, inputs: Any, probes: tuple[str, ...] | list[str]) -> dict[str, Tensor]:
    """What the given probes read (their registered `captures`), captured in one forward pass on
    `inputs`. A module two probes read in different kinds is left out: each captures it itself."""
    import layerlab.lens.dynamics as dynamics

    kinds: dict[str, str] = {}
    clash: set[str] = set()
    for name in probes:
        captures = PROBES.entry(name).meta["captures"]
        for module, kind in (captures(model) if captures else {}).items():
            if kinds.setdefault(module, kind) != kind:
                clash.add(module)
    kinds = {m: k for m, k in kinds.items() if m not in clash}
    try:
        return dynamics.capture(model, inputs, kind=kinds) if kinds else {}
    except ShapeError:  # some module has no tensor to capture: each probe then meets it itself
        return {}


# ---- built-in probes ------------------------------------------------------------------------
@register_probe("weights")
def weights_probe(ctx: ProbeContext, *, per_parameter: bool = True) -> ProbeOutput:
    """L2 norm of all weights together (``norm``) and of each parameter tensor (``<name>``).

    Under weight decay the total norm is the quantity grokking analyses track (Liu et al. 2022,
    "Omnigrok", arXiv:2210.01117): it falls as the network moves from memorizing to generalizing.
    """
    norms = {n: p.detach().double().norm() for n, p in ctx.model.named_parameters()}
    scalars = {"norm": torch.stack(list(norms.values())).square().sum().sqrt().item()}
    if per_parameter:
        scalars.update({n: v.item() for n, v in norms.items()})
    return ProbeOutput(scalars)


# ---- helpers shared by the probes ---------------------------------------------------------------
def scored(ctx: ProbeContext, n: int | None = None) -> tuple[Tensor, Tensor, Tensor | None]:
    """(inputs, targets, position) of the first `n` probe examples; `position` is the scored
    position of each token sequence (the last one where the loss mask is set), None for vectors."""
    b = ctx.batch
    n = len(b) if n is None else min(n, len(b))
    inputs, targets = b.inputs[:n], b.targets[:n]
    if b.mask is None or targets.dim() == 1:
        return inputs, targets, None
    mask = b.mask[:n]
    idx = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    position = torch.where(mask, idx, -1).amax(dim=1).clamp_min(0)
    return inputs, targets.gather(1, position[:, None])[:, 0], position


class TargetLogit(nn.Module):
    """f(i) = logit of example i's target class at its scored position: one output per example,
    the function whose tangent kernel the ``ntk`` probe follows.

    It takes example *indices* (a long tensor (n,)) rather than inputs, so that each example
    keeps its own target and position when an NTK method runs the model one example at a time
    (``vmap``), where the batch position of an input is not known."""

    def __init__(self, model: nn.Module, inputs: Tensor, targets: Tensor, position: Tensor | None) -> None:
        super().__init__()
        if len(inputs) != len(targets) or (position is not None and len(position) != len(inputs)):
            raise ShapeError(f"TargetLogit: inputs, targets and positions must have one row per example, got "
                             f"{len(inputs)}, {len(targets)} and {None if position is None else len(position)}")
        self.model = model
        self.register_buffer("inputs", inputs, persistent=False)
        self.register_buffer("targets", targets, persistent=False)
        self.register_buffer("position", position, persistent=False)

    def indices(self) -> Tensor:
        """The inputs to give it: every example's index."""
        return torch.arange(len(self.inputs), device=self.inputs.device)

    def forward(self, index: Tensor) -> Tensor:
        logits = self.model(self.inputs[index])
        if self.position is not None:
            logits = logits[torch.arange(len(index), device=index.device), self.position[index]]
        return logits.gather(1, self.targets[index][:, None])


def _check_ntk(options: dict[str, Any]) -> None:
    from .ntk import METHODS

    _require("ntk", options, "n_examples", lambda v: _is_int(v, 1), "an integer >= 1")
    _require("ntk", options, "method", lambda v: v in ("auto", *METHODS), f"one of {['auto', *METHODS]}")


@register_probe("ntk", check=_check_ntk)
def ntk_probe(ctx: ProbeContext, *, n_examples: int = 32, method: str = "auto") -> ProbeOutput:
    """Empirical NTK of the target-class logit on the first `n_examples` probe examples.

    Scalars: ``distance_from_init`` = kernel distance to the step-0 kernel (Fort et al. 2020,
    arXiv:2010.15110; 0 = the lazy regime), ``relative_change`` ‖K_t − K_0‖/‖K_0‖, ``alignment``
    (centered kernel–target alignment with the one-hot labels) and ``mean_diagonal``. Array:
    ``kernel`` (n × n). `method`: any of ``lens.ntk.empirical``'s, or ``"auto"``: structured
    derivatives for vector inputs (2-2.4x faster than Jacobian contraction on the benchmark's
    classifier), Jacobian contraction for token sequences (where structured was ~2x slower).
    """
    import layerlab.lens.ntk as ntk

    inputs, targets, position = scored(ctx, n_examples)
    f = TargetLogit(ctx.model, inputs, targets, position)
    if method == "auto":  # measured in benchmarks/lens.py: see the docstring
        method = "structured" if position is None else "jacobian"
    k = ntk.empirical(f, f.indices(), method=method, output="trace").double()
    if "k0" not in ctx.state:  # the kernel at initialization: kept, or read back after a resume
        k0 = k if ctx.step == 0 else ctx.load_array(0, "ntk/kernel")
        if k0 is not None:
            ctx.state["k0"] = k0.to(k)
    scalars = {"mean_diagonal": k.diagonal().mean().item(),
               "alignment": ntk.target_alignment(k, targets, centered=True).item()}
    if "k0" in ctx.state:
        scalars["distance_from_init"] = ntk.kernel_distance(ctx.state["k0"], k).item()
        scalars["relative_change"] = ntk.relative_change(ctx.state["k0"], k).item()
    return ProbeOutput(scalars, {"kernel": k})


@register_probe("dynamics", captures=_dynamics_reads)
def dynamics_probe(ctx: ProbeContext, *, per_block: bool = True) -> ProbeOutput:
    """Training signals of the current step: gradient norm (total and per block; the gradients
    of the step just taken as the optimizer used them, i.e. after clipping; absent at step 0), the largest activation over the median
    in each block's output (massive activations, Sun et al. 2024, arXiv:2402.17762), mean
    attention entropy per attention layer, and the number of distinct ReLU activation patterns
    the probe batch visits (Hanin & Rolnick 2019, arXiv:1906.00904)."""
    import layerlab.lens.dynamics as dynamics

    model, scalars = ctx.model, {}
    if ctx.grads:
        scalars["grad_norm"] = dynamics.gradient_norms(model, by="total", grads=ctx.grads)["total"]
        if per_block:
            by_block = dynamics.gradient_norms(model, by="block", grads=ctx.grads)
            scalars.update({f"grad_norm.{k}": v for k, v in by_block.items()})
    # one forward pass (shared with the other probes of the step) holds what all three read
    blocks, attention, units = _dynamics_modules(model)
    kinds = _reads(blocks, attention, units)
    acts = {n: ctx.activations[n] for n in kinds if n in ctx.activations}
    missing = {n: k for n, k in kinds.items() if n not in acts}
    if missing:
        acts.update(dynamics.capture(model, ctx.batch.inputs, kind=missing))
    outputs = {n: acts[n] for n in blocks if n in acts}
    if outputs:
        stats = dynamics.massive_activations(outputs)
        ratios = {k: float(v["ratio"]) for k, v in stats.items()}
        scalars["massive_ratio"] = max(ratios.values())
        if per_block:
            scalars.update({f"massive_ratio.{k}": v for k, v in ratios.items()})
    entropy = {}
    if attention:
        entropy = dynamics.attention_entropy(model, None, captured={n: acts[n] for n in attention if n in acts})
    for name, h in entropy.items():
        scalars[f"attention_entropy.{name}"] = h.mean().item()
    if entropy:
        scalars["attention_entropy"] = sum(h.mean().item() for h in entropy.values()) / len(entropy)
    ran = {n: acts[n] for n in units if n in acts}
    if ran:
        scalars["activation_patterns"] = float(dynamics.activation_patterns(model, None, preactivations=ran))
    return ProbeOutput(scalars)


def _block_names(model: nn.Module) -> list[str]:
    """The residual blocks of layerlab's backbones (``blocks.i`` or ``layers.i``)."""
    for attr in ("blocks", "layers"):
        seq = getattr(model, attr, None)
        if isinstance(seq, nn.ModuleList):
            return [f"{attr}.{i}" for i in range(len(seq))]
    return []


def _features(ctx: ProbeContext, modules: list[str], kind: str, n: int | None = None) -> dict[str, Tensor]:
    """Each module's output (or input) at the scored position of the first `n` probe examples, (n, d)."""
    import layerlab.lens.dynamics as dynamics

    inputs, _, position = scored(ctx, n)
    if all(m in ctx.activations for m in modules):  # the step's shared pass, on the whole probe batch
        acts = {m: ctx.activations[m][: len(inputs)] for m in modules}
    else:
        acts = dynamics.capture(ctx.model, inputs, modules, kind=kind)
    out = {}
    for name, a in acts.items():
        if position is not None and a.dim() == 3:
            a = a[torch.arange(len(a), device=a.device), position]
        out[name] = a.reshape(len(a), -1)
    return out


@register_probe("collapse", captures=_head_input)
def collapse_probe(ctx: ProbeContext) -> ProbeOutput:
    """Neural collapse of the features the head reads (the input of ``model.head``) at the scored
    positions: NC1–NC4 and the equinorm/equiangularity measures (Papyan, Han & Donoho 2020,
    arXiv:2008.08186), with the head's weight as the classifier, over the classes present in the
    probe batch (``n_classes``; the head's rows of the others are left out)."""
    import layerlab.lens.collapse as collapse

    head = getattr(ctx.model, "head", None)
    if not isinstance(head, nn.Linear):
        raise ConfigError("the collapse probe needs a model with a linear `head` (layerlab's backbones have one)")
    _, targets, _ = scored(ctx)
    features = _features(ctx, ["head"], "input")["head"]
    present = targets.unique()  # sorted; a probe batch need not hold every class
    if present.numel() < 2:
        return ProbeOutput()
    labels = torch.searchsorted(present, targets)
    bias = None if head.bias is None else head.bias[present]
    out = collapse.metrics(features, labels, head.weight[present], bias)
    out["n_classes"] = float(present.numel())
    return ProbeOutput(out)


@register_probe("similarity", captures=_block_outputs)
def similarity_probe(ctx: ProbeContext, *, n_examples: int = 256) -> ProbeOutput:
    """Linear CKA (Kornblith et al. 2019, arXiv:1905.00414) between each block's representation
    now and at initialization, on the first `n_examples` probe examples at the scored position:
    ``cka_init.<block>`` (1 = the representation has not changed up to rotation and scale).
    The step-0 features are stored as arrays ``features.<block>``."""
    import layerlab.lens.similarity as similarity

    blocks = _block_names(ctx.model)
    if not blocks:
        return ProbeOutput()
    feats = {k: v.double() for k, v in _features(ctx, blocks, "output", n_examples).items()}
    arrays: dict[str, Tensor] = {}
    if ctx.step == 0:
        ctx.state["init"] = feats
        arrays = {f"features.{k}": v for k, v in feats.items()}
    elif "init" not in ctx.state:
        loaded = {k: ctx.load_array(0, f"similarity/features.{k}") for k in blocks}
        if all(v is not None for v in loaded.values()):
            ctx.state["init"] = {k: v.to(feats[k]) for k, v in loaded.items()}
    scalars = {}
    for k, v in feats.items():
        init = ctx.state.get("init", {}).get(k)
        if init is not None:
            scalars[f"cka_init.{k}"] = float(similarity.cka(init, v))
    if scalars:
        scalars["cka_init_min"] = min(scalars.values())
    return ProbeOutput(scalars, arrays)


@register_probe("spectra")
def spectra_probe(ctx: ProbeContext, *, min_size: int = 50, arrays: bool = True) -> ProbeOutput:
    """Weight spectra (Martin & Mahoney, arXiv:1810.01075), one SVD per matrix. For every matrix
    (conv kernels per spatial position): ``stable_rank.<p>`` and ``spectral_norm.<p>`` (largest
    singular value); for matrices with at least `min_size` eigenvalues also the power-law
    exponent ``alpha.<p>``, alpha_sigma, ks_distance, n_spikes (above the Marchenko–Pastur edge)
    and effective_rank. Summaries ``alpha_mean``, ``stable_rank_mean``, ``spectral_norm_max``.
    Arrays ``esd.<p>``: the eigenvalues of WᵀW/N, from the M x M Gram matrix in float64 (2-3x
    faster than an SVD, ``lens.spectra.esd``'s default form; equal to the SVD within ~1e-16·λ_max)."""
    import layerlab.lens.spectra as spectra

    scalars: dict[str, float] = {}
    out_arrays: dict[str, Tensor] = {}
    alphas, ranks, norms = [], [], []
    for name, w in spectra._weights(ctx.model):
        s, n, m = spectra._singular_values(w, "per_position", gram=True)
        lam = torch.sort(s**2 / n).values
        ranks.append(spectra._stable_rank(s))
        norms.append(float(s[0]))
        scalars[f"stable_rank.{name}"], scalars[f"spectral_norm.{name}"] = ranks[-1], norms[-1]
        if arrays:
            out_arrays[f"esd.{name}"] = lam
        if s.numel() < min_size:
            continue
        scalars[f"effective_rank.{name}"] = spectra._effective_rank(s)
        scalars[f"n_spikes.{name}"] = float(spectra.marchenko_pastur(lam, aspect_ratio=n / m, matrix_size=m).n_spikes)
        try:
            fit = spectra.power_law(lam, min_log_spread=max(1e-4, torch.finfo(w.dtype).eps ** 0.5))
        except ShapeError:  # too few distinct tail values for a fit
            continue
        scalars.update({f"alpha.{name}": fit.alpha, f"alpha_sigma.{name}": fit.sigma,
                        f"ks_distance.{name}": fit.ks_distance})
        alphas.append(fit.alpha)
    if alphas:
        scalars["alpha_mean"] = sum(alphas) / len(alphas)
    if ranks:
        scalars["stable_rank_mean"] = sum(ranks) / len(ranks)
        scalars["spectral_norm_max"] = max(norms)
    return ProbeOutput(scalars, out_arrays)


def _check_hessian(options: dict[str, Any]) -> None:
    for key, low in (("k", 1), ("n_examples", 1), ("trace_samples", 0), ("max_iter", 1)):
        _require("hessian", options, key, lambda v, low=low: _is_int(v, low), f"an integer >= {low}")
    _require("hessian", options, "tol", lambda v: isinstance(v, int | float) and not isinstance(v, bool) and v > 0,
             "a positive number (the relative Ritz residual to stop at)")
    _require("hessian", options, "budget", lambda v: v is None or _is_int(v, 1),
             "a positive number of Hessian-vector products per warm call, or absent (converge every call)")
    _require("hessian", options, "preconditioned", lambda v: isinstance(v, bool), "true or false")
    defaults = {n: p.default for n, p in inspect.signature(hessian_probe).parameters.items()}
    max_iter, k = options.get("max_iter", defaults["max_iter"]), options.get("k", defaults["k"])
    if max_iter < k:
        raise ConfigError(f"probes.options.hessian: max_iter = {max_iter} is smaller than k = {k}; raise max_iter")


@register_probe("hessian", check=_check_hessian)
def hessian_probe(ctx: ProbeContext, *, k: int = 1, n_examples: int = 256, trace_samples: int = 0,
                  preconditioned: bool = False, max_iter: int = 100, tol: float = 1e-3,
                  budget: int | None = None) -> ProbeOutput:
    """Curvature of the loss on the probe batch: the top-`k` Hessian eigenvalues by Lanczos
    (``lambda_1`` = the sharpness), the edge-of-stability ratio ``gd_edge_ratio`` = sharpness ·
    lr / 2 (Cohen et al. 2021, arXiv:2103.00065: gradient descent is unstable above 1) and, with
    `preconditioned` under Adam/AdamW, the preconditioned sharpness and ``adam_edge_ratio``
    against Adam's threshold (2 + 2β1)/((1 − β1) lr) (Cohen et al. 2022, arXiv:2207.14484; a
    second Lanczos run). With `trace_samples` > 0 also the Hutch++ trace and its standard error.
    The Hessian is that of the loss on the first `n_examples` probe examples.

    Lanczos starts from the previous call's top eigenvector (warm start; the Hessian moves
    little between probes) and stops at a relative Ritz residual of `tol`: some eigenvalue lies
    within ``tol·max|θ|`` of the Ritz value, and for an isolated top its error is about the
    residual squared (1e-6 at the default; benchmarks/lens.py measured a median gap of 2e-7 and
    at most 1.3e-6 to tol = 1e-4 along a classifier run, at 5.5 products per call against 7.1).
    A clustered top, as at a deep linear network's saddle, takes many steps to reach the
    instrument's own 1e-10. ``residual`` (that relative residual) and ``products`` (the
    Hessian-vector products taken) are recorded at every call.

    Cost: the Hessian-vector products keep the gradient's graph of the call (double backward),
    so each is about one training step of a batch of `n_examples`, plus the Krylov arithmetic
    on vectors of the parameters' size (float32 for a float32 model, as precise as its products); a converged sharpness typically takes 3–15
    products per warm call. For a cheaper series look less often (``ProbeSpec.stride``) or on
    fewer examples (`n_examples`). `budget` caps the products of every warm call (the first call still
    converges, within `max_iter`): the probe then *tracks* the top eigenvector across calls, one
    short Krylov space per call, and its ``lambda_i`` are Ritz values, lower bounds of the true
    ones (exact when ``residual`` is 0; off by about ``residual²·max|λ|`` for an isolated top).
    This is cheap but only as good as the last vector: where the top eigenvector turns between
    calls, as early in training, a small budget misses the new top (benchmarks/lens.py: with
    budget 2, up to 70% below the converged sharpness on a classifier probed every 100 steps;
    on a fixed Hessian, 2 products per call reach 1e-6 relative in 30 calls). Read ``residual``."""
    import layerlab.lens.hessian as hessian

    _check_hessian({"k": k, "n_examples": n_examples, "trace_samples": trace_samples, "max_iter": max_iter,
                    "tol": tol, "budget": budget, "preconditioned": preconditioned})
    batch = ctx.batch.slice(0, n_examples)
    op = hessian.HessianOperator(ctx.model, ctx.loss_fn, [batch])
    gen = torch.Generator().manual_seed(ctx.step)
    start = ctx.state.get("top_vector")
    limit = max_iter if budget is None or start is None else max(k, budget)
    found = op.top_eigenpairs(k=min(k, op.dim), max_iter=limit, tol=tol, generator=gen, start_vector=start)
    if not found.converged and limit == max_iter:
        warnings.warn(f"hessian probe at step {ctx.step}: Lanczos did not converge in {found.products} "
                      f"products (relative residual {found.residual:.2e} > tol={tol:.0e}); raise "
                      "hessian.max_iter or tol", RuntimeWarning, stacklevel=2)
    ctx.state["top_vector"] = found.vectors[:, 0]
    scalars = {f"lambda_{i + 1}": float(v) for i, v in enumerate(found.values)}
    scalars["sharpness"] = scalars["lambda_1"]
    scalars["gd_edge_ratio"] = scalars["lambda_1"] * ctx.lr / 2
    scalars["residual"], scalars["products"] = found.residual, float(found.products)
    opt = ctx.optimizer
    if preconditioned and isinstance(opt, torch.optim.Adam | torch.optim.AdamW) and opt.state:
        pre = hessian.preconditioned_sharpness(ctx.model, ctx.loss_fn, [batch], opt, max_iter=max_iter, tol=tol)
        beta1 = opt.param_groups[0]["betas"][0]
        scalars["preconditioned_sharpness"] = float(pre)
        scalars["adam_edge_ratio"] = float(hessian.edge_of_stability(pre, ctx.lr, beta1))
    if trace_samples > 0:
        est, se = op.trace(n_samples=trace_samples, method="hutch++", generator=gen)
        scalars["trace"], scalars["trace_se"] = float(est), float(se)
    return ProbeOutput(scalars)


@register_probe("modes")
def modes_probe(ctx: ProbeContext) -> ProbeOutput:
    """A 2-layer deep linear network on ``linear_teacher``: each teacher mode's strength
    ``u.<α>`` = u_αᵀ W2 W1 v_α beside Saxe et al.'s closed form ``theory.<α>`` (arXiv:1312.6120)
    from the effective initial strength (``lens.theory.effective_initial_strength``) with
    τ = 1/lr steps (full-batch gradient descent at a constant learning rate, the loss of
    ``linear_teacher``), and the largest relative gap ``max_rel_error`` over modes that have
    risen above a tenth of their target."""
    from .theory import deep_linear_mode, effective_initial_strength

    model, task = ctx.model, ctx.task
    weights = getattr(model, "weights", None)
    if getattr(task, "name", "") != "linear_teacher" or weights is None or len(weights) != 2:
        raise ConfigError("the modes probe needs task 'linear_teacher' and backbone 'deep_linear' with "
                          "n_layers = 2; remove it from this run's probes")
    order = torch.argsort(task.S, descending=True)
    s, U, V = task.S[order], task.U[:, order], task.V[:, order]
    u = torch.einsum("oa,oi,ia->a", U, model.product().detach().double().cpu(), V)
    if "u0" not in ctx.state:
        if ctx.step == 0:
            ctx.state["u0"] = effective_initial_strength(weights[0].cpu(), weights[1].cpu(), U, V)
        else:
            stored = ctx.load_array(0, "modes/u0")
            if stored is not None:
                ctx.state["u0"] = stored.double()
    scalars = {f"u.{i}": float(v) for i, v in zip(order.tolist(), u)}
    arrays = {"u0": ctx.state["u0"]} if ctx.step == 0 and "u0" in ctx.state else {}
    if "u0" in ctx.state:
        theory = deep_linear_mode(torch.tensor(float(ctx.step), dtype=torch.float64), s, ctx.state["u0"],
                                  1.0 / ctx.lr)
        scalars.update({f"theory.{i}": float(v) for i, v in zip(order.tolist(), theory)})
        risen = theory > 0.1 * s
        if risen.any():
            scalars["max_rel_error"] = float(((u - theory).abs() / theory)[risen].max())
    return ProbeOutput(scalars, arrays)
