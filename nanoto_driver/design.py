"""Designs as boolean occupancy per site, and the checks a design must pass.

An occupancy is a (n_sites,) bool array in site order: True where an atom sits.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from .config import DesignConfig
from .errors import GeometryError
from .shells import neighbor_pairs
from .structure import CLAMP, LOAD, Structure


def _read_occupancy_file(path: Path, structure: Structure) -> np.ndarray:
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise GeometryError(f"cannot read design.occupancy_file {path}: {err}") from None
    shapes = ((structure.n_sites,), structure.lattice.grid_shape)
    if data.shape not in shapes:
        raise GeometryError(
            f"design.occupancy_file {path} has shape {data.shape}; expected one of {shapes}"
        )
    return data.reshape(-1).astype(bool)


def initial_occupancy(design: DesignConfig, structure: Structure, base_dir: str = ".") -> np.ndarray:
    """Full domain, minus ``remove_cells`` boxes, or read from ``occupancy_file``.

    Clamp and load sites are always occupied. Returns (n_sites,) bool.
    """
    if design.occupancy_file:
        occ = _read_occupancy_file(Path(base_dir) / design.occupancy_file, structure)
    else:
        occ = np.ones(structure.n_sites, bool)
    cell = structure.lattice.index[:, 1:]
    for box in design.remove_cells:
        lo, hi = np.array(box[0::2]), np.array(box[1::2])
        occ[np.all((cell >= lo) & (cell < hi), axis=1)] = False
    occ |= structure.fixed
    return occ


def components(structure: Structure, occupancy: np.ndarray) -> np.ndarray:
    """Label of the first-shell connected component of every site; -1 on empty sites."""
    src, dst, _ = neighbor_pairs(structure.lattice.cells, structure.periodic, shell=1)
    keep = occupancy[src] & occupancy[dst]
    n = structure.n_sites
    graph = coo_matrix((np.ones(keep.sum()), (src[keep], dst[keep])), shape=(n, n)).tocsr()
    _, labels = connected_components(graph, directed=False)
    return np.where(occupancy, labels, -1)


def check_load_path(structure: Structure, occupancy: np.ndarray) -> None:
    """Raise GeometryError unless one first-shell connected cluster holds clamp and load atoms."""
    if structure.load_mode != "group":
        return
    labels = components(structure, occupancy)
    shared = np.intersect1d(labels[structure.kind == CLAMP], labels[structure.kind == LOAD])
    if shared.size == 0:
        raise GeometryError(
            "the design has no load path: no chain of first-neighbour bonds joins the clamp to the "
            "load; change design.remove_cells or design.occupancy_file"
        )
