"""Per-iteration cost of everything outside LAMMPS on a large lattice.

Times, on a cantilever block of ~10^6 sites (default 100 x 50 x 50 cells, z periodic),
the three per-iteration kernels of the optimizer: the multi-shell filter (3 shells,
42 neighbours), the BESO step and the cleanup (load path, pruning, refill), plus the
one-time set-up (filter operator, neighbour table). Prints medians of --repeats runs.

    python bench/kernels_bench.py [--cells 100 50 50] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

from nanoto_driver.cleanup import clean, padded_table
from nanoto_driver.filter import build_filter
from nanoto_driver.shells import neighbor_table
from nanoto_driver.update import beso_step, next_count


def timed(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, nargs=3, default=[100, 50, 50])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    cells, periodic = tuple(args.cells), (False, False, True)
    n = 4 * int(np.prod(cells))
    filt, t_filter_setup = timed(build_filter, cells, periodic, 3)
    table, t_table_setup = timed(lambda: padded_table(neighbor_table(cells, periodic, 1)))
    i = np.indices((4, *cells)).reshape(4, -1)[1]
    clamp, load = i < 2, i >= cells[0] - 1
    design = ~clamp & ~load
    rng = np.random.default_rng(0)
    # a smooth random field, like a real sensitivity after filtering
    alpha = filt(filt(rng.random(n)))
    occ = np.ones(n, bool)
    n_next = next_count(int(design.sum()), int(0.5 * design.sum()), 0.02)
    times: dict[str, list[float]] = {"filter": [], "beso_step": [], "cleanup": [], "total": []}
    for _ in range(args.repeats):
        a, t_f = timed(filt, alpha)
        new, t_b = timed(beso_step, a, occ, design, n_next, 0.02)
        _, t_c = timed(clean, table, new, design, clamp, load, a, n_next, 3)
        for key, value in zip(times, (t_f, t_b, t_c, t_f + t_b + t_c), strict=True):
            times[key].append(value)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{n:,} sites ({' x '.join(map(str, cells))} cells), median of {args.repeats}:")
    for key, value in med.items():
        print(f"  {key:10s} {value:7.3f} s")
    print(f"  one-time set-up: filter operator {t_filter_setup:.2f} s, neighbour table {t_table_setup:.2f} s")
    print(json.dumps({"n_sites": n, "median_s": med, "filter_setup_s": t_filter_setup,
                      "table_setup_s": t_table_setup, "repeats": args.repeats}))


if __name__ == "__main__":
    main()
