"""Group-equivariant linear layers between tensor powers of R^n, spanned by diagram matrices.

One file per paper: partition.py (S_n, partition diagrams), brauer.py (O(n), Sp(n)), jellyfish.py
(A_n), graph_automorphism.py (Aut(G), bilabelled graphs); categorification.py evaluates any of their
diagrams as a tensor network (the fast form beside each dense reference). These take tensor inputs
``(*, c, n, ..., n)``, not token sequences, so they are plain modules (no registry kind fits) named in
the catalogue's ``systems``.
"""
from .brauer import BrauerLinear  # noqa: F401
from .graph_automorphism import GraphAutomorphismLinear  # noqa: F401
from .jellyfish import AlternatingLinear  # noqa: F401
from .partition import PartitionLinear, partition_diagrams, partition_matrix  # noqa: F401

__all__ = ["AlternatingLinear", "BrauerLinear", "GraphAutomorphismLinear", "PartitionLinear", "partition_diagrams", "partition_matrix"]
