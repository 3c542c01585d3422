"""Efficiency techniques applied to a trained model (floor 8): pruning, activation sparsity,
post-training quantization, low rank. Each is registered in ``compress.registry.TECHNIQUES``
(one file per paper in this package); ``layerlab compress RUN_ID --technique NAME --level L``
applies one to a stored run's checkpoint and stores the result as a derived run.
"""
from .registry import TECHNIQUES, CompressContext, apply_technique, check_options, register_technique, technique_options
from . import wina  # noqa: F401  (registers "wina" and "teal")
from . import magnitude  # noqa: F401  (registers magnitude_uniform, magnitude_global)
from . import layer_adaptive  # noqa: F401  (registers layer_adaptive_dp)
from . import lrp_pruning  # noqa: F401  (registers lrp_pruning, taylor_pruning, unit_magnitude_pruning)
from . import mixed_precision, quantize  # noqa: F401  (registers rtn, hessian_mixed_precision)
from . import recurformer  # noqa: F401  (registers recurformer)

__all__ = ["TECHNIQUES", "CompressContext", "apply_technique", "check_options", "register_technique",
           "technique_options"]
