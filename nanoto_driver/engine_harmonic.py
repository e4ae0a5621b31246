"""Engine ``harmonic``: an analytic test double for fast unit tests of the loop.

A linear central-spring network on first-shell bonds with a uniform bond
pre-tension ``t``. With w the (n, 3) displacements from the lattice and
s_b = n_b · (w_j - w_i) the linearized stretch of bond b,

    E = n_atoms e_coh + Σ_b (½ k s_b² + t s_b)

Interior pre-tensions cancel, surface ones do not: like surface stress they
leave a residual force on the load group, so K_fwd = K + 2 R(0)/δ exactly while
K_sym = K for every δ (E is exactly quadratic). The relaxed state is one sparse
linear solve. Not evidence of physics: LAMMPS is the engine for that.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
from scipy.sparse import coo_matrix, csr_matrix, diags
from scipy.sparse.linalg import spsolve

from .config import RunConfig
from .engine import InFlightStore, RelaxResult, WarmStart, empty_to_lattice
from .errors import EngineError, RelaxationError
from .shells import neighbor_pairs
from .structure import DESIGN, Structure


class HarmonicEngine:
    """Spring constant ``k`` (eV/Å²), pre-tension ``t`` (eV/Å), cohesive energy (eV/atom)."""

    name = "harmonic"
    ranks = 1

    def __init__(self, config: RunConfig | None = None, potential: object = None, *, k: float = 1.0,
                 t: float = 0.05, e_coh: float = -3.36, a0_a: float = 4.05) -> None:
        self.k, self.t, self.e_coh, self.a0_a = k, t, e_coh, a0_a

    def lattice_constant_a(self) -> float:
        return self.a0_a

    def close(self) -> None:
        pass

    def relax(self, structure: Structure, occupancy: np.ndarray, states_a: Sequence[float],
              warm: WarmStart | None = None, done: Sequence[RelaxResult] = (),
              on_state: Callable[[RelaxResult], None] | None = None,
              in_flight: InFlightStore | None = None, plain: bool = False,
              ftol_ev_per_a: float | None = None) -> list[RelaxResult]:
        """Direct solves, one per state (exact: ``ftol_ev_per_a`` has nothing to loosen); ``done``,
        ``on_state``, ``in_flight`` and ``plain`` are not used."""
        if structure.load_mode != "group":
            raise EngineError("the harmonic test double supports group loading only")
        i, j, b = stretch_operator(structure, occupancy)
        stiff = (self.k * (b.T @ b)).tocsr()
        force0 = -self.t * np.asarray(b.sum(axis=0)).ravel()  # -dE/dw at w = 0
        free_site = occupancy & (structure.kind == DESIGN)
        free = np.flatnonzero(np.repeat(free_site, 3))
        driven = np.repeat(structure.kind == 2, 3)
        # a whisper of on-site stiffness keeps dangling atoms from making K singular
        k_ff = stiff[free][:, free] + diags(np.full(free.size, 1e-9 * self.k))
        out = []
        for u in states_a:
            t0 = time.perf_counter()
            w = np.zeros(3 * structure.n_sites)
            w[driven] = np.tile(u * structure.load_direction, int(driven.sum()) // 3)
            rhs = force0[free] - stiff[free] @ w
            w[free] = spsolve(k_ff.tocsc(), rhs)
            if not np.all(np.isfinite(w)):
                raise RelaxationError("harmonic network is singular: the design has a mechanism")
            out.append(self._result(structure, occupancy, i, j, b, stiff, force0, w, float(u),
                                    time.perf_counter() - t0))
        return out

    def _result(self, structure: Structure, occupancy: np.ndarray, i: np.ndarray, j: np.ndarray,
                b: csr_matrix, stiff: csr_matrix, force0: np.ndarray, w: np.ndarray, u: float,
                wall_s: float) -> RelaxResult:
        s = b @ w
        bond_e = 0.5 * self.k * s * s + self.t * s
        site_e = np.where(occupancy, self.e_coh, 0.0)
        np.add.at(site_e, i, 0.5 * bond_e)
        np.add.at(site_e, j, 0.5 * bond_e)
        grad = stiff @ w - force0  # dE/dw
        load = np.repeat(structure.kind == 2, 3)
        reaction = float(grad[load] @ np.tile(structure.load_direction, int(load.sum()) // 3))
        positions = empty_to_lattice(structure, occupancy, structure.positions_a + w.reshape(-1, 3))
        free = np.repeat(occupancy & (structure.kind == DESIGN), 3)
        return RelaxResult(
            u_a=u, site_energies_ev=site_e, positions_a=positions, engine_energy_ev=float(site_e.sum()),
            reaction_ev_per_a=reaction, converged=True, stop_reason="linear solve", iterations=1,
            force_evaluations=1, fnorm_ev_per_a=float(np.linalg.norm(grad[free])),
            fmax_ev_per_a=float(np.abs(grad[free]).max()) if free.any() else 0.0,
            n_atoms=int(occupancy.sum()), wall_s=wall_s,
        )


def bonds(structure: Structure, occupancy: np.ndarray, shell: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bonds of one neighbour shell (first by default) between occupied sites: ends (i, j), each
    (n_bonds,) with i < j, and the (n_bonds, 3) unit vectors from i to j (periodic images told apart)."""
    src, dst, vec = neighbor_pairs(structure.lattice.cells, structure.periodic, shell, with_vectors=True)
    assert vec is not None
    keep = (src < dst) & occupancy[src] & occupancy[dst]
    v = vec[keep]
    return src[keep], dst[keep], v / np.linalg.norm(v, axis=1, keepdims=True)


def stretch_operator(structure: Structure, occupancy: np.ndarray,
                     shell: int = 1) -> tuple[np.ndarray, np.ndarray, csr_matrix]:
    """The bonds of ``bonds`` as ends (i, j) and the (n_bonds, 3 n_sites) stretch operator B with
    s = B w, s_b = n_b·(w_j - w_i), n_b the unit bond vector. Bᵀ B is the stiffness of 1 eV/Å²
    springs (also the coarse correction's network)."""
    i, j, unit = bonds(structure, occupancy, shell)
    return i, j, stretch_matrix(i, j, unit, structure.n_sites)


def stretch_matrix(i: np.ndarray, j: np.ndarray, unit: np.ndarray, n_sites: int) -> csr_matrix:
    """(n_bonds, 3 n_sites) B with (B w)_b = n_b·(w_j - w_i) for bonds with ends (i, j), each
    (n_bonds,), and unit vectors n (n_bonds, 3)."""
    rows = np.repeat(np.arange(i.size), 6)
    cols = np.stack([3 * i, 3 * i + 1, 3 * i + 2, 3 * j, 3 * j + 1, 3 * j + 2], axis=1).reshape(-1)
    vals = np.concatenate([-unit, unit], axis=1).reshape(-1)
    return coo_matrix((vals, (rows, cols)), shape=(i.size, 3 * n_sites)).tocsr()
