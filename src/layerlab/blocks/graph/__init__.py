"""Graph blocks: sheaf diffusion with connection Laplacians (sheaf.py). They take node features on
a graph (edge_index), not token sequences, so they are plain modules named in the catalogue."""
from .sheaf import SheafDiffusion, connection_maps, sheaf_laplacian_apply, sheaf_laplacian_dense  # noqa: F401

__all__ = ["SheafDiffusion", "connection_maps", "sheaf_laplacian_apply", "sheaf_laplacian_dense"]
