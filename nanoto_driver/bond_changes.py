"""Changes of first-neighbour bond vectors between two configurations: a local measure of rearrangement.

Uniform contraction by surface stress or the bending of a long beam move atoms far from their
lattice sites but change each bond little; an atom that hops, a thin part that reconstructs, a
collapse or a tear change some bond by a large fraction of its length (2.86 Å in Al).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from .shells import neighbor_pairs
from .structure import Structure


@lru_cache(maxsize=4)
def _bonds(cells: tuple[int, int, int], periodic: tuple[bool, bool, bool]) -> tuple[np.ndarray, np.ndarray]:
    src, dst, _ = neighbor_pairs(cells, periodic, 1)
    keep = src < dst
    return src[keep], dst[keep]


def bond_changes_a(structure: Structure, occupancy: np.ndarray, positions_a: np.ndarray,
                   reference_a: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(i, j, change): the first-neighbour bonds between occupied sites as (n_bonds,) site indices
    and the length (Å) of the change of each bond vector from ``reference_a`` to ``positions_a``
    (both (n_sites, 3) Å), periodic images taken into account."""
    i, j = _bonds(structure.lattice.cells, structure.periodic)
    both = occupancy[i] & occupancy[j]
    i, j = i[both], j[both]
    d = (positions_a[j] - positions_a[i]) - (reference_a[j] - reference_a[i])
    lo, hi = structure.lattice.box_a()
    for axis in np.flatnonzero(structure.periodic):  # the two ends may sit in different images
        length = hi[axis] - lo[axis]
        d[:, axis] -= length * np.round(d[:, axis] / length)
    return i, j, np.linalg.norm(d, axis=1)


def max_bond_change_a(structure: Structure, occupancy: np.ndarray, positions_a: np.ndarray,
                      reference_a: np.ndarray) -> float:
    """Largest change of a first-neighbour bond vector between two configurations (Å; 0 without bonds)."""
    change = bond_changes_a(structure, occupancy, positions_a, reference_a)[2]
    return float(change.max()) if change.size else 0.0


def rearranged_sites(structure: Structure, occupancy: np.ndarray, positions_a: np.ndarray,
                     reference_a: np.ndarray, limit_a: float) -> np.ndarray:
    """(n_sites,) bool: the occupied sites at either end of a bond whose vector changed by more
    than ``limit_a`` Å between ``reference_a`` and ``positions_a``."""
    i, j, change = bond_changes_a(structure, occupancy, positions_a, reference_a)
    out = np.zeros(structure.n_sites, bool)
    out[i[change > limit_a]] = True
    out[j[change > limit_a]] = True
    return out
