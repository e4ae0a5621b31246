"""Stiffness from the symmetric curvature of the relaxed energy (method.md §3-4).

One batch of states (0, +δ, -δ) gives

    K_sym   = (E(+δ) + E(-δ) - 2 E(0)) / δ²      the objective
    K_fwd   = 2 (E(+δ) - E(0)) / δ²              reported only (biased by residual force)
    K_force = (R(+δ) - R(-δ)) / (2 δ)            cross-check from the reaction force
    α_i     = (e_i(+δ) + e_i(-δ) - 2 e_i(0)) / δ²,   Σ α_i = K_sym

Energy differences are summed atom by atom with ``math.fsum`` instead of
subtracting two totals of ~10^4-10^6 eV: the totals carry round-off of one ulp
(and LAMMPS' own total depends on the domain decomposition), which would put a
relative noise of ~ulp(E) / (K δ²) into K_sym.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .bond_changes import max_bond_change_a
from .engine import COLLAPSE_EV_PER_ATOM, Engine, InFlightStore, RelaxResult, WarmStart
from .errors import DisplacementError, RelaxationError
from .local_relax import LocalRelax, TailPolish, polish_tail, relax_changes
from .overlaps import repair_overlaps
from .structure import Structure

log = logging.getLogger("nanoto")
STATES = (0.0, 1.0, -1.0)  # multiples of δ, relaxed in this order (±δ warm-start from 0)


@dataclass(frozen=True)
class StateDiagnostics:
    """Per-state minimizer figures."""

    u_a: float
    iterations: int
    force_evaluations: int
    fnorm_ev_per_a: float
    fmax_ev_per_a: float
    converged: bool
    stop_reason: str
    energy_ev: float
    engine_energy_ev: float
    reaction_ev_per_a: float
    max_bond_change_a: float
    wall_s: float
    loop_s: float = float("nan")


@dataclass(frozen=True, eq=False)
class StiffnessResult:
    """K_sym and friends for one design. Stiffnesses in eV/Å², α in eV/Å² per site.

    ``alpha`` is (n_sites,), exactly 0 at empty sites. ``relaxed`` holds the raw
    results of the states in STATES order.
    """

    delta_a: float
    k_sym_ev_per_a2: float
    k_fwd_ev_per_a2: float
    k_force_ev_per_a2: float
    alpha: np.ndarray
    states: tuple[StateDiagnostics, ...]
    relaxed: tuple[RelaxResult, ...]
    discarded: tuple[RelaxResult, ...] = ()  # batches thrown away by basin restarts, in order
    local: RelaxResult | None = None  # the region around the changes, relaxed before u = 0 (local_relax.py)
    polish: tuple[RelaxResult, ...] = ()  # the tail polish before u = 0: loose whole design, then its part

    @property
    def basin_restarts(self) -> int:
        """How often the batch was relaxed again in the basin a displaced state fell into."""
        return len(self.discarded) // len(STATES)

    @property
    def sum_alpha_ev_per_a2(self) -> float:
        return math.fsum(self.alpha)

    @property
    def residual_force_ev_per_a(self) -> float:
        """R(0): the residual generalized force that biases K_fwd."""
        return self.states[0].reaction_ev_per_a

    @property
    def response_a(self) -> np.ndarray:
        """(n_sites, 3) displacement per unit load displacement, (x(+δ) - x(0)) / δ: the next warm start."""
        return (self.relaxed[1].positions_a - self.relaxed[0].positions_a) / self.delta_a

    @property
    def force_evaluations(self) -> int:
        """Over every relaxation of the iteration, discarded batches included: what it cost, in
        evaluations of the whole design (a part's count by its share of the atoms)."""
        whole = sum(s.force_evaluations for s in self.states) + sum(r.force_evaluations for r in self.discarded)
        n = self.relaxed[0].n_atoms
        return whole + round(sum(r.force_evaluations * r.n_atoms / n for r in self.before))

    @property
    def before(self) -> tuple[RelaxResult, ...]:
        """The relaxations before the batch, in order: the local one, then the tail polish's."""
        return ((self.local,) if self.local is not None else ()) + self.polish

    @property
    def loop_s(self) -> float:
        """Time inside the LAMMPS minimizer over every relaxation, discarded ones included (s; NaN
        without LAMMPS)."""
        return self._summed("loop_s")

    def _summed(self, field: str) -> float:
        """A RelaxResult timing summed over every relaxation, discarded batches and those before
        the batch included (s)."""
        return sum(getattr(r, field) for r in (*self.relaxed, *self.discarded, *self.before))

    @property
    def coarse_s(self) -> float:
        """Time in the coarse corrections between CG cycles over every relaxation (s)."""
        return self._summed("coarse_s")

    @property
    def solve_s(self) -> float:
        """Of coarse_s, the time in the multigrid set-up and solves (s)."""
        return self._summed("solve_s")

    @property
    def lammps_calls_s(self) -> float:
        """Time in calls into LAMMPS over every relaxation (s; NaN without a library handle)."""
        return self._summed("lammps_calls_s")


def energy_difference_ev(a: RelaxResult, b: RelaxResult) -> float:
    """E(a) - E(b) summed per site with fsum (exact rounding of the per-site differences)."""
    return math.fsum(a.site_energies_ev - b.site_energies_ev)


def _check(structure: Structure, occupancy: np.ndarray, results: Sequence[RelaxResult],
           limit_a: float) -> list[float]:
    """Raise on non-converged, atom-losing or tearing relaxations; return the non-affine maxima."""
    n_present = int(occupancy.sum())
    drifts = []
    for n, r in enumerate(results):
        if abs(r.engine_energy_ev) > COLLAPSE_EV_PER_ATOM * max(r.n_atoms, 1):
            raise RelaxationError(
                f"relaxation at u = {r.u_a:g} Å collapsed: {r.engine_energy_ev / max(r.n_atoms, 1):.3g} eV per "
                "atom, far from any bound state (atoms overlapped where the potential table has no "
                "physical meaning); the design is unstable here"
            )
        if r.n_atoms != n_present:
            raise DisplacementError(
                f"u = {r.u_a:g} Å lost atoms ({r.n_atoms} of {n_present} left); reduce load.strain"
            )
        if not r.converged:
            if r.stop_reason in ("max iterations", "max force evaluations"):
                fix = "raise minimizer.maxiter / minimizer.maxeval or loosen minimizer.ftol_ev_per_a"
            else:
                fix = ("the minimizer reached its numerical floor with large forces: the design may be "
                       "unstable; minimizer.accept_fmax_ev_per_a sets what is accepted")
            raise RelaxationError(
                f"relaxation at u = {r.u_a:g} Å stopped on '{r.stop_reason}' after {r.iterations} "
                f"iterations with force norm {r.fnorm_ev_per_a:.3g} eV/Å (largest component "
                f"{r.fmax_ev_per_a:.3g} eV/Å); {fix}"
            )
        reference = structure.positions_a if n == 0 else results[0].positions_a
        drift = max_bond_change_a(structure, occupancy, r.positions_a, reference)
        if drift > limit_a and n == 0:
            # the reference relaxation may reconstruct thin parts: physics, reported, not fatal
            log.warning("relaxing the design at u = 0 changed a first-neighbour bond by %.3g Å: thin "
                        "parts reconstructed", drift)
        elif drift > limit_a:
            raise DisplacementError(
                f"the displacement u = {r.u_a:g} Å changed a first-neighbour bond by {drift:.3g} Å "
                f"(limit {limit_a:g} Å) in every basin tried: the structure tore or collapsed; reduce "
                "load.strain (minimizer.max_nonaffine_a sets the limit, minimizer.basin_restarts the "
                "attempts)"
            )
        drifts.append(drift)
    return drifts


def escaped_state(structure: Structure, occupancy: np.ndarray, results: Sequence[RelaxResult],
                  limit_a: float) -> RelaxResult | None:
    """The displaced state that left the basin of the u = 0 one, if any.

    results : the batch in STATES order (0, +δ, -δ)
    limit_a : bond change (Å) beyond which a state counts as escaped

    A displacement of 10^-3 strain changes bonds by 10^-3 Å; a change of the order of an
    ångström means the displaced relaxation left the basin of the u = 0 one (a tear, or a
    hop of a metastable group of atoms into a lower minimum). A metastable group can also
    drop into a lower minimum with smaller moves (a 10^5-site design: 9 eV lower with no bond
    changed by 1 Å, docs/performance.md); then E(+δ) + E(-δ) - 2 E(0) <= 0, which two states of
    one basin of a stable structure never give. Either way the escaped state is the displaced
    one whose bonds moved furthest from u = 0.
    """
    zero, displaced = results[0], results[1:]
    drifts = [max_bond_change_a(structure, occupancy, r.positions_a, zero.positions_a) for r in displaced]
    worst = int(np.argmax(drifts))
    fell = math.fsum(energy_difference_ev(r, zero) for r in displaced) <= 0.0
    return displaced[worst] if drifts[worst] > limit_a or fell else None


def relax_in_one_basin(engine: Engine, structure: Structure, occupancy: np.ndarray, states_a: Sequence[float],
                       limit_a: float, restarts: int, warm: WarmStart | None = None,
                       done: Sequence[RelaxResult] = (),
                       on_state: Callable[[RelaxResult], None] | None = None,
                       in_flight: InFlightStore | None = None) -> tuple[list[RelaxResult], list[RelaxResult]]:
    """Relax the batch; while a displaced state escapes the basin of u = 0, relax it again from there.

    Large designs relaxed at u = 0 can stop in a metastable minimum (a group of surface
    atoms that a small push sends into a lower one). The energy curvature is only defined
    within one basin, so the batch is relaxed again, u = 0 starting from the escaped
    configuration with the prescribed displacement taken off, at most ``restarts`` times.
    ``done`` holds the states of every attempt in order (a resumed iteration).

    Returns (the kept batch, the states of the discarded batches in order).
    """
    done = list(done)
    discarded: list[RelaxResult] = []
    for attempt in range(restarts + 1):
        batch_done, done = done[: len(states_a)], done[len(states_a):]
        results = engine.relax(structure, occupancy, states_a, warm, batch_done, on_state, in_flight)
        escaped = escaped_state(structure, occupancy, results, limit_a) if attempt < restarts else None
        if escaped is None:
            return results, discarded
        log.warning("the state u = %+.4g Å left the basin of the u = 0 relaxation (energy %+.4g eV against "
                    "u = 0, E(+δ) + E(-δ) - 2 E(0) = %+.4g eV); relaxing the batch again from there (basin "
                    "restart %d of at most %d)", escaped.u_a, energy_difference_ev(escaped, results[0]),
                    math.fsum(energy_difference_ev(r, results[0]) for r in results[1:]), attempt + 1, restarts)
        discarded += results
        start = escaped.positions_a - structure.affine_displacement_a(escaped.u_a)
        warm = WarmStart(start, warm.response_a if warm is not None else None)
    raise AssertionError("unreachable: the last attempt always returns")


def _without_overlaps(structure: Structure, occupancy: np.ndarray, warm: WarmStart) -> WarmStart:
    """``warm`` with the atoms around overlapping pairs back on their lattice sites (overlaps.py):
    atoms added on sites that a reconstruction moved neighbours into."""
    positions, reset = repair_overlaps(structure, occupancy, warm.positions_a)
    present = int(np.count_nonzero(occupancy))
    if not reset:
        return warm
    if reset == present:
        log.warning("warm start dropped: its overlapping atoms could not be separated locally; relaxing "
                    "from the lattice sites")
    else:
        log.warning("warm start repaired: %d of %d atoms put back on their lattice sites (atoms added on sites "
                    "that a reconstruction moved neighbours into would have overlapped)", reset, present)
    return dataclasses.replace(warm, positions_a=positions)


def symmetric_curvature(engine: Engine, structure: Structure, occupancy: np.ndarray, delta_a: float,
                        max_nonaffine_a: float = 1.0, warm: WarmStart | None = None,
                        done: Sequence[RelaxResult] = (),
                        on_state: Callable[[RelaxResult], None] | None = None,
                        basin_restarts: int = 2, in_flight: InFlightStore | None = None,
                        local: LocalRelax | None = None, polish: TailPolish | None = None) -> StiffnessResult:
    """Relax (0, +δ, -δ) in one batch and reduce them to K_sym, K_fwd, K_force and α.

    Parameters
    ----------
    occupancy : (n_sites,) bool
    delta_a : δ in Å (> 0)
    warm : start of the 0 state and the previous response to the load (default: lattice sites)
    done, on_state, in_flight : states relaxed before a resume, where each new one goes, and where
        the progress inside a state is kept (``Engine.relax``)
    basin_restarts : how often a batch whose displaced state escaped is relaxed again
        (``relax_in_one_basin``) before that counts as a tear
    local : relax the region around the sites that changed since ``warm.previous_occupancy``
        first (local_relax.py); only before u = 0, so not when ``done`` holds it already
    polish : polish the tail of u = 0 (local_relax.polish_tail), after ``local``, on the same terms
    """
    if not delta_a > 0:
        raise ValueError(f"delta must be positive, got {delta_a}")
    local_result = None
    if warm is not None:
        warm = _without_overlaps(structure, occupancy, warm)
        if local is not None and not done:
            warm, local_result = relax_changes(engine, structure, occupancy, warm, local)
            if local_result is not None:
                log.info("relaxed %d atoms around the changed sites first: %d force evaluations, %.1f s",
                         local_result.n_atoms, local_result.force_evaluations, local_result.wall_s)
    polished: tuple[RelaxResult, ...] = ()
    if polish is not None and not done:
        warm, polished = polish_tail(engine, structure, occupancy, warm, polish)
        log.info("tail polish: u = 0 to %.1e eV/Å in %d force evaluations%s", polish.ftol_ev_per_a,
                 polished[0].force_evaluations, "" if len(polished) == 1 else
                 f", then a part of {polished[1].n_atoms} atoms around the moved ones in "
                 f"{polished[1].force_evaluations}")
    results, discarded = relax_in_one_basin(engine, structure, occupancy, [m * delta_a for m in STATES],
                                            max_nonaffine_a, basin_restarts, warm, done, on_state, in_flight)
    for r in results:
        log.debug("state u = %+.4g Å: %s after %d iterations, %d force evaluations, |F| = %.2g eV/Å, %.2f s",
                 r.u_a, r.stop_reason, r.iterations, r.force_evaluations, r.fnorm_ev_per_a, r.wall_s)
    drifts = _check(structure, occupancy, results, max_nonaffine_a)
    zero, plus, minus = results
    d2 = delta_a * delta_a
    de_plus, de_minus = energy_difference_ev(plus, zero), energy_difference_ev(minus, zero)
    k_sym = (de_plus + de_minus) / d2
    if not k_sym > 0:
        raise RelaxationError(
            f"K_sym = {k_sym:.4g} eV/Å² is not positive: the design is unstable or δ is below the "
            "minimizer noise; tighten minimizer.ftol_ev_per_a or increase load.strain"
        )
    alpha = (plus.site_energies_ev + minus.site_energies_ev - 2.0 * zero.site_energies_ev) / d2
    states = tuple(
        StateDiagnostics(r.u_a, r.iterations, r.force_evaluations, r.fnorm_ev_per_a, r.fmax_ev_per_a, r.converged,
                         r.stop_reason, r.energy_ev, r.engine_energy_ev, r.reaction_ev_per_a, drift,
                         r.wall_s, r.loop_s)
        for r, drift in zip(results, drifts, strict=True)
    )
    return StiffnessResult(
        delta_a=delta_a,
        k_sym_ev_per_a2=k_sym,
        k_fwd_ev_per_a2=2.0 * de_plus / d2,
        k_force_ev_per_a2=(plus.reaction_ev_per_a - minus.reaction_ev_per_a) / (2.0 * delta_a),
        alpha=alpha,
        states=states,
        relaxed=tuple(results),
        discarded=tuple(discarded),
        local=local_result,
        polish=polished,
    )
