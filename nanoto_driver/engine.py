"""The engine contract, its typed result, and the registry of engines.

An engine relaxes a batch of prescribed states for one occupancy. The first
state starts from ``warm.positions_a`` (default: lattice sites); every later
state starts from the relaxed first state plus its prescribed displacement,
which is how ±δ are warm-started from the relaxed 0 state. Better guesses
(same rule in every engine, see ``first_guess``): the second displaced state
starts on the mirrored response of the first, and the first displaced state on
the previous design's response to the load (``warm.response_a``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from .config import RunConfig
from .errors import ConfigError
from .potential import Potential
from .structure import Structure

#: a relaxation whose mean |energy| per atom exceeds this has collapsed (eV/atom): no element binds
#: by more than ~9 eV/atom and only overlapping atoms have positive energies of that size, but
#: EAM tables extrapolate the embedding energy linearly past their last density, so overlapping
#: atoms can drive E to -inf while CG runs to maxeval (seen: +9e9 eV at the start of a warm
#: start with two atoms on one site, -2e11 eV 6,000 evaluations later). ``stiffness`` reports it
#: instead of a meaningless K_sym; ``overlaps.repair_overlaps`` keeps warm starts from causing it.
COLLAPSE_EV_PER_ATOM = 50.0


@dataclass(frozen=True, eq=False)
class RelaxResult:
    """One relaxed prescribed state.

    Attributes
    ----------
    u_a : prescribed generalized displacement (Å)
    site_energies_ev : (n_sites,) per-site energy (eV), exactly 0 at empty sites
    positions_a : (n_sites, 3) relaxed positions (Å); lattice positions at empty sites
    engine_energy_ev : the engine's own total energy (LAMMPS ``pe``), for cross-checks
    reaction_ev_per_a : R(u) = dE/du, the generalized force on the driven sites (eV/Å)
    converged : the minimizer met its force tolerance
    stop_reason : the minimizer's stopping criterion, verbatim
    iterations, force_evaluations : minimizer counts
    fnorm_ev_per_a : final 2-norm of the force vector (eV/Å)
    fmax_ev_per_a : final largest force component (eV/Å)
    n_atoms : atoms present after the relaxation
    wall_s : wall time of this state (s)
    loop_s : of which inside the LAMMPS minimizer (its "Loop time"; NaN for engines without one)
    coarse_s : of which in the coarse corrections between CG cycles (multigrid set-up and solves,
        the 2-4 force evaluations of each correction, moving the atoms; 0 without them)
    solve_s : of coarse_s, the multigrid set-up and solves alone (Python on rank 0, the part
        of the corrections outside LAMMPS)
    lammps_calls_s : of wall_s, the time in calls into LAMMPS (minimizer set-ups and loops, force
        evaluations, gathers and scatters; NaN for engines without a library handle)
    """

    u_a: float
    site_energies_ev: np.ndarray
    positions_a: np.ndarray
    engine_energy_ev: float
    reaction_ev_per_a: float
    converged: bool
    stop_reason: str
    iterations: int
    force_evaluations: int
    fnorm_ev_per_a: float
    fmax_ev_per_a: float
    n_atoms: int
    wall_s: float
    loop_s: float = float("nan")
    coarse_s: float = 0.0
    solve_s: float = 0.0
    lammps_calls_s: float = float("nan")

    def __post_init__(self) -> None:
        n = self.site_energies_ev.shape[0]
        if self.site_energies_ev.shape != (n,) or self.positions_a.shape != (n, 3):
            raise ValueError(
                f"inconsistent shapes: energies {self.site_energies_ev.shape}, "
                f"positions {self.positions_a.shape}"
            )

    @property
    def energy_ev(self) -> float:
        """Total energy as the exactly rounded sum of per-site energies (order independent)."""
        return math.fsum(self.site_energies_ev)


def no_secant_history() -> np.ndarray:
    """(0, 2, 0, 3): the secant history of a state relaxed without minimizer.secant_pairs."""
    return np.zeros((0, 2, 0, 3))


@dataclass
class InFlightState:
    """A relaxation stopped between two CG cycles: all a two-level relaxation needs to go on.

    Taken after a cycle's minimization and before its correction, the point where the
    relaxation depends on nothing but the positions (each cycle's CG starts afresh).

    positions_a : (n_atoms, 3) Å, the state's atoms in id order as LAMMPS holds them
    log_text : the state's LAMMPS log so far (its minimizations count toward the state's totals)
    iterations : CG iterations so far; failed : corrections undone in a row;
    correction_fe : force evaluations of the corrections so far
    wall_s, lammps_calls_s, coarse_s, solve_s : seconds spent so far
    energy_ev, fmax_ev_per_a : at the end of the last cycle (for the progress line)
    secant_history : (r, 2, n_atoms, 3) the positions (Å) and forces (eV/Å) of the state's last r
        corrections (minimizer.secant_pairs; r = 0 without them): a resumed state takes the
        same steps as one relaxed in one go
    """

    positions_a: np.ndarray
    log_text: str
    iterations: int
    failed: int
    correction_fe: int
    wall_s: float
    lammps_calls_s: float
    coarse_s: float
    solve_s: float
    energy_ev: float
    fmax_ev_per_a: float
    secant_history: np.ndarray = field(default_factory=no_secant_history, compare=False)


class InFlightStore(Protocol):
    """Where an engine keeps the state it is relaxing, so that a stop loses minutes, not the state."""

    def in_flight(self, u_a: float) -> InFlightState | None:
        """The kept progress of the next state to relax (prescribed displacement ``u_a``), if any."""
        ...

    def keep_in_flight(self, u_a: float, state: InFlightState) -> None:
        """Keep ``state`` as the progress of the state being relaxed (replaces the last one)."""
        ...


class Engine(Protocol):
    """What ``stiffness`` needs from a backend."""

    name: str

    def lattice_constant_a(self) -> float:
        """Equilibrium FCC lattice constant of the engine's material (Å)."""
        ...

    def relax(self, structure: Structure, occupancy: np.ndarray, states_a: Sequence[float],
              warm: WarmStart | None = None, done: Sequence[RelaxResult] = (),
              on_state: Callable[[RelaxResult], None] | None = None,
              in_flight: InFlightStore | None = None, plain: bool = False,
              ftol_ev_per_a: float | None = None) -> list[RelaxResult]:
        """Relax every prescribed state; one result per state, in order.

        ``done``: results of the first states, relaxed earlier (a resumed iteration); an
        engine that relaxes state by state starts after them and hands each new result to
        ``on_state`` as soon as it is there; one that relaxes in cycles keeps its progress
        inside a state in ``in_flight`` and goes on from there. Engines that relax the batch
        in one go may ignore all three: the results are the same, only the time differs.
        ``plain``: minimize without the two-level corrections even if the engine is set up for
        them (a part of a design with a fixed shell, local_relax.py).
        ``ftol_ev_per_a``: a force tolerance for this call instead of the configured one, in the
        configured norm (the loose first stage of the tail polish, local_relax.py).
        """
        ...

    def close(self) -> None:
        """Release the backend (LAMMPS instance, temporary files)."""
        ...


@dataclass(frozen=True, eq=False)
class WarmStart:
    """Where a batch starts.

    positions_a : (n_sites, 3) start of the first state (Å); lattice positions at empty sites
    response_a : (n_sites, 3) or None, displacement per unit load displacement (Å/Å) of a
        previous, similar design: the first displaced state starts from x0 + u * response
    previous_occupancy : (n_sites,) bool or None, the design ``positions_a`` were relaxed for:
        what the sites that changed are found against (local_relax.py)
    """

    positions_a: np.ndarray
    response_a: np.ndarray | None = None
    previous_occupancy: np.ndarray | None = None


def prescribed_response(structure: Structure, response_a: np.ndarray) -> np.ndarray:
    """``response_a`` with the driven sites set exactly: load sites move by the load direction
    per unit u, clamp sites not at all (group loading)."""
    out = np.array(response_a, dtype=float, copy=True)
    out[structure.kind == 2] = structure.load_direction
    out[structure.kind == 1] = 0.0
    return out


EngineFactory = Callable[[RunConfig, "Potential | None"], Engine]
_REGISTRY: dict[str, tuple[str, str]] = {
    "lammps": ("nanoto_driver.engine_lammps", "LammpsEngine"),
    "lammps-exe": ("nanoto_driver.engine_lammps_exe", "LammpsExeEngine"),
    "harmonic": ("nanoto_driver.engine_harmonic", "HarmonicEngine"),
}


def engine_names() -> list[str]:
    return list(_REGISTRY)


def make_engine(config: RunConfig, potential: Potential | None) -> Engine:
    """Instantiate the engine named in ``config.engine.name`` (imports it lazily)."""
    name = config.engine.name
    if name not in _REGISTRY:
        raise ConfigError(f"unknown engine '{name}' (valid: {', '.join(_REGISTRY)})")
    import importlib

    module, cls = _REGISTRY[name]
    return getattr(importlib.import_module(module), cls)(config, potential)


def extrapolation(structure: Structure, states_a: Sequence[float], n: int) -> tuple[int, float] | None:
    """(earlier state, ratio) whose linear response starts state ``n``, or None.

    From the third state on (group loading), state n starts at
    x0 + (u_n / u_{n-1}) (x_{n-1} - x0): for ±δ the relaxed +δ response mirrored,
    which is already close to the -δ minimum. Box loading restarts from x0.
    """
    if n < 2 or structure.load_mode != "group" or states_a[n - 1] == 0:
        return None
    return n - 1, float(states_a[n]) / float(states_a[n - 1])


def first_guess(structure: Structure, states_a: Sequence[float], n: int, relaxed: Sequence[RelaxResult],
                warm: WarmStart | None) -> tuple[np.ndarray, bool]:
    """Start positions (n_sites, 3) of state ``n >= 1`` and whether they carry the prescribed displacement.

    Extrapolation of an earlier state of this batch first, then the previous design's
    response, else the relaxed first state (the engine then displaces the load group).
    """
    x0 = relaxed[0].positions_a
    guess = extrapolation(structure, states_a, n)
    if guess is not None:
        prev, ratio = guess
        return x0 + ratio * (relaxed[prev].positions_a - x0), True
    if warm is not None and warm.response_a is not None and structure.load_mode == "group" and n == 1:
        return x0 + float(states_a[n]) * prescribed_response(structure, warm.response_a), True
    return x0, False


def empty_to_lattice(structure: Structure, occupancy: np.ndarray, positions_a: np.ndarray) -> np.ndarray:
    """Copy of (n_sites, 3) positions with lattice positions at empty sites."""
    out = np.array(positions_a, dtype=float, copy=True)
    out[~occupancy] = structure.positions_a[~occupancy]
    return out
