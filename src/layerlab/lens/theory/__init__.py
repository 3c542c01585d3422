"""Closed forms the instruments are tested against.

- ``deep_linear``: Saxe, McClelland & Ganguli 2013 mode trajectories of deep linear networks;
- ``linear_regression``: Advani & Saxe 2017 error curves of high-dimensional linear regression;
- ``kernels``: the infinite-width NTK (and NNGP) of a 2-layer ReLU network (arc-cosine kernels);
- ``finite_width``: PDLT (Roberts, Yaida & Hanin 2021) kurtosis of preactivations at criticality;
- ``icl_linear_regression``: Zhang, Frei & Bartlett 2023, the LSA global minimum and its risk;
- ``implicit_acceleration``: Arora, Cohen & Hazan 2018, the end-to-end update of balanced deep linear nets;
- ``autodiff_correctness``: Lee, Park & Aiken 2023, AD of ReLU networks at representable parameters;
- ``sparse_dendrites``: Ahmad & Hawkins 2016, false matches of a dendritic segment on sparse patterns;
- ``imbalanced_collapse``: Dang et al. 2023, the imbalanced bias-free UFM minimizer with MSE loss;
- ``boolean_influence``: Abbe et al. 2022, Boolean influence and the canonical-holdout error.
"""
from .deep_linear import (deep_linear_mode, deep_linear_rise_time, effective_initial_strength,
                          learning_rate_to_tau, mode_strengths)
from . import (autodiff_correctness, boolean_influence, finite_width, icl_linear_regression, implicit_acceleration,  # theory helper
               imbalanced_collapse, sparse_dendrites)  # (issue 17)
from . import eigenlearning, infinite_width  # deep NNGP/NTK, kernel regression, eigenframework (issue 17)
from .kernels import TwoLayerReLU, arccos_kernel, relu_nngp, relu_ntk
from . import quadratic  # curvature helper (issue 17): neural quadratic models (Zhu et al. 2022)
from . import bandlimited_features, feature_contamination, learning_to_integrate, projection_head, scattering  # issue 17b
from . import dynamical_systems_framework  # issue 17b: attention, S6, RG-LRU as one LTV system (Sieber et al. 2024)
from . import gated_rnn_attention  # issue 17b: a gated linear RNN that computes linear self-attention (Zucchet et al. 2023)
from . import iterative_newton  # issue 17b: Newton vs GD for in-context regression, Newton by linear attention (Fu et al. 2023)
from . import curse_of_memory  # issue 17b: memory functions, perturbed RNN fits, stable reparameterization (Wang, Li & Li 2023)
from . import feature_emergence, lazy_rich, stability_norms  # issue 17b: Li_2 energy (Tian 2025), centred alpha (f - f0) (Kumar et al. 2023), sharpness as norms (Wu & Su 2023)
from .linear_regression import (generalization_error, generalization_error_limit, mp_density, mp_edges,
                                training_error, training_error_limit)

__all__ = ["TwoLayerReLU", "autodiff_correctness", "boolean_influence", "eigenlearning", "finite_width", "icl_linear_regression",
           "imbalanced_collapse", "implicit_acceleration", "sparse_dendrites", "bandlimited_features", "feature_contamination", "learning_to_integrate", "projection_head", "scattering", "infinite_width", "quadratic", "arccos_kernel", "deep_linear_mode", "deep_linear_rise_time",
           "effective_initial_strength", "generalization_error", "generalization_error_limit",
           "learning_rate_to_tau", "mode_strengths", "mp_density", "mp_edges", "relu_nngp", "relu_ntk",
           "training_error", "training_error_limit"]
