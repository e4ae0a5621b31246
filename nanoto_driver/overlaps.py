"""Warm starts that would put two atoms on top of each other, and their local repair.

After a thin part reconstructs, an atom that the next design adds back starts on its
lattice site, where a neighbour may have moved. EAM tables extrapolate the embedding
energy linearly past their last density, so such a start lets CG dive towards -inf
(engine.COLLAPSE_EV_PER_ATOM). Such starts used to be dropped whole; ``repair_overlaps``
puts only the atoms around each overlap back on their lattice sites, so the rest of a
10^5-10^6-atom design keeps its relaxed positions.
"""

from __future__ import annotations

import math

import numpy as np

from .structure import Structure

#: atoms of a start closer than this fraction of the first-neighbour distance overlap
OVERLAP_FRACTION = 0.6
#: atoms within this many first-neighbour distances of an overlapping atom are reset in the
#: first round of a repair; each further round widens the region by the same amount. Two
#: distances cover the first three FCC shells, the atoms a reconstruction drags along.
REPAIR_SHELLS = 2.0
#: rounds before a repair gives up and the whole start goes back to the lattice
REPAIR_ROUNDS = 4


def _periodic_tree(structure: Structure, positions_a: np.ndarray):
    """cKDTree over (n, 3) positions Å with the structure's periodic axes wrapped; the free
    axes get room so that nothing wraps across them."""
    from scipy.spatial import cKDTree

    x = np.asarray(positions_a, dtype=float)
    lo, hi = structure.lattice.box_a()
    length = np.asarray(hi) - np.asarray(lo)
    periodic = np.asarray(structure.periodic)
    span = x.max(axis=0) - x.min(axis=0)
    x = np.where(periodic, np.mod(x - np.asarray(lo), length), x - x.min(axis=0))
    box = np.where(periodic, length, span + 10.0 * structure.lattice.a0_a)
    x = np.minimum(x, np.nextafter(box, 0))  # mod can round up to L itself
    return cKDTree(x, boxsize=box)


def _first_neighbour_a(structure: Structure) -> float:
    return structure.lattice.a0_a / math.sqrt(2.0)


def overlap_pairs(structure: Structure, occupancy: np.ndarray, positions_a: np.ndarray) -> np.ndarray:
    """(n_pairs, 2) site indices of present atoms closer than OVERLAP_FRACTION x the
    first-neighbour distance. Periodic axes wrap.

    occupancy : (n_sites,) bool; positions_a : (n_sites, 3) Å
    """
    sites = np.flatnonzero(occupancy)
    if len(sites) < 2:
        return np.empty((0, 2), dtype=np.int64)
    tree = _periodic_tree(structure, np.asarray(positions_a)[sites])
    pairs = tree.query_pairs(OVERLAP_FRACTION * _first_neighbour_a(structure), output_type="ndarray")
    return sites[pairs]


def repair_overlaps(structure: Structure, occupancy: np.ndarray,
                    positions_a: np.ndarray) -> tuple[np.ndarray, int]:
    """A start without overlapping atoms, as close to ``positions_a`` as a local reset allows.

    Round r puts every present atom within r x REPAIR_SHELLS first-neighbour distances (on
    the lattice) of an overlapping atom back on its lattice site, and checks again: a reset
    atom can land where another moved neighbour sits. After REPAIR_ROUNDS rounds every atom
    goes back to the lattice.

    occupancy : (n_sites,) bool; positions_a : (n_sites, 3) Å
    Returns ((n_sites, 3) positions Å, number of atoms put back on their sites; 0 if the
    start was clean, the number of present atoms if the repair fell back to the lattice).
    """
    out = np.array(positions_a, dtype=float, copy=True)
    pairs = overlap_pairs(structure, occupancy, out)
    if len(pairs) == 0:
        return out, 0
    sites = np.flatnonzero(occupancy)
    lattice_tree = _periodic_tree(structure, structure.positions_a[sites])
    reset = np.zeros(structure.n_sites, dtype=bool)
    for round_ in range(1, REPAIR_ROUNDS + 1):
        centres = lattice_tree.data[np.searchsorted(sites, np.unique(pairs))]  # their lattice sites, wrapped
        radius = round_ * REPAIR_SHELLS * _first_neighbour_a(structure)
        for near in lattice_tree.query_ball_point(centres, radius):
            reset[sites[near]] = True
        out[reset] = structure.positions_a[reset]
        pairs = overlap_pairs(structure, occupancy, out)
        if len(pairs) == 0:
            return out, int(reset.sum())
    out[occupancy] = structure.positions_a[occupancy]
    return out, len(sites)
