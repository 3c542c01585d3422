"""Training methods (kind "method"): hooks the one Trainer calls, in a documented order.

``layerlab.names("method")`` lists them; a run composes them in its spec
(``RunSpec(methods=(MethodSpec("orthograd"), MethodSpec("gradient_noise", {"eta": 0.3})))``, or
``methods = [{ name = "orthograd" }, { name = "gradient_noise", eta = 0.3 }]`` in a suite), and
methods and options are part of the run's hash. The hooks and the order in which composed methods
apply: ``layerlab.methods.base``. Register your own with
``@layerlab.register("method", "name", paper=layerlab.Paper(...))`` on a ``Method`` subclass.

Layering: floor 4 (imports registry and errors only). The built-in methods, one module per paper
in this package, register themselves when this package is imported (every module but ``base`` is
imported below), which the facade ``layerlab/__init__.py`` does.
"""
import importlib as _importlib
import pkgutil as _pkgutil

from .base import (HOOKS, METHOD_SEP, METHODS, Method, MethodStack, RunContext, build_method, check_method,
                   check_methods, method_names)

__all__ = ["HOOKS", "METHOD_SEP", "METHODS", "Method", "MethodStack", "RunContext", "build_method",
           "check_method", "check_methods", "method_names"]

for _module in sorted(m.name for m in _pkgutil.iter_modules(__path__)):
    if _module != "base" and not _module.startswith("_"):
        _importlib.import_module(f"{__name__}.{_module}")
