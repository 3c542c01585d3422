"""Instruments: pure functions of (model, data) that observe learning, each checked against theory.

Modules: ``spectra`` (weight spectra, power laws, Marchenko–Pastur), ``krylov`` (Lanczos,
Hutchinson/Hutch++ and SLQ density of any symmetric operator), ``hessian`` (the Hessian as that
operator: products, eigenvalues, trace, density, edge of stability), ``curvature`` (the Hessian's
diagonal, its Gauss–Newton and residual parts as operators, the edge of stability of a run), ``ntk`` (empirical neural tangent kernel), ``similarity``
(CKA), ``collapse`` (neural collapse), ``landscape`` (mode connectivity, loss slices), ``permutation``
(weight matching before interpolation),
``dynamics`` (gradient/update norms, massive activations, attention entropy, activation
patterns), ``regions`` (exact linear regions on segments), ``lipschitz`` (local Lipschitz bounds),
``capacity`` (memory capacity), ``information`` (information plane), ``diffusion_entropy`` (DSE),
``depth`` (per-block contributions), ``diffroar``, ``simplicity``, ``layer_gradients`` and
``theory`` (closed forms they are tested against). ``probes`` attaches them to
a training run.

Every instrument is side-effect free (see ``side_effect_free``): training with it attached gives
bit-identical losses to training without it.
"""
from . import collapse, dynamics, hessian, krylov, landscape, ntk, probes, similarity, spectra, theory
from . import permutation
from . import capacity, depth, diffroar, diffusion_entropy, information, layer_gradients, lipschitz, regions, simplicity  # instruments helper (issue 17): after probes, registers its probes
from . import convergent, hash_codes, rsa  # RSA dissimilarity matrices; sparse prediction / spectral groups of units (Li et al. 2016); codes as hash codes: determinism and categorization (He et al. 2021)
from . import tail_compare  # spectra helper (issue 17): power law vs truncated power law / lognormal
from . import curvature  # curvature helper (issue 17): Hessian diagonal, Gauss-Newton/residual operators, edge of stability
from . import certify  # issue 17b: LP / low-rank SDP / exact (MILP) certification of ReLU MLPs
from . import inductive_bias  # issue 17b: -log2 P(test error <= eps) of sampled hypotheses (scaled noncentral chi-squared fit)
from . import feature_merging  # issue 17b: Iterative Feature Merging (functionally equivalent ReLU features), feature complexity
from . import fourier_ipr  # issue 17b: inverse participation ratio of weights in the DFT basis (Doshi et al. 2023)
from . import interaction_basis, patterns, variability, wdiscood  # issue 17b (features helper): LIB/IB + degeneracy, PatternNet, VCI, WDiscOOD; registers probes
from ._util import LossFn, side_effect_free

__all__ = ["LossFn", "capacity", "certify", "collapse", "convergent", "curvature", "depth", "diffroar", "diffusion_entropy", "dynamics", "feature_merging", "hash_codes", "hessian", "inductive_bias", "information", "krylov", "landscape", "layer_gradients", "lipschitz", "ntk", "permutation", "probes", "regions", "rsa", "simplicity",
           "side_effect_free", "similarity", "spectra", "tail_compare", "theory",
           "interaction_basis", "patterns", "variability", "wdiscood"]
