"""Coarse correction: the spring network as the second level of a two-level relaxation.

LAMMPS' conjugate gradients remove short-wavelength force components in a few
iterations, but the long-wavelength ones (the bending of a long beam, the far field of a
surface that moved) take a number of iterations that grows with the length of the
structure: about 800 force evaluations per iteration at 10^4 sites, 2,700 at 10^5. The
first-neighbour central-spring network of the same atoms (``engine_harmonic``) has the
same long-wavelength mechanics up to its elastic constants. So every
``minimizer.coarse_every`` CG iterations the residual forces f of the free atoms are
mapped to a displacement d = K_s^-1 f through the network's stiffness K_s (an algebraic
multigrid solve, pyamg: linear in the atoms), and the atoms move by s d with s the exact
minimizer of the energy along d, s = f·d / (d·H d), where H d comes from one extra force
evaluation (H d ≈ -(f(x + ε d) - f(x)) / ε). The step never raises the energy to second
order and absorbs the network's overall stiffness scale; LAMMPS then smooths what the
network gets wrong. Everything stays LAMMPS' energy: the network only chooses directions.

Only sites of kind DESIGN move; clamp and load sites are held by the state.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .structure import DESIGN, Structure

# relative residual of the AMG-preconditioned CG solve: the network is only a model of EAM anyway
# (1e4 cantilever: 1e-3, 1e-2 and 1e-1 give 226, 224 and 156-183 force evaluations at coarse_every 15 / 8)
SOLVE_TOLERANCE = 1e-2


class SpringPreconditioner:
    """K_s^-1 of the free atoms of one design, ready for repeated solves.

    structure, occupancy : the design ((n_sites,) bool); the hierarchy is built once and
    reused by every state (and basin restart) of the design.
    """

    def __init__(self, structure: Structure, occupancy: np.ndarray) -> None:
        import pyamg
        from scipy.sparse import diags

        self.free_site = occupancy & (structure.kind == DESIGN)
        self.free = np.flatnonzero(np.repeat(self.free_site, 3))
        k = spring_matrix(structure, occupancy)[self.free][:, self.free]
        # a whisper of on-site stiffness keeps atoms that hang by one bond from making K_s singular
        k = (k + diags(np.full(self.free.size, 1e-6))).tocsr()
        # pyamg estimates spectral radii from np.random vectors: seeded here, so that a state
        # relaxed again (a resumed run, another rank count) takes bit-identical corrections
        saved = np.random.get_state()
        np.random.seed(0)
        try:
            self.solver = pyamg.smoothed_aggregation_solver(
                k, B=rigid_body_modes(structure.positions_a[self.free_site]), symmetry="symmetric",
                max_coarse=500, coarse_solver="splu")
        finally:
            np.random.set_state(saved)
        self.n_sites = structure.n_sites

    def direction(self, forces_ev_per_a: np.ndarray) -> np.ndarray:
        """d = K_s^-1 f: (n_sites, 3) forces in, (n_sites, 3) displacement direction out (Å per
        eV/Å of force on 1 eV/Å² springs), zero at clamp, load and empty sites."""
        g = np.asarray(forces_ev_per_a, dtype=float).reshape(-1)[self.free]
        out = np.zeros(3 * self.n_sites)
        out[self.free] = self.solver.solve(g, tol=SOLVE_TOLERANCE, accel="cg", maxiter=100)
        return out.reshape(-1, 3)


def spring_matrix(structure: Structure, occupancy: np.ndarray) -> Any:
    """K_s = Bᵀ B, (3 n_sites, 3 n_sites) CSR: 1 eV/Å² central springs on the first-neighbour
    bonds between occupied sites (B from ``engine_harmonic.stretch_operator``)."""
    from .engine_harmonic import stretch_operator

    b = stretch_operator(structure, occupancy)[2]
    return (b.T @ b).tocsr()


def rigid_body_modes(positions_a: np.ndarray) -> np.ndarray:
    """(3 n, 6) translations and rotations of ``positions_a`` (n, 3): the near-null space that
    smoothed aggregation needs to coarsen elasticity well."""
    xyz = positions_a - positions_a.mean(axis=0)
    modes = np.zeros((3 * len(xyz), 6))
    for axis in range(3):
        modes[axis::3, axis] = 1.0
    for m, (a, b) in enumerate(((0, 1), (1, 2), (2, 0))):  # rotation in the (a, b) plane
        modes[a::3, 3 + m] = -xyz[:, b]
        modes[b::3, 3 + m] = xyz[:, a]
    return modes


def exact_step(forces: np.ndarray, direction: np.ndarray, forces_probe: np.ndarray, eps_a: float) -> float:
    """s minimizing the energy along ``direction`` to second order: f·d / (d·H d), with
    H d ≈ -(f(x + ε d) - f(x)) / ε from ``forces_probe`` = f(x + ε d). 0 if the curvature
    along d is not positive (a saddle direction: skip the correction). Arrays (n, 3), ε in
    units of d."""
    curvature = -float(np.sum(direction * (forces_probe - forces))) / eps_a
    return float(np.sum(forces * direction)) / curvature if curvature > 0 else 0.0


def probe_scale(direction: np.ndarray, probe_a: float = 1e-3) -> float:
    """ε such that the probe moves no atom by more than ``probe_a`` Å (small enough to stay in
    the linear regime, large enough to stay above force round-off)."""
    largest = float(np.abs(direction).max())
    return probe_a / largest if largest > 0 else 0.0

