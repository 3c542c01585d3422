"""Sequence mixers: (B, L, D) -> (B, L, D), causal. Importing this package registers them."""
from . import attention, delta, grassmann, griffin, hopfield, linear_attention, lru, mamba, rglru, s4d  # noqa: F401
from . import block_lrnn  # noqa: F401
from . import bilinear_rnn  # noqa: F401
from . import fixed_point_rnn  # noqa: F401
from . import slice_cde  # noqa: F401
from . import miras  # noqa: F401
from . import lssl  # noqa: F401
from . import spikegpt  # noqa: F401
from . import warp  # noqa: F401
from . import hyperzzw  # noqa: F401
from .attention import CausalSelfAttention
from .base import Mixer

__all__ = ["CausalSelfAttention", "Mixer"]
