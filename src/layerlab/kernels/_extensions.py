"""Building layerlab's optional C++ kernels: once, on first use, with a PyTorch fallback.

Each kernel module (``selective_scan``, ``bspline``) keeps its C++ source beside it and makes a
``LazyExtension`` from a build function that calls :func:`compile_inline`. The first call
compiles (torch.utils.cpp_extension with g++ and ninja) into ``$LAYERLAB_EXTENSIONS_DIR`` or
``~/.cache/layerlab/extensions``, under a directory named by the torch version; later calls, and
other processes, load the cached build. ``LAYERLAB_NO_EXTENSIONS=1`` switches every kernel off;
a build that fails warns once and the caller's PyTorch form serves.
"""
from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

NO_EXTENSIONS_ENV = "LAYERLAB_NO_EXTENSIONS"
EXTENSIONS_DIR_ENV = "LAYERLAB_EXTENSIONS_DIR"


def extensions_dir() -> Path:
    base = os.environ.get(EXTENSIONS_DIR_ENV) or Path.home() / ".cache" / "layerlab" / "extensions"
    return Path(base) / f"torch{torch.__version__.replace('+', '_')}"


def cpu_flags() -> list[str]:
    """AVX2/FMA code where this CPU has them (the module name records it, so a cache directory
    shared by other CPUs never hands them an instruction they lack)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = set(next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), []))
    return ["-mavx2", "-mfma"] if {"avx2", "fma"} <= flags else []


def compile_inline(stem: str, source: Path, functions: Sequence[str], cflags: Sequence[str]) -> object:
    """Compile (or load the cached build of) ``source`` as module ``layerlab_<stem>[_avx2]``,
    exporting ``functions``, with ``cflags`` plus this CPU's ISA flags and OpenMP at link time."""
    from torch.utils import cpp_extension

    isa = cpu_flags()
    name = f"layerlab_{stem}" + ("_avx2" if isa else "")
    directory = extensions_dir() / name
    directory.mkdir(parents=True, exist_ok=True)
    return cpp_extension.load_inline(
        name=name, cpp_sources=[source.read_text()], functions=list(functions),
        extra_cflags=[*cflags, *isa], extra_ldflags=["-fopenmp"], build_directory=str(directory), verbose=False)


class LazyExtension:
    """``ext()``: the compiled kernel, built on the first call; None where it is switched off
    (``LAYERLAB_NO_EXTENSIONS=1``) or cannot be built (then one RuntimeWarning names the cause
    and the ``fallback``)."""

    def __init__(self, build: Callable[[], object], *, what: str, fallback: str) -> None:
        self.build, self.what, self.fallback = build, what, fallback
        self.module: object | None = None
        self.tried = False

    def __call__(self) -> object | None:
        if os.environ.get(NO_EXTENSIONS_ENV, "") not in ("", "0"):
            return None
        if not self.tried:
            self.tried = True
            try:
                self.module = self.build()
            except Exception as err:  # no compiler, no ninja, a failed build: the PyTorch form serves
                first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
                warnings.warn(f"layerlab: {self.what} could not be built ({first}); using the {self.fallback} "
                              f"(slower; set {NO_EXTENSIONS_ENV}=1 to silence this)", RuntimeWarning, stacklevel=4)
                self.module = None
        return self.module

    def serves(self, tensors: Sequence[torch.Tensor]) -> bool:
        """Whether the kernel can take these tensors: all on the CPU, no torch.func transform active
        (the kernels have no batching rules), and the kernel built."""
        if any(t.device.type != "cpu" for t in tensors):
            return False
        if torch._C._functorch.peek_interpreter_stack() is not None:  # vmap, grad, jvp of torch.func
            return False
        return self() is not None


def fresh_inputs(*tensors: torch.Tensor | None) -> list[torch.Tensor | None]:
    """Aliases of a Function's saved inputs, new nodes of the graph, for a backward that recomputes
    the PyTorch form and differentiates it with ``create_graph`` (the compiled kernels' double
    backward). ``torch.autograd.grad`` with respect to the inputs themselves would also follow the
    paths from one input to another (Mamba's delta is computed from its x; RG-LRU's b from its a)
    and count those gradients twice; w.r.t. the aliases it sees only the recomputation, while the
    result stays differentiable through the aliases back to the inputs' history."""
    return [t if t is None else t.view_as(t) for t in tensors]
