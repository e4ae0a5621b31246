"""Load cases (method.md §2): cantilever, pillar and the periodic bulk block.

Each builder maps a validated ``DomainConfig`` and a lattice constant to a
``Structure`` with its clamp, load and design site sets.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .config import DomainConfig
from .errors import GeometryError
from .lattice import FccLattice
from .structure import CLAMP, DESIGN, LOAD, Structure


def _layers(lattice: FccLattice, axis: int, clamp_cells: int, load_cells: int) -> np.ndarray:
    """Kind per site: the first ``clamp_cells`` cells along ``axis`` clamp, the last ``load_cells`` load."""
    cell = lattice.index[:, 1 + axis]
    n = lattice.cells[axis]
    kind = np.full(lattice.n_sites, DESIGN, np.int8)
    kind[cell < clamp_cells] = CLAMP
    kind[cell >= n - load_cells] = LOAD
    return kind


def cantilever(domain: DomainConfig, a0_a: float) -> Structure:
    """Beam along x clamped at x = 0, free end pushed along -y; z periodic or finite.

    ``domain.load_span`` = [j0, j1) limits the load to those y cells of the free end (a load
    at the top, middle or bottom); the rest of the end layers are design sites.
    """
    lattice = FccLattice(domain.cells, a0_a)
    kind = _layers(lattice, 0, domain.clamp_cells, domain.load_cells)
    if domain.load_span is not None:
        j = lattice.index[:, 2]
        kind[(kind == LOAD) & ((j < domain.load_span[0]) | (j >= domain.load_span[1]))] = DESIGN
    return Structure(
        lattice=lattice,
        kind=kind,
        periodic=(False, False, domain.thickness == "periodic"),
        load_mode="group",
        load_direction=np.array([0.0, -1.0, 0.0]),
        load_axis=1,
        reference_length_a=domain.cells[0] * a0_a,
    )


def pillar(domain: DomainConfig, a0_a: float) -> Structure:
    """Pillar along z: bottom layers clamped, top layers pushed down (compression), sides free."""
    lattice = FccLattice(domain.cells, a0_a)
    return Structure(
        lattice=lattice,
        kind=_layers(lattice, 2, domain.clamp_cells, domain.load_cells),
        periodic=(False, False, False),
        load_mode="group",
        load_direction=np.array([0.0, 0.0, -1.0]),
        load_axis=2,
        reference_length_a=domain.cells[2] * a0_a,
    )


def bulk(domain: DomainConfig, a0_a: float) -> Structure:
    """Fully periodic block stretched homogeneously along x (gives C11)."""
    lattice = FccLattice(domain.cells, a0_a)
    return Structure(
        lattice=lattice,
        kind=np.full(lattice.n_sites, DESIGN, np.int8),
        periodic=(True, True, True),
        load_mode="box",
        load_direction=np.array([1.0, 0.0, 0.0]),
        load_axis=0,
        reference_length_a=domain.cells[0] * a0_a,
    )


LOAD_CASES: dict[str, Callable[[DomainConfig, float], Structure]] = {
    "cantilever": cantilever,
    "pillar": pillar,
    "bulk": bulk,
}


def build_structure(domain: DomainConfig, a0_a: float, cutoff_a: float | None = None) -> Structure:
    """Build the load case named in ``domain``; check the clamp is thicker than the cutoff."""
    try:
        builder = LOAD_CASES[domain.load_case]
    except KeyError:
        raise GeometryError(
            f"unknown load case '{domain.load_case}' (valid: {', '.join(LOAD_CASES)})"
        ) from None
    if cutoff_a is not None and domain.load_case != "bulk" and domain.clamp_cells * a0_a < cutoff_a:
        need = int(np.ceil(cutoff_a / a0_a))
        raise GeometryError(
            f"clamp of {domain.clamp_cells} cells ({domain.clamp_cells * a0_a:.2f} Å) is thinner than "
            f"the potential cutoff ({cutoff_a:.2f} Å): set domain.clamp_cells >= {need}"
        )
    return builder(domain, a0_a)
