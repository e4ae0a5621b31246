"""nanoto diffusion-model stage (installed as ``nanoto_models``).

Placeholder package: the conditional diffusion model on (4, nx, ny, nz)
sublattice grids arrives with its own issue. torch is imported only there.
"""
