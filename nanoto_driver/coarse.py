"""Coarse correction: the spring network as the second level of a two-level relaxation.

LAMMPS' conjugate gradients remove short-wavelength force components in a few
iterations, but the long-wavelength ones (the bending of a long beam, the far field of a
surface that moved) take a number of iterations that grows with the length of the
structure: about 800 force evaluations per iteration at 10^4 sites, 2,700 at 10^5. The
first-neighbour central-spring network of the same atoms (``engine_harmonic``) has the
same long-wavelength mechanics up to its elastic constants. So every
``minimizer.coarse_every`` CG iterations the residual forces f of the free atoms are
mapped to a displacement d = K_s^-1 f through the network's stiffness K_s (an algebraic
multigrid solve, pyamg: linear in the atoms). H d comes from one extra force evaluation
(H d ≈ -(f(x + ε d) - f(x)) / ε), and s = f·d / (d·H d) is the exact minimizer of the
energy along d. Where the network is wrong (surface atoms, atoms about to change neighbours)
d carries a stiff short-wave error that inflates d·H d and damps s, so the long wave
advances by a fraction of what d offers. The forces the line step would leave,
g = f - s H d, are large exactly there; one more force evaluation gives H g, and the atoms
move by the minimizer of the quadratic model over span{d, g} (a two-vector Rayleigh-Ritz
step, ``subspace_step``). The step never raises the energy to second order and absorbs the
network's overall stiffness scale; LAMMPS then smooths what is left. Everything stays
LAMMPS' energy: the network only chooses directions. (u = 0 of iteration 1 of the 10^5-site
cantilever, warm: 230 force evaluations instead of 535, each correction gaining 2-3x what
the line step would; the quadratic model predicted the gains to within 1 %.)

Only sites of kind DESIGN move; clamp and load sites are held by the state.

Floppy modes. A first-neighbour central-spring network has zero-stiffness modes where EAM
has none: an atom whose bonds lie in one plane or line (cleanup's refill can add atoms with
two neighbours), a one-atom-thick sheet, clusters that hinge on a few bonds. K_s^-1 amplifies
the force on such a mode by the 1e-6 regularization, d is then that mode alone (|d| max /
median 2e6 on iteration 1 of the 10^5-site cantilever), its EAM curvature is negative, and
the correction is lost. Two measures remove them: springs on the second-neighbour bonds too
(weight SECOND_SHELL_WEIGHT) tie sheets and hinges, and atoms whose own first-neighbour bonds
do not span three dimensions are left out of d (CG relaxes them). On that state: |d| max /
median 16, energy change -1.51 eV predicted -1.47 eV.

Where the atoms are (NETWORK "positions"). After a few BESO steps the thin parts of a design
have reconstructed: atoms sit Å away from their sites, next to atoms that are not their lattice
neighbours. A network on lattice bonds ties such an atom to where its old neighbours were and
not to its new ones, so d is wrong exactly where the relaxation's tail is. So the network bonds
the pairs at first- and second-neighbour distance where a batch starts (its warm start, which
carries the reconstructions of the earlier iterations); a bond the lattice has too and that
turned little keeps the lattice's exact direction. On a design without reconstructions it is the
lattice network. (Late 10^5-site design of docs/performance.md, sixteenth session: the states
took 443 force evaluations instead of 1,007, to the same minimum.)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .structure import DESIGN, Structure

# The AMG-preconditioned CG solve stops at this relative residual or after SOLVE_ITERATIONS,
# whichever comes first: the network is only a model of EAM, and the exact step absorbs the
# scale. (1e4 cantilever: tolerance 1e-3, 1e-2 and 1e-1 gave 226, 224 and 156-183 force
# evaluations; iteration 1 of the 10^5-site one: 3 iterations instead of up to 100 at 1e-2,
# 665 instead of 604 force evaluations, 162 s instead of 174 s, the solves 57 s instead of 97 s.)
# 2 with the energy-minimizing prolongator (PROLONGATOR), 3 with the Jacobi-smoothed one before.
SOLVE_TOLERANCE = 1e-2
SOLVE_ITERATIONS = 2
# second-neighbour springs relative to first-neighbour ones: enough to stiffen the floppy modes
# of thin parts, small enough to leave the network's long-wave elasticity close to first-neighbour
# (0.1 and 0.3 gave the same energy gain on the 10^5-site state in the module docstring)
SECOND_SHELL_WEIGHT = 0.1
# an atom is floppy when the smallest eigenvalue of Σ n nᵀ over its first-neighbour bonds is below
# this: 0 for bonds in a plane or line, 0.5 for the least spread non-coplanar FCC triple
FLOPPY_EIGENVALUE = 0.05
# the hierarchy is built and applied in single precision: the network is a model of EAM good to
# tens of per cent and the solve stops after a few iterations, so float64 buys little for twice the
# memory (bench/spring_solve.py on the 10^5-site iteration-1 design, 3 iterations, quiet machine:
# 0.41 s against 0.54 s per direction, 96.9 % against 98.4 % of the exact solve's energy gain on
# the network; 2.5x faster on a node busy with another run; 6.5e5 sites: peak 4.2 GB against 4.6)
SOLVE_DTYPE = np.float32
# How smoothed aggregation smooths its tentative prolongator: energy minimization (pyamg's "energy",
# Olson, Schroder and Tuminaro's method; degree 1, 2 CG iterations) rather than one Jacobi step
# (pyamg's default). Its coarse functions carry less energy on the network, so fewer multigrid
# iterations do the work: on the late 10^5-site design of docs/performance.md (fifteenth session),
# 91 % of the exact solve's energy gain in one iteration against 49 %, 99 % in two against 95 % in
# three Jacobi ones. Over three 10^5-site designs, 2 iterations took 2,758 force evaluations against
# 3,296 and 177.7 s against 238.4 s; over five 10^4-site designs 1,056 against 1,083. The set-up
# costs more: 2.5 s against 1.6 s at 10^5 sites, 28 s against 18 s and 0.4 GB more at 6.5 x 10^5.
PROLONGATOR = ("energy", {"degree": 1, "maxiter": 2})
#: pyamg's default, the prolongator smoothing before the fifteenth session (benches compare against it)
JACOBI_PROLONGATOR = ("jacobi", {"omega": 4.0 / 3.0})
#: largest distance a correction moves an atom (Å), the neighbour skin. A network-guided move is a
#: long wave of at most about δ; when the two-vector model is nearly singular its step can be huge
#: (the repaired warm start of iteration 2 at 6.5 x 10^5 sites: c = (4.9, 6.2), one atom moved by
#: 67 Å, five times the periodic thickness, and LAMMPS lost atoms before the energy could reject
#: the move). Such a move is scaled down to this length; the energy check then keeps or undoes it.
MAX_MOVE_A = 2.0
#: largest change of a first-neighbour bond vector that a correction makes (Å): LAMMPS' own bound on
#: a CG line-search step (``min_modify dmax``, 0.1 Å by default). The long wave a correction is for
#: changes bonds by strain times bond length (10^-3 Å at δ); a move that changes a bond by more is the
#: network's short-wave error, and it can carry under-coordinated atoms over barriers that CG never
#: crosses. On the warm u = 0 state of design 1 of the 10^5-site cantilever, without this bound the
#: relaxation went 9.5 eV lower than plain CG (548 atoms moved by more than 1 Å against 67, 3,080
#: force evaluations against 1,061); with it, plain CG's minimum to 1e-5 eV in 807.
MAX_BOND_CHANGE_A = 0.1
#: where the network's bonds come from: "positions" (pairs at first- and second-neighbour distance
#: where the batch starts, so that parts that reconstructed are bonded as they now sit; the module
#: docstring) or "lattice" (the pairs of neighbouring occupied sites; benches compare it)
NETWORK = "positions"
#: between the first (a0/√2) and second (a0) neighbour distances, and the second and third (a0 √1.5)
FIRST_SHELL_CUT, SECOND_SHELL_CUT = 0.5 * (0.5 ** 0.5 + 1.0), 0.5 * (1.0 + 1.5 ** 0.5)


class SpringPreconditioner:
    """K_s^-1 of the free atoms of one design, ready for repeated solves.

    structure, occupancy : the design ((n_sites,) bool); the hierarchy is built once and
    reused by every state (and basin restart) of the design.
    dtype : precision of the hierarchy and the solves (bench/spring_solve.py compares both).
    prolongator : pyamg's ``smooth`` option of smoothed aggregation (default PROLONGATOR, read at
        the call; bench/spring_solve.py compares it with JACOBI_PROLONGATOR).
    positions_a : (n_sites, 3) Å, bond the atoms where they are there (``network_bonds``); None: the
        lattice's bonds.
    """

    def __init__(self, structure: Structure, occupancy: np.ndarray, dtype: Any = SOLVE_DTYPE,
                 prolongator: tuple[str, dict[str, Any]] | None = None,
                 positions_a: np.ndarray | None = None) -> None:
        import pyamg
        from scipy.sparse import diags

        shells = network_bonds(structure, occupancy, positions_a)
        self.free_site = occupancy & (structure.kind == DESIGN) & ~floppy_sites(structure, occupancy, shells[0])
        self.free = np.flatnonzero(np.repeat(self.free_site, 3))
        k = spring_matrix(structure, occupancy, shells)[self.free][:, self.free]
        # a whisper of on-site stiffness keeps atoms that hang by one bond from making K_s singular
        k = (k + diags(np.full(self.free.size, 1e-6))).tocsr().astype(dtype)
        # pyamg estimates spectral radii from np.random vectors: seeded here, so that a state
        # relaxed again (a resumed run, another rank count) takes bit-identical corrections
        saved = np.random.get_state()
        np.random.seed(0)
        try:
            self.solver = pyamg.smoothed_aggregation_solver(
                k, B=translation_modes(int(self.free_site.sum())).astype(dtype), symmetry="symmetric",
                max_coarse=500, coarse_solver="splu", smooth=PROLONGATOR if prolongator is None else prolongator)
        finally:
            np.random.set_state(saved)
        self.n_sites, self.dtype = structure.n_sites, dtype

    def direction(self, forces_ev_per_a: np.ndarray, iterations: int | None = None) -> np.ndarray:
        """d ≈ K_s^-1 f: (n_sites, 3) forces in, (n_sites, 3) displacement direction out (Å per
        eV/Å of force on 1 eV/Å² springs), zero at clamp, load, empty and floppy sites; at most
        ``iterations`` preconditioned CG iterations (default SOLVE_ITERATIONS, read at the call)."""
        g = np.asarray(forces_ev_per_a, dtype=self.dtype).reshape(-1)[self.free]
        out = np.zeros(3 * self.n_sites)
        out[self.free] = self.solver.solve(g, tol=SOLVE_TOLERANCE, accel="cg",
                                           maxiter=SOLVE_ITERATIONS if iterations is None else iterations)
        return out.reshape(-1, 3)


Bonds = tuple[np.ndarray, np.ndarray, np.ndarray]


def network_bonds(structure: Structure, occupancy: np.ndarray,
                  positions_a: np.ndarray | None = None) -> tuple[Bonds, Bonds]:
    """The network's first- and second-shell bonds, each as ends (i, j) (n_bonds,) and unit vectors
    (n_bonds, 3): the lattice's between occupied sites, or, given ``positions_a`` (n_sites, 3) Å in
    the reference box (a u = 0 start), the pairs of occupied sites at first- and second-neighbour
    distance there (``position_bonds``)."""
    from .engine_harmonic import bonds

    if positions_a is None:
        return bonds(structure, occupancy, 1), bonds(structure, occupancy, 2)
    lo, hi = structure.lattice.box_a()
    first, second = position_bonds(positions_a, occupancy, structure.periodic, hi - lo, structure.lattice.a0_a,
                                   (0.0, FIRST_SHELL_CUT), (FIRST_SHELL_CUT, SECOND_SHELL_CUT))
    # a bond the lattice has too, turned little, keeps the lattice's direction: the strain turns it by
    # ~1e-3, and the exact directions keep K_s's zeros (a third of the non-zeros: as cheap to solve
    # as the lattice network)
    return (lattice_directions(first, bonds(structure, occupancy, 1)),
            lattice_directions(second, bonds(structure, occupancy, 2)))


def lattice_directions(found: Bonds, lattice: Bonds, min_cos: float = 0.99) -> Bonds:
    """``found`` with the unit vectors of the bonds that ``lattice`` holds too (the same ends, i < j
    in both) and that lie within ``min_cos`` of the lattice's direction replaced by the lattice's."""
    i, j, unit = found
    key = np.asarray(lattice[0], np.int64) * (1 << 32) + lattice[1]
    order = np.argsort(key)
    wanted = np.asarray(i, np.int64) * (1 << 32) + j
    at = order[np.minimum(np.searchsorted(key, wanted, sorter=order), key.size - 1)]
    same = (key[at] == wanted) & (np.einsum("ij,ij->i", unit, lattice[2][at]) > min_cos)
    unit = unit.copy()
    unit[same] = lattice[2][at[same]]
    return i, j, unit


def position_bonds(positions_a: np.ndarray, occupancy: np.ndarray, periodic: Sequence[bool],
                   box_lengths_a: np.ndarray, a0_a: float,
                   *ranges: tuple[float, float]) -> tuple[Bonds, ...]:
    """Pairs (i < j) of occupied sites whose distance (nearest image across periodic axes) lies in
    each [lo a0, hi a0) of ``ranges``, with unit vectors from i to j: one (i, j, unit) per range.
    ``box_lengths_a`` (3,) Å is read along the periodic axes only."""
    from scipy.spatial import cKDTree

    sites = np.flatnonzero(occupancy)
    x = np.asarray(positions_a, float)[sites]
    wraps = np.asarray(periodic, bool)
    reach = max(hi for _, hi in ranges) * a0_a
    lengths = np.where(wraps, np.asarray(box_lengths_a, float), 0.0)
    lo = x.min(axis=0)
    # a torus along every axis: the box's own length where periodic, one wide enough never to wrap elsewhere
    size = np.where(wraps, lengths, x.max(axis=0) - lo + 2 * reach + 1.0)
    wrapped = np.mod(x - lo, size)
    pairs = cKDTree(wrapped, boxsize=size).query_pairs(reach, output_type="ndarray")
    d = x[pairs[:, 1]] - x[pairs[:, 0]]
    d -= np.where(wraps, lengths * np.round(d / np.where(wraps, lengths, 1.0)), 0.0)
    r = np.linalg.norm(d, axis=1)
    out = []
    for r_lo, r_hi in ranges:
        keep = (r >= r_lo * a0_a) & (r < r_hi * a0_a)
        i, j = sites[pairs[keep, 0]], sites[pairs[keep, 1]]
        out.append((i, j, d[keep] / r[keep, None]))
    return tuple(out)


def spring_matrix(structure: Structure, occupancy: np.ndarray, shells: tuple[Bonds, Bonds] | None = None) -> Any:
    """K_s = B₁ᵀ B₁ + w B₂ᵀ B₂, (3 n_sites, 3 n_sites) CSR: central springs of 1 eV/Å² on the
    first-shell bonds and w = SECOND_SHELL_WEIGHT eV/Å² on the second-shell ones, ``shells`` or the
    lattice's between occupied sites (``network_bonds``; B from ``engine_harmonic.stretch_matrix``)."""
    from .engine_harmonic import stretch_matrix

    shells = network_bonds(structure, occupancy) if shells is None else shells
    b1, b2 = (stretch_matrix(*shell, structure.n_sites) for shell in shells)
    return (b1.T @ b1 + SECOND_SHELL_WEIGHT * (b2.T @ b2)).tocsr()


def floppy_sites(structure: Structure, occupancy: np.ndarray, first_shell: Bonds | None = None) -> np.ndarray:
    """(n_sites,) bool: occupied sites whose first-shell bonds (``first_shell``, or the lattice's)
    lie in a plane or a line (smallest eigenvalue of Σ n nᵀ below FLOPPY_EIGENVALUE), including
    atoms with < 3 bonds."""
    from .engine_harmonic import bonds

    i, j, unit = bonds(structure, occupancy, 1) if first_shell is None else first_shell
    outer = unit[:, :, None] * unit[:, None, :]
    spread = np.zeros((structure.n_sites, 3, 3))
    np.add.at(spread, i, outer)
    np.add.at(spread, j, outer)
    return occupancy & (np.linalg.eigvalsh(spread)[:, 0] < FLOPPY_EIGENVALUE)


def translation_modes(n_atoms: int) -> np.ndarray:
    """(3 n, 3) rigid translations of n atoms: the near-null space given to smoothed aggregation.
    The rotations are left out: at 661,344 sites they cost 1.6 GB more (4.4 GB against 2.7 GB peak)
    and twice the set-up time (40 s against 21 s) for 5 instead of 8 CG iterations of a solve
    that takes the same time (8.3 s against 9.3 s)."""
    modes = np.zeros((3 * n_atoms, 3))
    for axis in range(3):
        modes[axis::3, axis] = 1.0
    return modes


def subspace_step(forces: np.ndarray, directions: Sequence[np.ndarray],
                  products: Sequence[np.ndarray]) -> np.ndarray | None:
    """(k,) coefficients c minimizing the quadratic model of the energy over x + Σ c_i v_i:
    solves (Vᵀ H V) c = Vᵀ f, with the k directions v_i and their products H v_i given as (n, 3)
    arrays; None if Vᵀ H V is not positive definite (a saddle direction in the span). For one
    direction this is the exact line step f·v / (v·H v), which can be negative (uphill)."""
    v = np.stack([np.ravel(x) for x in directions])
    hv = np.stack([np.ravel(x) for x in products])
    gram = v @ hv.T
    gram = 0.5 * (gram + gram.T)  # H is symmetric; the finite-difference products nearly so
    if np.linalg.eigvalsh(gram)[0] <= 0.0:
        return None
    return np.linalg.solve(gram, v @ np.ravel(forces))


def limit_move(move: np.ndarray, max_a: float) -> np.ndarray:
    """(n, 3) ``move`` scaled down so that no atom moves more than ``max_a`` Å (unchanged if none
    does). Scaling the minimizer of a convex quadratic model towards 0 still lowers the model."""
    largest = float(np.linalg.norm(move, axis=1).max()) if len(move) else 0.0
    return move * (max_a / largest) if largest > max_a else move


def bond_rows(structure: Structure, occupancy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First-neighbour bonds between occupied sites as (n_bonds,) int32 rows (i, j) into the atoms
    listed in site order (the rows of a correction's move)."""
    from .engine_harmonic import bonds

    i, j, _ = bonds(structure, occupancy)
    row = (np.cumsum(occupancy) - 1).astype(np.int32)
    return row[i], row[j]


def limit_bond_change(move: np.ndarray, ends: tuple[np.ndarray, np.ndarray], max_a: float) -> np.ndarray:
    """(n, 3) ``move`` scaled down so that no bond (rows ``ends``) changes by more than ``max_a`` Å,
    |m_i - m_j| <= max_a (unchanged if none does; a rigid translation never is). Scaling keeps the
    move's direction, so the energy check that follows still decides along the model's step."""
    i, j = ends
    largest = float(np.sqrt((np.square(move[i] - move[j])).sum(axis=1).max())) if len(i) else 0.0
    return move * (max_a / largest) if largest > max_a else move


def hessian_product(forces: np.ndarray, forces_probe: np.ndarray, eps_a: float) -> np.ndarray:
    """H v ≈ -(f(x + ε v) - f(x)) / ε, (n, 3), from the forces at x and at the probe x + ε v."""
    return -(forces_probe - forces) / eps_a


def probe_scale(direction: np.ndarray, probe_a: float = 1e-3) -> float:
    """ε such that the probe moves no atom by more than ``probe_a`` Å (small enough to stay in
    the linear regime, large enough to stay above force round-off)."""
    largest = float(np.abs(direction).max())
    return probe_a / largest if largest > 0 else 0.0

