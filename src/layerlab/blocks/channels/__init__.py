"""Channel mixers (MLP replacements): (..., D) -> (..., D). Importing this package registers them."""
from . import bcos, grkan, kan, kv_bottleneck, mlp, phm, snnk, tversky  # noqa: F401
from . import afkan, leurn, skan  # noqa: F401
from . import complex_valued, linearizer, lorentz  # noqa: F401
from .mlp import MLP, SwiGLU

__all__ = ["MLP", "SwiGLU"]
