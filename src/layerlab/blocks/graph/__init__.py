"""Graph blocks: sheaf diffusion with connection Laplacians (sheaf.py), matrix-function layers
(matrix_function.py). They take node features on
a graph (edge_index), not token sequences, so they are plain modules named in the catalogue."""
from .matrix_function import MatrixFunctionLayer  # noqa: F401
from .sheaf import SheafDiffusion, connection_maps, sheaf_laplacian_apply, sheaf_laplacian_dense  # noqa: F401

__all__ = ["MatrixFunctionLayer", "SheafDiffusion", "connection_maps", "sheaf_laplacian_apply", "sheaf_laplacian_dense"]
