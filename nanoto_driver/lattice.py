"""FCC lattice sites in (b, i, j, k) index space.

Site order is C order over the grid shape (4, nx, ny, nz): site index
``s = ravel_multi_index((b, i, j, k), (4, nx, ny, nz))``, so any per-site array
reshapes to the sublattice grid the ML stage uses with ``.reshape(4, nx, ny, nz)``.
Positions: r = a0 * ((i, j, k) + basis[b]).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

#: basis of the conventional cubic cell, in units of a0; shape (4, 3)
FCC_BASIS = np.array([[0.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.5, 0.0, 0.5], [0.0, 0.5, 0.5]])


@dataclass(frozen=True)
class FccLattice:
    """An nx x ny x nz block of conventional FCC cells with lattice constant ``a0_a`` (Å)."""

    cells: tuple[int, int, int]
    a0_a: float

    def __post_init__(self) -> None:
        if len(self.cells) != 3 or min(self.cells) < 1:
            raise ValueError(f"cells must be three positive integers, got {self.cells}")
        if not self.a0_a > 0:
            raise ValueError(f"a0 must be positive, got {self.a0_a}")

    @property
    def grid_shape(self) -> tuple[int, int, int, int]:
        """(4, nx, ny, nz)."""
        return (4, *self.cells)

    @property
    def n_sites(self) -> int:
        return 4 * int(np.prod(self.cells))

    @cached_property
    def index(self) -> np.ndarray:
        """(n_sites, 4) int array of (b, i, j, k) per site, in site order."""
        grids = np.indices(self.grid_shape).reshape(4, -1)
        return np.ascontiguousarray(grids.T)

    @cached_property
    def positions_a(self) -> np.ndarray:
        """(n_sites, 3) perfect-lattice positions in Å."""
        idx = self.index
        return self.a0_a * (idx[:, 1:].astype(float) + FCC_BASIS[idx[:, 0]])

    def box_a(self) -> tuple[np.ndarray, np.ndarray]:
        """Box (lo, hi) in Å, each (3,): one cell per cell, shifted by a0/4 so no site sits on a face.

        Along a periodic axis this is exactly n * a0 long, so images continue the crystal.
        """
        lo = np.full(3, -0.25 * self.a0_a)
        hi = np.asarray(self.cells, float) * self.a0_a + lo
        return lo, hi

    def to_grid(self, per_site: np.ndarray) -> np.ndarray:
        """Reshape an (n_sites, ...) array to (4, nx, ny, nz, ...)."""
        return per_site.reshape(*self.grid_shape, *per_site.shape[1:])
