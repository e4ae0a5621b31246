"""Evaluate one design: config → potential → engine → structure → K_sym.

This is what ``nanoto evaluate`` runs; the optimizer will call the same pieces
once per iteration.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .config import RunConfig
from .design import check_load_path, initial_occupancy
from .engine import Engine, InFlightStore, RelaxResult, WarmStart, make_engine
from .lammps_runtime import mpi_comm
from .lattice_constant import lattice_constant_a
from .load_cases import build_structure
from .local_relax import LocalRelax, TailPolish, shell_hops_for
from .potential import Potential, load_potential
from .stiffness import StiffnessResult, symmetric_curvature
from .structure import Structure


@dataclass(frozen=True, eq=False)
class Problem:
    """Everything fixed for a run: config, potential, engine, a0, structure."""

    config: RunConfig
    potential: Potential | None
    engine: Engine
    a0_a: float
    structure: Structure

    def delta_a(self) -> float:
        """δ: load.delta_a, or load.strain times the load case's reference length (Å)."""
        load = self.config.load
        return load.delta_a if load.delta_a is not None else load.strain * self.structure.reference_length_a


def needs_potential(config: RunConfig) -> bool:
    return config.engine.name != "harmonic"


def open_problem(config: RunConfig) -> Problem:
    """Resolve the potential, start the engine, get a0 and build the load case."""
    potential = None
    if needs_potential(config):
        p = config.potential
        potential = load_potential(p.file, p.element, p.pair_style, config.base_dir)
    engine = make_engine(config, potential)
    comm = mpi_comm() if config.engine.name == "lammps" else None
    a0 = lattice_constant_a(engine, potential, comm)
    cutoff = potential.cutoff_a if potential is not None else None
    structure = build_structure(config.domain, a0, cutoff)
    return Problem(config, potential, engine, a0, structure)


def evaluate(problem: Problem, occupancy: np.ndarray | None = None, delta_a: float | None = None,
             warm: WarmStart | None = None, done: Sequence[RelaxResult] = (),
             on_state: Callable[[RelaxResult], None] | None = None,
             in_flight: InFlightStore | None = None) -> StiffnessResult:
    """K_sym of ``occupancy`` (default: the configured initial design) at δ (default: from the
    config); ``done``, ``on_state`` and ``in_flight`` as in ``symmetric_curvature``."""
    cfg = problem.config
    if occupancy is None:
        occupancy = initial_occupancy(cfg.design, problem.structure, cfg.base_dir)
    check_load_path(problem.structure, occupancy)
    delta = problem.delta_a() if delta_a is None else delta_a
    return symmetric_curvature(problem.engine, problem.structure, occupancy, delta,
                               cfg.minimizer.max_nonaffine_a, warm, done, on_state,
                               cfg.minimizer.basin_restarts, in_flight, local_relax(problem), tail_polish(problem))


def _region(problem: Problem, hops: int) -> LocalRelax:
    """A region ``hops`` around its seeds with a shell two potential cutoffs thick (the harmonic test
    double, whose springs join first neighbours, gets a shell of 2 hops) and minimizer.local_max_share."""
    shell = 2 if problem.potential is None else shell_hops_for(problem.potential.cutoff_a, problem.a0_a)
    return LocalRelax(hops, shell, problem.config.minimizer.local_max_share)


def local_relax(problem: Problem) -> LocalRelax | None:
    """The local relaxation of minimizer.local_hops (None when off)."""
    hops = problem.config.minimizer.local_hops
    return _region(problem, hops) if hops else None


def tail_polish(problem: Problem) -> TailPolish | None:
    """The tail polish of minimizer.polish_ftol_ev_per_a and polish_hops (None when off)."""
    m = problem.config.minimizer
    return TailPolish(m.polish_ftol_ev_per_a, _region(problem, m.polish_hops)) if m.polish_ftol_ev_per_a else None


def summary(problem: Problem, occupancy: np.ndarray, result: StiffnessResult, wall_s: float,
            ranks: int) -> dict[str, Any]:
    """The JSON record printed by ``nanoto evaluate --json``."""
    s = problem.structure
    out: dict[str, Any] = {
        "name": problem.config.name,
        "engine": problem.engine.name,
        "load_case": problem.config.domain.load_case,
        "k_sym_ev_per_a2": result.k_sym_ev_per_a2,
        "k_fwd_ev_per_a2": result.k_fwd_ev_per_a2,
        "k_force_ev_per_a2": result.k_force_ev_per_a2,
        "sum_alpha_ev_per_a2": result.sum_alpha_ev_per_a2,
        "residual_force_ev_per_a": result.residual_force_ev_per_a,
        "n_atoms": int(occupancy.sum()),
        "n_sites": s.n_sites,
        "n_design_sites": int((s.kind == 0).sum()),
        "delta_a": result.delta_a,
        "a0_a": problem.a0_a,
        "force_evaluations": result.force_evaluations,
        "basin_restarts": result.basin_restarts,
        "mpi_ranks": ranks,
        "wall_s": wall_s,
        "states": [vars(st) for st in result.states],
    }
    if problem.potential is not None:
        out["potential"] = str(problem.potential.path)
        out["potential_sha256"] = problem.potential.sha256
    if s.load_mode == "box":
        lengths = np.asarray(s.lattice.cells, float) * problem.a0_a
        volume = float(np.prod(lengths))
        c11 = result.k_sym_ev_per_a2 * lengths[s.load_axis] ** 2 / volume
        out["c11_gpa"] = c11 * EV_PER_A3_IN_GPA
    return out


#: 1 eV/Å³ in GPa (exact SI: e = 1.602176634e-19 C); LAMMPS' bar → eV/Å³ factor is its inverse x 1e-4
EV_PER_A3_IN_GPA = 160.2176634


def timed_evaluate(problem: Problem, occupancy: np.ndarray | None = None) -> tuple[StiffnessResult, float]:
    t0 = time.perf_counter()
    return evaluate(problem, occupancy), time.perf_counter() - t0
