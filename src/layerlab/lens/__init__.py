"""Instruments: pure functions of (model, data) that observe learning, each checked against theory.

Modules: ``spectra`` (weight spectra, power laws, Marchenko–Pastur, WeightWatcher-compatible fits
and metrics), ``tail_compare`` (likelihood-ratio tests of the tail), ``krylov`` (Lanczos,
Hutchinson/Hutch++ and SLQ density of any symmetric operator), ``hessian`` (the Hessian as that
operator: products, eigenvalues, trace, density, edge of stability), ``curvature`` (the Hessian's
diagonal, its Gauss–Newton and residual parts as operators, the edge of stability of a run), ``ntk``
(empirical neural tangent kernel), ``similarity`` (CKA, unit matching), ``convergent`` (sparse
prediction and spectral groups of units across networks), ``rsa`` (dissimilarity matrices),
``collapse`` (neural collapse), ``variability`` (variability collapse index), ``landscape`` (mode
connectivity, loss slices), ``permutation`` (weight matching before interpolation), ``dynamics``
(gradient/update norms, massive activations, attention entropy, activation patterns),
``hash_codes`` (activation codes as hash codes), ``regions`` (exact linear regions on segments),
``lipschitz`` (local Lipschitz bounds), ``certify`` (LP / low-rank SDP / exact robustness margins),
``capacity`` (memory capacity), ``information`` (information plane), ``diffusion_entropy`` (DSE),
``depth`` (per-block contributions), ``diffroar``, ``simplicity``, ``layer_gradients``,
``patterns`` (PatternNet / PatternAttribution), ``wdiscood`` (whitened-LDA OOD scores),
``interaction_basis`` (local interaction basis, degeneracy), ``feature_merging`` (iterative
feature merging), ``inductive_bias`` (bits of inductive bias), ``fourier_ipr`` (IPR of weights in
the DFT basis), ``outliers`` (max-to-mean ratio and kurtosis) and ``theory`` (closed forms they are
tested against). ``probes`` attaches them to a training run.

Every instrument is side-effect free (see ``side_effect_free``): training with it attached gives
bit-identical losses to training without it.
"""
from . import collapse, dynamics, hessian, krylov, landscape, ntk, probes, similarity, spectra, theory
# after probes: these modules register their probes
from . import (capacity, certify, convergent, curvature, depth, diffroar, diffusion_entropy, feature_merging, fourier_ipr,
               hash_codes, inductive_bias, information, interaction_basis, layer_gradients, lipschitz, patterns,
               permutation, regions, rsa, simplicity, tail_compare, variability, wdiscood)
from . import outliers  # issue 18: max-to-mean ratio and kurtosis of weights and Linear inputs
from ._util import LossFn, side_effect_free

__all__ = ["LossFn", "capacity", "certify", "collapse", "convergent", "curvature", "depth", "diffroar",
           "diffusion_entropy", "dynamics", "feature_merging", "fourier_ipr", "hash_codes", "hessian",
           "inductive_bias", "information", "interaction_basis", "krylov", "landscape", "layer_gradients",
           "lipschitz", "ntk", "outliers", "patterns", "permutation", "probes", "regions", "rsa", "side_effect_free",
           "similarity", "simplicity", "spectra", "tail_compare", "theory", "variability", "wdiscood"]
