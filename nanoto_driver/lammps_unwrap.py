"""Undo periodic wrapping of relaxed positions."""

from __future__ import annotations

import numpy as np


def unwrap_near(positions_a: np.ndarray, reference_a: np.ndarray, periodic: tuple[bool, bool, bool],
                box_lengths_a: np.ndarray) -> np.ndarray:
    """Shift each (n, 3) position by whole box lengths to the image nearest ``reference_a``.

    LAMMPS wraps atoms into the box along periodic axes; the nearest image of the
    reference site gives displacements that are continuous across the boundary.
    """
    out = np.array(positions_a, dtype=float, copy=True)
    for axis in range(3):
        if periodic[axis]:
            length = box_lengths_a[axis]
            out[:, axis] -= length * np.round((out[:, axis] - reference_a[:, axis]) / length)
    return out
