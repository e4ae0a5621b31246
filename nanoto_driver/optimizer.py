"""The Nano-TO loop (method.md §5-6) as a generator of iteration records.

    occupancy_k → K_sym, α (LAMMPS) → filter → history average → BESO step → cleanup → occupancy_k+1

The loop does no I/O: observers (run file, log, progress bar) receive each
record. A record carries the *next* state too, so an observer that stores it
makes the run resumable after the iteration in flight.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from .cleanup import clean, first_shell_table
from .config import RunConfig
from .design import initial_occupancy
from .engine import WarmStart
from .evaluate import Problem, evaluate
from .filter import ShellFilter, build_filter
from .state_checkpoint import StateCheckpoint
from .stiffness import StiffnessResult
from .structure import CLAMP, DESIGN, LOAD
from .update import beso_step, next_count, target_count


@dataclass(frozen=True, eq=False)
class OptimizerState:
    """Everything the next iteration needs; what a run file stores to resume.

    occupancy : (n_sites,) bool, the design to evaluate at iteration ``k``
    alpha_hat : (n_sites,) previous filtered, averaged sensitivity (eV/Å²), or None at k = 0
    positions_a : (n_sites, 3) relaxed positions of the previous iteration's E(0), or None
    response_a : (n_sites, 3) previous response to the load per unit u, or None
    k_history : K_sym of iterations 0..k-1 (eV/Å²)
    previous_occupancy : (n_sites,) bool design of iteration k-1, or None at k = 0: what the
        atoms added and removed are counted against
    """

    k: int
    occupancy: np.ndarray
    alpha_hat: np.ndarray | None = None
    positions_a: np.ndarray | None = None
    response_a: np.ndarray | None = None
    k_history: tuple[float, ...] = ()
    previous_occupancy: np.ndarray | None = None

    def warm_start(self) -> WarmStart | None:
        """E(0) from the previous relaxed positions, +δ from the previous response."""
        if self.positions_a is None:
            return None
        return WarmStart(self.positions_a, self.response_a, self.previous_occupancy)


@dataclass(frozen=True, eq=False)
class IterationRecord:
    """One evaluated design and what comes next.

    ``next_state`` is None on the last iteration; ``status`` is "running",
    "converged" or "max_iterations".
    """

    k: int
    occupancy: np.ndarray
    result: StiffnessResult
    alpha_hat: np.ndarray
    n_design_atoms: int
    volume_fraction: float
    n_added: int
    n_removed: int
    evaluate_s: float
    update_s: float
    status: str
    next_state: OptimizerState | None = field(default=None)
    filter_s: float = 0.0  # update_s split: filter and history average,
    step_s: float = 0.0  # BESO step,
    cleanup_s: float = 0.0  # connectivity cleanup (s)

    @property
    def k_sym_ev_per_a2(self) -> float:
        return self.result.k_sym_ev_per_a2


class Observer(Protocol):
    def iteration(self, record: IterationRecord) -> None: ...


class Kernels:
    """What the loop builds once per run: filter operator, neighbour table, site sets."""

    def __init__(self, problem: Problem) -> None:
        s, f = problem.structure, problem.config.filter
        self.filter: ShellFilter = build_filter(s.lattice.cells, s.periodic, f.shells, f.scheme, f.radius_a0)
        self.table = first_shell_table(s.lattice.cells, s.periodic)
        self.design = s.kind == DESIGN
        self.clamp = s.kind == CLAMP
        self.load = s.kind == LOAD
        self.n_target = target_count(problem.config.optimizer.volume_fraction, int(self.design.sum()))


def initial_state(problem: Problem) -> OptimizerState:
    """Iteration 0: the configured starting design (full domain by default)."""
    cfg = problem.config
    return OptimizerState(0, initial_occupancy(cfg.design, problem.structure, cfg.base_dir))


def converged(k_history: Sequence[float], n_design: int, n_target: int, window: int, tol: float) -> bool:
    """N_k = N* and |ΣK(last Nw) - ΣK(previous Nw)| / ΣK(last Nw) <= τ."""
    if n_design != n_target or len(k_history) < 2 * window:
        return False
    last = sum(k_history[-window:])
    previous = sum(k_history[-2 * window : -window])
    return abs(last - previous) / abs(last) <= tol


def iterate(problem: Problem, state: OptimizerState | None = None, kernels: Kernels | None = None,
            checkpoint: StateCheckpoint | None = None) -> Iterator[IterationRecord]:
    """Run the optimization from ``state`` (default: the start); yield one record per iteration.

    ``checkpoint`` keeps the relaxed states of the iteration in flight (large runs resume inside it).
    """
    cfg: RunConfig = problem.config
    opt = cfg.optimizer
    kern = kernels or Kernels(problem)
    state = state or initial_state(problem)
    while True:
        previous = state.occupancy if state.previous_occupancy is None else state.previous_occupancy
        done = checkpoint.resume(state.k, state.occupancy) if checkpoint is not None else []
        t0 = time.perf_counter()
        result = evaluate(problem, state.occupancy, warm=state.warm_start() if opt.warm_start else None,
                          done=done, on_state=checkpoint.save if checkpoint is not None else None,
                          in_flight=checkpoint)
        t1 = time.perf_counter()
        # the iteration's time includes the states, and the part of a state, relaxed before a stop
        before_stop_s = checkpoint.before_stop_s if checkpoint is not None else 0.0
        alpha_hat = kern.filter(result.alpha)
        if cfg.filter.history and state.alpha_hat is not None:
            alpha_hat = 0.5 * (alpha_hat + state.alpha_hat)
        t2 = t3 = time.perf_counter()
        n_design = int((state.occupancy & kern.design).sum())
        history = (*state.k_history, result.k_sym_ev_per_a2)
        if converged(history, n_design, kern.n_target, opt.window, opt.tolerance):
            status = "converged"
        elif state.k + 1 >= opt.max_iterations:
            status = "max_iterations"
        else:
            status = "running"
        next_state = None
        if status == "running":
            n_next = next_count(n_design, kern.n_target, opt.evolution_rate)
            occ = beso_step(alpha_hat, state.occupancy, kern.design, n_next, opt.addition_ratio)
            t3 = time.perf_counter()
            occ = clean(kern.table, occ, kern.design, kern.clamp, kern.load, alpha_hat, n_next,
                        opt.min_neighbors)
            next_state = OptimizerState(state.k + 1, occ, alpha_hat, result.relaxed[0].positions_a,
                                        result.response_a, history, state.occupancy)
        t4 = time.perf_counter()
        yield IterationRecord(
            k=state.k, occupancy=state.occupancy, result=result, alpha_hat=alpha_hat,
            n_design_atoms=n_design, volume_fraction=n_design / int(kern.design.sum()),
            n_added=int((state.occupancy & ~previous).sum()),
            n_removed=int((previous & ~state.occupancy).sum()),
            evaluate_s=t1 - t0 + before_stop_s, update_s=t4 - t1, status=status, next_state=next_state,
            filter_s=t2 - t1, step_s=t3 - t2, cleanup_s=t4 - t3,
        )
        if next_state is None:
            return
        state = next_state


def run(problem: Problem, observers: Sequence[Observer], state: OptimizerState | None = None,
        checkpoint: StateCheckpoint | None = None) -> IterationRecord:
    """Drive ``iterate`` to the end, handing every record to the observers; return the last one."""
    last = None
    for record in iterate(problem, state, checkpoint=checkpoint):
        for observer in observers:
            observer.iteration(record)
        if checkpoint is not None:  # the run file has the iteration now
            checkpoint.clear()
        last = record
    assert last is not None
    return last
