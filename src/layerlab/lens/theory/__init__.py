"""Closed forms the instruments are tested against, and the theory papers' predictions.

- ``deep_linear``: Saxe, McClelland & Ganguli 2013 mode trajectories of deep linear networks;
- ``linear_regression``: Advani & Saxe 2017 error curves of high-dimensional linear regression;
- ``kernels``: the infinite-width NTK (and NNGP) of a 2-layer ReLU network (arc-cosine kernels);
- ``infinite_width``, ``eigenlearning``: deep NNGP/NTK by the layer recursion, kernel regression, the eigenframework;
- ``finite_width``: PDLT (Roberts, Yaida & Hanin 2021) kurtosis of preactivations at criticality;
- ``quadratic``: neural quadratic models (Zhu et al. 2022), catapult dynamics;
- ``icl_linear_regression``: Zhang, Frei & Bartlett 2023, the LSA global minimum and its risk;
- ``iterative_newton``: Fu et al. 2023, Newton vs GD in context, Newton steps by linear attention;
- ``gated_rnn_attention``: Zucchet et al. 2023, a gated linear RNN that computes linear self-attention;
- ``dynamical_systems_framework``: Sieber et al. 2024, attention, S6 and the RG-LRU as one LTV system;
- ``curse_of_memory``: Wang, Li & Li 2023, memory functions and stable reparameterization;
- ``learning_to_integrate``: a linear RNN learning to integrate, its exact reduction;
- ``implicit_acceleration``: Arora, Cohen & Hazan 2018, the end-to-end update of balanced deep linear nets;
- ``autodiff_correctness``: Lee, Park & Aiken 2023, AD of ReLU networks at representable parameters;
- ``sparse_dendrites``: Ahmad & Hawkins 2016, false matches of a dendritic segment on sparse patterns;
- ``imbalanced_collapse``: Dang et al. 2023, the imbalanced bias-free UFM minimizer with MSE loss;
- ``boolean_influence``: Abbe et al. 2022, Boolean influence and the canonical-holdout error;
- ``bandlimited_features``: random features with bounded weights and their error floor;
- ``scattering``: Wiatowski & Bölcskei 2015, scattering-type feature extractors on frames;
- ``projection_head``: layer-wise feature weighting under a projection head;
- ``feature_contamination``: background features learned by ReLU networks;
- ``feature_emergence``: Tian 2025 (Li_2), the energy whose maxima are Fourier features;
- ``lazy_rich``: Kumar et al. 2023, the centred alpha-scaled model and its kernel limit;
- ``stability_norms``: Wu & Su 2023, sharpness as parameter norms at minima.
"""
from .deep_linear import (deep_linear_mode, deep_linear_rise_time, effective_initial_strength,
                          learning_rate_to_tau, mode_strengths)
from . import (autodiff_correctness, bandlimited_features, boolean_influence, curse_of_memory,
               dynamical_systems_framework, eigenlearning, feature_contamination, feature_emergence,
               finite_width, gated_rnn_attention, icl_linear_regression, imbalanced_collapse,
               implicit_acceleration, infinite_width, iterative_newton, lazy_rich, learning_to_integrate,
               projection_head, quadratic, scattering, sparse_dendrites, stability_norms)
from .kernels import TwoLayerReLU, arccos_kernel, relu_nngp, relu_ntk
from .linear_regression import (generalization_error, generalization_error_limit, mp_density, mp_edges,
                                training_error, training_error_limit)

__all__ = ["TwoLayerReLU", "arccos_kernel", "autodiff_correctness", "bandlimited_features",
           "boolean_influence", "curse_of_memory", "deep_linear_mode", "deep_linear_rise_time",
           "dynamical_systems_framework", "effective_initial_strength", "eigenlearning",
           "feature_contamination", "feature_emergence", "finite_width", "gated_rnn_attention",
           "generalization_error", "generalization_error_limit", "icl_linear_regression",
           "imbalanced_collapse", "implicit_acceleration", "infinite_width", "iterative_newton", "lazy_rich",
           "learning_rate_to_tau", "learning_to_integrate", "mode_strengths", "mp_density", "mp_edges",
           "projection_head", "quadratic", "relu_nngp", "relu_ntk", "scattering", "sparse_dendrites",
           "stability_norms", "training_error", "training_error_limit"]
