"""layerlab: a laboratory for neural-network building blocks."""
from .registry import Paper, build, names, register

__version__ = "0.1.0"
__all__ = ["Paper", "build", "names", "register", "__version__"]
