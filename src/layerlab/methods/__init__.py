"""Training methods (kind "method"): hooks the one Trainer calls, in a documented order.

``layerlab.names("method")`` lists them; a run composes them in its spec
(``RunSpec(methods=(MethodSpec("orthograd"), MethodSpec("gradient_noise", {"eta": 0.3})))``, or
``methods = [{ name = "orthograd" }, { name = "gradient_noise", eta = 0.3 }]`` in a suite), and
methods and options are part of the run's hash. The hooks and the order in which composed methods
apply: ``layerlab.methods.base``. Register your own with
``@layerlab.register("method", "name", paper=layerlab.Paper(...))`` on a ``Method`` subclass.

Layering: floor 4 (imports registry and errors only; the built-in methods register themselves
when this package is imported, which the facade ``layerlab/__init__.py`` does).
"""
from . import gradient_noise, mixup, orthograd  # noqa: F401  (register the built-in methods)
from .base import (HOOKS, METHOD_SEP, METHODS, Method, MethodStack, RunContext, build_method, check_method,
                   check_methods, method_names)

__all__ = ["HOOKS", "METHOD_SEP", "METHODS", "Method", "MethodStack", "RunContext", "build_method",
           "check_method", "check_methods", "method_names"]
