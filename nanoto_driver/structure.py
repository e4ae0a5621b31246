"""What an engine needs to relax one design: sites, site sets, box and loading.

``Structure`` is a frozen value object; its arrays are checked on creation.
Site kinds: DESIGN (may be removed), CLAMP (fixed at lattice positions),
LOAD (moved rigidly by the prescribed displacement). Clamp and load sites are
never removed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from .lattice import FccLattice

DESIGN, CLAMP, LOAD = 0, 1, 2


@dataclass(frozen=True, eq=False)
class Structure:
    """A load case on a lattice.

    Attributes
    ----------
    lattice : the FCC block
    kind : (n_sites,) int8, DESIGN / CLAMP / LOAD per site
    periodic : periodicity of x, y, z
    load_mode : "group" (rigid displacement of LOAD sites along ``load_direction``)
        or "box" (homogeneous strain of a fully periodic box along axis ``load_axis``)
    load_direction : (3,) unit vector of the prescribed displacement ("group")
    load_axis : box axis 0, 1 or 2 that is stretched ("box")
    reference_length_a : length whose nominal strain defines δ (Å)
    """

    lattice: FccLattice
    kind: np.ndarray
    periodic: tuple[bool, bool, bool]
    load_mode: Literal["group", "box"]
    load_direction: np.ndarray
    load_axis: int
    reference_length_a: float

    def __post_init__(self) -> None:
        if self.kind.shape != (self.lattice.n_sites,):
            raise ValueError(f"kind has shape {self.kind.shape}, expected ({self.lattice.n_sites},)")
        if self.load_direction.shape != (3,) or not np.isclose(np.linalg.norm(self.load_direction), 1):
            raise ValueError("load_direction must be a (3,) unit vector")
        if self.load_mode == "box" and not all(self.periodic):
            raise ValueError("box loading needs a fully periodic box")
        if self.load_mode == "group" and not (self.kind == LOAD).any():
            raise ValueError("group loading needs LOAD sites")

    @property
    def n_sites(self) -> int:
        return self.lattice.n_sites

    @property
    def positions_a(self) -> np.ndarray:
        """(n_sites, 3) lattice positions, Å."""
        return self.lattice.positions_a

    @property
    def fixed(self) -> np.ndarray:
        """(n_sites,) bool: sites that must stay occupied (clamp and load)."""
        return self.kind != DESIGN

    def boundary(self) -> str:
        """LAMMPS ``boundary`` string: periodic axes 'p', free ones shrink-wrapped 's'."""
        return " ".join("p" if p else "s" for p in self.periodic)

    def affine_displacement_a(self, u_a: float) -> np.ndarray:
        """(n_sites, 3) displacement the prescribed state imposes on its driven sites, Å.

        Group loading moves LOAD sites by u * direction and nothing else; box loading
        stretches every site affinely along ``load_axis``.
        """
        out = np.zeros((self.n_sites, 3))
        if self.load_mode == "group":
            out[self.kind == LOAD] = u_a * self.load_direction
        else:
            lo, hi = self.lattice.box_a()
            length = hi[self.load_axis] - lo[self.load_axis]
            out[:, self.load_axis] = u_a * (self.positions_a[:, self.load_axis] - lo[self.load_axis]) / length
        return out
