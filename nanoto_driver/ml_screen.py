"""Screening drawn candidates with a spring network before LAMMPS (``nanoto sample --screen M``).

The model draws M x n designs per condition; each is scored by the stiffness of the
first-neighbour central-spring network on its atoms (the ``harmonic`` engine: one sparse
linear solve per state, milliseconds for 10^3 sites), and the n stiffest valid ones are
kept. The spring network is not the physics (LAMMPS verifies every kept candidate); it
only has to rank designs of one condition the way EAM does, as it should if the
stiffness of a design at fixed atom count is mostly its topology. How well it does is
measured by bench/screen_rank.py on a verified unscreened sample (docs/diffusion.md,
"Screening": not measured yet on the training set).
"""

from __future__ import annotations

import numpy as np

from .errors import NanotoError
from .structure import Structure


def spring_stiffness(structure: Structure, occupancy: np.ndarray) -> float:
    """K_sym of the spring network of ``occupancy`` ((n_sites,) bool), in the network's units
    (spring constant 1 eV/Å²); 0 for a design that has no load path or a mechanism."""
    from .engine_harmonic import HarmonicEngine
    from .stiffness import symmetric_curvature

    delta = 1e-3 * structure.reference_length_a  # the network is linear: any δ gives the same K
    try:
        return symmetric_curvature(HarmonicEngine(), structure, occupancy.reshape(-1), delta,
                                   basin_restarts=0).k_sym_ev_per_a2
    except NanotoError:
        return 0.0


def keep_stiffest(scores: np.ndarray, valid: np.ndarray, n: int) -> np.ndarray:
    """Indices of the ``n`` candidates to keep: valid ones by decreasing score, then (if fewer than
    ``n`` are valid) invalid ones in drawing order, so that the file still holds ``n`` per condition
    and ``verify`` counts the failures. scores, valid: (m,)."""
    order = np.lexsort((np.arange(scores.size), -np.where(valid, scores, -np.inf), ~valid))
    return np.sort(order[:n])
