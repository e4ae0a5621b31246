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
            and counted in whole-design force evaluations by its share of the atoms

Design k-1 is relaxed first (batch) to give the warm start. Prints force evaluations per
iteration, ratios cold/warm and batch/warm, K_sym of each and their relative spread.
Each figure is a count, not a time, so one repeat suffices; K_sym must agree within 1e-4.
k may also be the run's last iteration + 1: the design its state group holds next (a run
stopped after a BESO step).

    python bench/warm_start.py runs/demo/run.h5 --iterations 5 10 20 30
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator, Sequence
from typing import Any

import h5py
import numpy as np

from nanoto_driver import runfile
from nanoto_driver.config import build_config, merge_trees, parse_overrides
from nanoto_driver.engine import RelaxResult, WarmStart
from nanoto_driver.evaluate import local_relax, open_problem
from nanoto_driver.stiffness import StiffnessResult, symmetric_curvature


class ColdEngine:
    """Relaxes every state of a batch on its own, from the lattice sites."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine

    def relax(self, structure: Any, occupancy: np.ndarray, states_a: Sequence[float],
              warm: WarmStart | None = None, done: Sequence[RelaxResult] = (),
              on_state: Any = None, in_flight: Any = None) -> list[RelaxResult]:
        return [self.engine.relax(structure, occupancy, [u])[0] for u in states_a]


def measure(problem: Any, occ_prev: np.ndarray, occ: np.ndarray) -> dict[str, StiffnessResult]:
    """K_sym of design ``occ`` cold, batch and warm (from ``occ_prev``). Cold relaxations
    cannot restart in another basin (each state starts from the lattice whatever the warm
    start says): a cold batch that escapes fails, as a plain LAMMPS run per state would."""
    s, delta, mini = problem.structure, problem.delta_a(), problem.config.minimizer
    restarts = {"basin_restarts": mini.basin_restarts}
    prev = symmetric_curvature(problem.engine, s, occ_prev, delta, mini.max_nonaffine_a, **restarts)
    warm = WarmStart(prev.relaxed[0].positions_a, prev.response_a, occ_prev)
    return {
        "cold": symmetric_curvature(ColdEngine(problem.engine), s, occ, delta, mini.max_nonaffine_a,
                                    basin_restarts=0),
        "batch": symmetric_curvature(problem.engine, s, occ, delta, mini.max_nonaffine_a, **restarts),
        "warm": symmetric_curvature(problem.engine, s, occ, delta, mini.max_nonaffine_a, warm, **restarts,
                                    local=local_relax(problem)),
    }


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
    args = ap.parse_args()
    config = run_config(args.run, args.set)
    occupancy = designs(args.run)
    problem = open_problem(config)
    print(f"{args.run}: {config.name}, {problem.structure.n_sites} sites, engine {config.engine.name}")
    print(f"{'k':>4} {'atoms':>7} {'cold':>7} {'batch':>7} {'warm':>7} {'cold/warm':>9} {'batch/warm':>10}"
          f" {'K_sym warm':>11} {'max rel dK':>10}")
    rows = []
    try:
        for k, previous, design in design_pairs(occupancy, args.iterations):
            r = measure(problem, previous, design)
            fe = {name: res.force_evaluations for name, res in r.items()}  # discarded batches included
            ks = {name: res.k_sym_ev_per_a2 for name, res in r.items()}
            spread = max(abs(v - ks["warm"]) for v in ks.values()) / ks["warm"]
            per_state = {name: [st.force_evaluations for st in res.states] for name, res in r.items()}
            restarted = {name: res.basin_restarts for name, res in r.items()}
            wall = {name: sum(st.wall_s for st in res.states) + (res.local.wall_s if res.local else 0.0)
                    for name, res in r.items()}
            local = r["warm"].local
            local_row = None if local is None else {"force_evaluations": local.force_evaluations,
                                                    "atoms": local.n_atoms, "wall_s": local.wall_s}
            rows.append({"k": k, "atoms": int(occupancy[k].sum()), "force_evaluations": fe,
                         "per_state": per_state, "k_sym": ks, "max_rel_dk": spread, "basin_restarts": restarted,
                         "wall_s": wall, "local": local_row})
            print(f"{k:>4} {int(occupancy[k].sum()):>7} {fe['cold']:>7} {fe['batch']:>7} {fe['warm']:>7} "
                  f"{fe['cold'] / fe['warm']:>9.2f} {fe['batch'] / fe['warm']:>10.2f} {ks['warm']:>11.6g} "
                  f"{spread:>10.1e}" + (f"  basin restarts {restarted}" if any(restarted.values()) else ""))
            print(f"     wall (s): cold {wall['cold']:.1f}, batch {wall['batch']:.1f}, warm {wall['warm']:.1f}"
                  + ("" if local is None else f"; warm's local relaxation: {local.force_evaluations} force "
                     f"evaluations of {local.n_atoms} atoms, {local.wall_s:.1f} s"))
    finally:
        problem.engine.close()
    tot = {name: sum(r["force_evaluations"][name] for r in rows) for name in ("cold", "batch", "warm")}
    print(f"all: cold/warm {tot['cold'] / tot['warm']:.2f}, batch/warm {tot['batch'] / tot['warm']:.2f}; "
          f"per state (0, +δ, -δ) summed: " + ", ".join(
              f"{n} {np.sum([r['per_state'][n] for r in rows], axis=0).tolist()}" for n in tot))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
