"""Force evaluations per iteration: warm starts against cold relaxations of the same designs.

For iterations k of a finished run (its run file holds every design), the design of
iteration k is relaxed at (0, +δ, -δ) three ways with the run's own config and engine:

    cold    every state alone from the lattice sites (the load group displaced by u):
            what a fresh LAMMPS run per state from a data file does
    batch   one batch from the lattice: ±δ start from the relaxed 0 state, -δ on the
            mirrored +δ response (nanoto with optimizer.warm_start false)
    warm    E(0) from the relaxed positions of design k-1 (added atoms on their sites),
            +δ from the relaxed 0 plus design k-1's response (what a run does); with
            minimizer.local_hops set, the region around the changed sites is relaxed first
            and counted in whole-design force evaluations by its share of the atoms; with
            minimizer.polish_ftol_ev_per_a, u = 0's tail is polished (local_relax.polish_tail)

Design k-1 is relaxed first (batch) to give the warm start. Prints force evaluations per
iteration, ratios cold/warm and batch/warm, K_sym of each and their relative spread.
Each figure is a count, not a time, so one repeat suffices; K_sym must agree within 1e-4.
A cold or batch reference whose states end in different basins (reconstructing designs
from the lattice) is reported as "apart": its force evaluations count, its K_sym does not
enter the spread. ``--starts warm`` runs the warm relaxation only (to compare its settings).
k may also be the run's last iteration + 1: the design its state group holds next (a run
stopped after a BESO step).

    python bench/warm_start.py runs/demo/run.h5 --iterations 5 10 20 30
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import h5py
import numpy as np

from nanoto_driver import runfile
from nanoto_driver.config import build_config, merge_trees, parse_overrides
from nanoto_driver.engine import RelaxResult, WarmStart
from nanoto_driver.errors import DisplacementError, RelaxationError
from nanoto_driver.evaluate import local_relax, open_problem, tail_polish
from nanoto_driver.stiffness import STATES, StiffnessResult, energy_difference_ev, symmetric_curvature

STARTS = ("cold", "batch", "warm")


class Recorder:
    """An engine that keeps every state it relaxed; ``cold``: each state on its own, from the
    lattice sites, whatever the batch's warm start (what a fresh LAMMPS run per state does)."""

    def __init__(self, engine: Any, cold: bool) -> None:
        self.engine, self.cold = engine, cold
        self.relaxed: list[RelaxResult] = []

    def relax(self, structure: Any, occupancy: np.ndarray, states_a: Sequence[float],
              warm: WarmStart | None = None, done: Sequence[RelaxResult] = (),
              on_state: Any = None, in_flight: Any = None) -> list[RelaxResult]:
        if self.cold:
            results = [self.engine.relax(structure, occupancy, [u])[0] for u in states_a]
        else:
            results = self.engine.relax(structure, occupancy, states_a, warm)
        self.relaxed += results
        return results


@dataclass(frozen=True)
class Apart:
    """A reference whose states ended in different basins: its cost counts, its K_sym does not.

    From the lattice, the states of a reconstructing design may each find their own
    reconstruction (a cold state's bond 1.15 Å from the u = 0 one's), or fall on and on into
    lower minima past the basin restarts (a batch: 9 eV, then 12 eV), so their energies belong
    to different minima. The force evaluations are still what those relaxations cost.
    """

    reason: str
    relaxed: tuple[RelaxResult, ...]  # every state relaxed, discarded batches first
    delta_a: float
    local: None = None

    @property
    def force_evaluations(self) -> int:
        return sum(r.force_evaluations for r in self.relaxed)

    @property
    def basin_restarts(self) -> int:
        return len(self.relaxed) // len(STATES) - 1

    @property
    def k_sym_ev_per_a2(self) -> float:
        """The raw curvature of the last three energies (eV/Å²), of no physical meaning here."""
        zero, plus, minus = self.relaxed[-len(STATES):]
        return (energy_difference_ev(plus, zero) + energy_difference_ev(minus, zero)) / self.delta_a ** 2

    @property
    def states(self) -> tuple[RelaxResult, ...]:
        return self.relaxed[-len(STATES):]


def reference(problem: Any, occ: np.ndarray, cold: bool) -> StiffnessResult | Apart:
    """K_sym of design ``occ`` from the lattice, cold (no basin restarts: each state starts from
    the lattice whatever a restart would say) or as one batch, or their cost if they ended apart."""
    engine, mini = Recorder(problem.engine, cold), problem.config.minimizer
    try:
        return symmetric_curvature(engine, problem.structure, occ, problem.delta_a(), mini.max_nonaffine_a,
                                   basin_restarts=0 if cold else mini.basin_restarts)
    except (DisplacementError, RelaxationError) as e:
        print(f"     {'cold' if cold else 'batch'}: the states ended in different basins ({e}); their force "
              "evaluations count, their K_sym does not")
        return Apart(str(e), tuple(engine.relaxed), problem.delta_a())


def measure(problem: Any, occ_prev: np.ndarray, occ: np.ndarray,
            starts: Sequence[str] = STARTS) -> dict[str, StiffnessResult | Apart]:
    """K_sym of design ``occ`` from each of ``starts`` (cold, batch, warm from ``occ_prev``); a
    reference whose states end apart is reported as such (``Apart``)."""
    s, delta, mini = problem.structure, problem.delta_a(), problem.config.minimizer
    out: dict[str, StiffnessResult | Apart] = {}
    for start in starts:
        if start == "warm":
            prev = symmetric_curvature(problem.engine, s, occ_prev, delta, mini.max_nonaffine_a,
                                       basin_restarts=mini.basin_restarts)
            warm = WarmStart(prev.relaxed[0].positions_a, prev.response_a, occ_prev)
            out[start] = symmetric_curvature(problem.engine, s, occ, delta, mini.max_nonaffine_a, warm,
                                             basin_restarts=mini.basin_restarts, local=local_relax(problem),
                                             polish=tail_polish(problem))
        else:
            out[start] = reference(problem, occ, cold=start == "cold")
    return out


def rank_zero_prints(engine: Any) -> bool:
    """Under mpiexec every rank runs the bench: send the output and log lines of ranks other
    than 0 to /dev/null (for the process's life). True on rank 0, which prints and writes files."""
    if getattr(engine, "rank", 0) == 0:
        return True
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115
    logging.disable(logging.CRITICAL)
    return False


def run_config(run: str, sets: Sequence[str]) -> Any:
    """The config of a run file with ``--set KEY=VALUE`` overrides applied (parsed as the CLI parses them)."""
    config = runfile.read_config(run)
    if not sets:
        return config
    return build_config(merge_trees(config.model_dump(mode="json"), parse_overrides(list(sets))))


def designs(run: str) -> np.ndarray:
    """(n, n_sites) designs of a run: its iterations, then the next one if its state group holds it
    (a run stopped after a BESO step)."""
    occupancy = runfile.read_iterations(run)["occupancy"].astype(bool)
    with h5py.File(run, "r") as f:
        if "state" in f and "occupancy" in f["state"]:
            occupancy = np.vstack([occupancy, f["state/occupancy"][:].astype(bool)[None]])
    return occupancy


def design_pairs(occupancy: np.ndarray, iterations: Sequence[int]) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """(k, design k-1, design k) for each requested k of a run's (n_iterations, n_sites) occupancy."""
    for k in iterations:
        if not 1 <= k < len(occupancy):
            raise SystemExit(f"iteration {k} is not in 1..{len(occupancy) - 1}")
        yield k, occupancy[k - 1], occupancy[k]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", help="a run file (run.h5) with at least two designs (iterations, or the next one)")
    ap.add_argument("--iterations", type=int, nargs="+", default=[5, 10, 20])
    ap.add_argument("--json", help="also write the rows here")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a key of the run's config (e.g. minimizer.norm=max)")
    ap.add_argument("--starts", nargs="+", choices=STARTS, default=list(STARTS),
                    help="which relaxations to run (e.g. only warm, to compare settings of the warm one)")
    args = ap.parse_args()
    config = run_config(args.run, args.set)
    occupancy = designs(args.run)
    problem = open_problem(config)
    if not rank_zero_prints(problem.engine):
        args.json = None
    print(f"{args.run}: {config.name}, {problem.structure.n_sites} sites, engine {config.engine.name}")
    print(f"{'k':>4} {'atoms':>7} {'cold':>7} {'batch':>7} {'warm':>7} {'cold/warm':>9} {'batch/warm':>10}"
          f" {'K_sym warm':>11} {'max rel dK':>10}")
    rows = []
    try:
        for k, previous, design in design_pairs(occupancy, args.iterations):
            r = measure(problem, previous, design, args.starts)
            rows.append(row(k, int(occupancy[k].sum()), r))
            print_row(rows[-1])
    finally:
        problem.engine.close()
    tot = {name: sum(r["force_evaluations"][name] for r in rows) for name in args.starts}
    ratios = [f"{n}/warm {tot[n] / tot['warm']:.2f}" for n in tot if "warm" in tot and n != "warm"]
    print("all: " + (f"{', '.join(ratios)}; " if ratios else "") + "per state (0, +δ, -δ) summed: " + ", ".join(
              f"{n} {np.sum([r['per_state'][n] for r in rows], axis=0).tolist()}" for n in tot))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


def row(k: int, atoms: int, r: dict[str, StiffnessResult | Apart]) -> dict[str, Any]:
    """One design's figures for the JSON file: force evaluations (discarded batches included),
    per state, K_sym, the spread of K_sym against warm, restarts, wall times, the local part."""
    ks = {name: res.k_sym_ev_per_a2 for name, res in r.items()}
    apart = [name for name, res in r.items() if isinstance(res, Apart)]
    kept = [v for name, v in ks.items() if name not in apart]
    local = r["warm"].local if "warm" in r else None
    return {
        "k": k, "atoms": atoms, "force_evaluations": {name: res.force_evaluations for name, res in r.items()},
        "per_state": {name: [st.force_evaluations for st in res.states] for name, res in r.items()},
        "k_sym": ks,
        "max_rel_dk": max(abs(v - ks["warm"]) for v in kept) / ks["warm"] if "warm" in ks else None,
        "basin_restarts": {name: res.basin_restarts for name, res in r.items()},
        "wall_s": {name: sum(st.wall_s for st in res.states) + sum(b.wall_s for b in getattr(res, "before", ()))
                   for name, res in r.items()},
        "local": None if local is None else {"force_evaluations": local.force_evaluations,
                                             "atoms": local.n_atoms, "wall_s": local.wall_s},
        "polish": [{"force_evaluations": p.force_evaluations, "atoms": p.n_atoms, "wall_s": p.wall_s}
                   for p in (r["warm"].polish if "warm" in r else ())],
        "apart": apart,
    }


def print_row(r: dict[str, Any]) -> None:
    fe, ks, restarted, local, polish = (r["force_evaluations"], r["k_sym"], r["basin_restarts"], r["local"],
                                        r["polish"])
    cells = [f"{fe.get(n, ''):>7}" for n in STARTS]
    ratios = [f"{fe[n] / fe['warm']:>9.2f}" if n in fe and "warm" in fe else f"{'':>9}" for n in ("cold", "batch")]
    k_warm = f"{ks['warm']:>11.6g}" if "warm" in ks else f"{'':>11}"
    spread = f"{r['max_rel_dk']:>10.1e}" if r["max_rel_dk"] is not None else ""
    print(f"{r['k']:>4} {r['atoms']:>7} {' '.join(cells)} {' '.join(ratios)} {k_warm} {spread}"
          + (f"  basin restarts {restarted}" if any(restarted.values()) else "")
          + (f"  (spread without {', '.join(r['apart'])}: states apart)" if r["apart"] else ""))
    print("     per state (0, +δ, -δ): " + ", ".join(f"{n} {v}" for n, v in r["per_state"].items())
          + "; wall (s): " + ", ".join(f"{n} {v:.1f}" for n, v in r["wall_s"].items())
          + ("" if local is None else f"; warm's local relaxation: {local['force_evaluations']} force "
             f"evaluations of {local['atoms']} atoms, {local['wall_s']:.1f} s")
          + "".join(f"; polish: {p['force_evaluations']} force evaluations of {p['atoms']} atoms, "
                    f"{p['wall_s']:.1f} s" for p in polish))


if __name__ == "__main__":
    main()
