"""Built-in blocks; importing this package registers them."""
from . import activations, channels, mixers, norms  # noqa: F401
from . import activations_crrelu, activations_matrix, activations_mpgelu  # noqa: F401

__all__ = ["activations", "channels", "mixers", "norms"]
