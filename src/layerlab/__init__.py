"""layerlab: a laboratory for neural-network building blocks.

This facade sits above every floor of the package (DESIGN.md): it imports the registry
(floor 1), then the built-in blocks (floor 3) and training methods (floor 4), which register themselves in it. Python runs
this file before any submodule, so every import of layerlab sees the built-in blocks, and the
registry needs no import of the blocks above it.
"""
from . import blocks  # noqa: F401  (registers the built-in blocks)
from . import methods  # noqa: F401  (registers the built-in training methods)
from .registry import Paper, build, names, register

__version__ = "0.1.0"
__all__ = ["Paper", "build", "names", "register", "__version__"]
