"""Scale: per-iteration wall time, force evaluations and peak memory of large cantilevers.

The demo cantilever (workflows/examples/optimize_cantilever.yaml: thickness-periodic,
3 cells thick, 2:1 in plane, 3-shell filter) at four sizes, each run with ``nanoto run``
for a few iterations on 1 and 2 MPI ranks:

    label   cells          sites       design sites
    1e4     44 x 22 x 3       11,616       10,824
    1e5     132 x 66 x 3     104,544      102,168
    6.5e5   332 x 166 x 3    661,344      655,368
    1e6     410 x 205 x 3  1,008,600    1,001,220

Runs go to OUT/<label>_<R>r and are resumable (``--resume``): run the command again to
continue, or in pieces (``--sites 1e4 1e5`` now, ``--sites 6.5e5`` in the background).
``--report`` only reads what is there (finished or not) and prints, per case: iterations
done, median seconds per iteration and force evaluations per iteration over the warm
iterations (k >= 1; iteration 0 starts from the lattice), microseconds per site per
iteration, the split of the iteration (inside the LAMMPS minimizer loop, nanoto's engine
I/O, filter, BESO step, cleanup, run-file write), peak memory per rank and in total, and
the 2-rank speed-up. With ``--plot FILE`` it draws time per iteration versus sites.

    python bench/scale.py --sites 1e4 1e5 --ranks 1 2 --iterations 3
    nohup python bench/scale.py --sites 6.5e5 --ranks 2 --iterations 3 > scale.log 2>&1 &
    python bench/scale.py --report --json docs/figures/scale.json --plot docs/figures/scale.png
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from statistics import median
from typing import Any

import h5py
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "workflows" / "examples" / "optimize_cantilever.yaml"
CASES = {"1e4": (44, 22, 3), "1e5": (132, 66, 3), "6.5e5": (332, 166, 3), "1e6": (410, 205, 3)}
# The force tolerance as a bound on the largest force on any atom, so that it means the same
# at every size (the default 2-norm grows as √atoms, and from ~10^4 atoms CG then runs on to
# its line-search floor): K_sym within 5e-5 of the default at 11,616 sites with 3.2x fewer
# force evaluations (docs/performance.md, "Force tolerance at scale").
# From 10^5 atoms on, relaxations end on LAMMPS' line-search floor ("linesearch alpha is zero")
# with a largest force that grows with size: 0.8-1.6e-4 eV/Å at 10^5 sites (u = 0 of iterations
# 1-2), up to 4.2e-4 at 6.5 x 10^5 (+δ of iteration 0). The floor that is accepted is raised from
# 1e-4 to 1e-3 eV/Å for these runs; the force tolerance itself stays 1e-5.
# Since the eleventh session also the local relaxation before u = 0, skipped where its part holds
# more than a quarter of the atoms (all of 10^4; none of 10^5), and up to 10^5 sites the energy
# gauge (every state reaches the force tolerance instead of the floor): warm iterations at 10^5
# sites 800 force evaluations instead of 2,270 (docs/performance.md, "Two more 10^5-site designs").
# From 6.5 x 10^5 sites the gauge is not measured in whole runs: without the floor the states would
# go on to 1e-5 eV/Å through the tail that took thousands of force evaluations there (tenth session).
# Since the fourteenth session the local relaxation is skipped only above half the atoms: later
# iterations at 10^5 sites hold 33-45 % in the part, where it took 1,370 instead of 8,537 force
# evaluations of iteration 4 (runs/scale_s19 against runs/scale_s18_long); at 10^4 sites the parts
# of 35-50 % cost about what they save (docs/performance.md, fourteenth session).
# Also since then the secant pairs of the correction: 1.36x fewer force evaluations over 8
# iterations at 10^5 sites (runs/scale_s19s against runs/scale_s19), none at 10^4.
SCALE_SETTINGS = ["--set", "minimizer.norm=max", "--set", "minimizer.ftol_ev_per_a=1e-5",
                  "--set", "minimizer.local_hops=6", "--set", "minimizer.local_max_share=0.5",
                  "--set", "minimizer.secant_pairs=4"]
GAUGE = {"1e4": True, "1e5": True, "6.5e5": False, "1e6": False}
# At 6.5 x 10^5 sites the warm states of iteration 1 ended on the floor at 1.2-1.3e-3 eV/Å after
# hundreds of CG iterations of a tail (docs/performance.md, "The line-search floor at 6.5 x 10^5
# sites"), so from that size on the accepted floor is 5e-3 eV/Å.
ACCEPT_FMAX = {"1e4": 1e-3, "1e5": 1e-3, "6.5e5": 5e-3, "1e6": 5e-3}
# The two-level relaxation (docs/optimizer.md): a spring-network correction every 8 CG
# iterations; --coarse-every 0 gives plain CG, the baseline.
COARSE_EVERY = 8
# lammps_other_s: the rest of the time in calls into LAMMPS (each minimize's set-up, the coarse
# corrections' force evaluations, gathers, scatters); solve_s: the corrections' multigrid set-up and
# solves (Python); engine_io_s: the rest of the engine (Python: atom lists, log parsing, broadcasts)
PHASES = ("lammps_loop_s", "lammps_other_s", "solve_s", "engine_io_s", "filter_s", "step_s", "cleanup_s", "write_s")


def run_case(label: str, ranks: int, iterations: int, out: Path, coarse_every: int = COARSE_EVERY,
             sets: Sequence[str] = ()) -> int:
    """``nanoto run`` of one case (resumes what is there), with ``sets`` (KEY=VALUE) after the
    scale settings; returns its exit code."""
    cells = CASES[label]
    cmd = [sys.executable, "-m", "nanoto_driver", "run", str(CONFIG), "-o", str(out), "--resume", "--quiet",
           "--set", f"domain.cells=[{cells[0]}, {cells[1]}, {cells[2]}]", *SCALE_SETTINGS,
           "--set", f"minimizer.accept_fmax_ev_per_a={ACCEPT_FMAX[label]}",
           "--set", f"minimizer.energy_gauge={str(GAUGE[label]).lower()}",
           "--set", f"minimizer.coarse_every={coarse_every}",
           "--set", f"optimizer.max_iterations={iterations}", "--set", f"name=scale_{label}",
           *[arg for kv in sets for arg in ("--set", kv)]]
    if ranks > 1:
        cmd = [str(Path(sys.executable).parent / "mpiexec"), "-n", str(ranks), *cmd]
    print(f"== {label} sites, {ranks} rank(s): {' '.join(cmd[cmd.index('--quiet'):])}", flush=True)
    return subprocess.call(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"})


def read_case(folder: Path) -> dict[str, Any] | None:
    """Per-iteration figures of a run folder (finished or not), or None before its first iteration."""
    run = folder / "run.h5"
    if not run.is_file():
        return None
    with h5py.File(run, "r") as f:
        it = {name: ds[:] for name, ds in f["iterations"].items() if name != "occupancy"}
        n_sites = int(f["lattice/kind"].shape[0])
        n_design = int(f["lattice/design"][:].sum())
        write_s = float(f.attrs.get("write_s", 0.0))
    n = int(it["k"].size)
    if n == 0:
        return None
    summary_path = folder / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    warm = slice(1, None) if n > 1 else slice(0, None)
    write_per_it = write_s / max(n - 1, 1)  # the file books each write at the next one
    per_it = it["evaluate_s"] + it["update_s"] + write_per_it
    def column(name: str, fallback: np.ndarray) -> np.ndarray:  # runs made before the column: fallback
        values = it.get(name, np.full(n, np.nan))
        return np.where(np.isnan(values), fallback, values)

    coarse = column("coarse_s", np.zeros(n))
    solve = column("solve_s", coarse)  # before solve_s: the whole correction counted as outside LAMMPS
    lammps = column("lammps_calls_s", it["lammps_loop_s"] + coarse - solve)
    phases = {
        "lammps_loop_s": it["lammps_loop_s"], "lammps_other_s": lammps - it["lammps_loop_s"], "solve_s": solve,
        "engine_io_s": it["evaluate_s"] - lammps - solve,
        "filter_s": it["filter_s"], "step_s": it["step_s"], "cleanup_s": it["cleanup_s"],
        "write_s": np.full(n, write_per_it),
    }
    total = float(np.sum(per_it[warm]))
    return {
        "sites": n_sites, "design_sites": n_design, "iterations": n, "finished": bool(summary),
        "s_per_iteration": float(median(per_it[warm])),
        "force_evaluations_per_iteration": float(median(it["force_evaluations"][warm])),
        "us_per_site_iteration": 1e6 * float(median(per_it[warm])) / n_sites,
        # iteration 0 (the full block relaxed from the lattice) is the one iteration every size has
        "s_iteration0": float(per_it[0]),
        "us_per_site_iteration0": 1e6 * float(per_it[0]) / n_sites,
        "force_evaluations_iteration0": int(it["force_evaluations"][0]),
        "us_per_site_force_evaluation": 1e6 * float(np.sum(it["lammps_loop_s"][warm]))
        / (n_sites * float(np.sum(it["force_evaluations"][warm]))),
        "fractions": {name: float(np.sum(v[warm])) / total for name, v in phases.items()},
        "outside_lammps_fraction": 1.0 - float(np.sum(lammps[warm])) / total,
        "peak_rss_mb_per_rank": summary.get("peak_rss_mb_per_rank"),
        "peak_rss_mb_total": summary.get("peak_rss_mb_total"),
        "k_sym_ev_per_a2": [float(x) for x in it["k_sym_ev_per_a2"]],
    }


def report(out: Path, json_path: str | None, plot_path: str | None) -> None:
    rows = []
    for label in CASES:
        for ranks in (1, 2):
            case = read_case(out / f"{label}_{ranks}r")
            if case is not None:
                rows.append({"label": label, "ranks": ranks, **case})
    print(f"{'case':>6} {'R':>2} {'sites':>9} {'it':>3} {'s/it':>9} {'FE/it':>7} {'us/site/it':>10} "
          f"{'us/site/FE':>10} {'loop':>7} {'LMP oth':>7} {'solve':>7} {'eng.I/O':>7} {'filter':>7} {'step':>7} "
          f"{'cleanup':>7} {'write':>7} {'outside':>7} {'RSS/rank MB':>14} {'RSS tot':>8}")
    for r in rows:
        fr = r["fractions"]
        rss = r["peak_rss_mb_per_rank"]
        rss_text = "/".join(f"{x:.0f}" for x in rss) if rss else "-"
        print(f"{r['label']:>6} {r['ranks']:>2} {r['sites']:>9,} {r['iterations']:>3} {r['s_per_iteration']:>9.2f} "
              f"{r['force_evaluations_per_iteration']:>7.0f} {r['us_per_site_iteration']:>10.1f} "
              f"{r['us_per_site_force_evaluation']:>10.3f} "
              + " ".join(f"{100 * fr[p]:>6.2f}%" for p in PHASES)
              + f" {100 * r['outside_lammps_fraction']:>6.2f}% {rss_text:>14}"
              f" {r['peak_rss_mb_total'] or float('nan'):>8.0f}")
    by = {(r["label"], r["ranks"]): r for r in rows}
    for label in CASES:
        if (label, 1) in by and (label, 2) in by:  # iteration 0 is the same design on both; later ones may part
            one, two = by[label, 1], by[label, 2]
            warm = (f", warm iterations {one['s_per_iteration'] / two['s_per_iteration']:.2f}x"
                    if one["iterations"] > 1 and two["iterations"] > 1 else "")
            print(f"{label}: 2 ranks vs 1: iteration 0 {one['s_iteration0'] / two['s_iteration0']:.2f}x{warm}")
    for ranks in (1, 2):
        for key, what in (("us_per_site_iteration", "warm iterations"), ("us_per_site_iteration0", "iteration 0")):
            sel = [r for r in rows if r["ranks"] == ranks and (key.endswith("0") or r["iterations"] > 1)]
            per_site = [r[key] for r in sel]
            if len(per_site) > 1:
                print(f"{ranks} rank(s), {what}: time per iteration per site varies "
                      f"{max(per_site) / min(per_site):.2f}x ({min(per_site):.1f}-{max(per_site):.1f} us) "
                      f"over {', '.join(r['label'] for r in sel)}")
    if json_path:
        Path(json_path).write_text(json.dumps(rows, indent=1))
    if plot_path and rows:
        _plot(rows, Path(plot_path))


def _plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for ranks, color in ((1, "C0"), (2, "C1")):
        sel = [r for r in rows if r["ranks"] == ranks]
        warm = [r for r in sel if r["iterations"] > 1]
        for series, key, fe_key, marker, style in (
                (sel, "s_iteration0", "force_evaluations_iteration0", "o", "-"),
                (warm, "s_per_iteration", "force_evaluations_per_iteration", "s", "--")):
            if not series:
                continue
            label = f"{ranks} rank(s), " + ("iteration 0" if marker == "o" else "warm iterations (median)")
            x = [r["sites"] for r in series]
            ax1.loglog(x, [r[key] for r in series], marker + style, color=color, label=label)
            ax2.semilogx(x, [r[fe_key] for r in series], marker + style, color=color, label=label)
    xs = np.array(sorted({r["sites"] for r in rows}), dtype=float)
    first = min(rows, key=lambda r: r["sites"])
    ax1.loglog(xs, first["s_iteration0"] * xs / first["sites"], "k:", label="∝ sites")
    ax1.set(xlabel="lattice sites", ylabel="wall time per iteration (s)", title="time per iteration")
    ax2.set(xlabel="lattice sites", ylabel="force evaluations per iteration", title="force evaluations")
    ax2.set_ylim(bottom=0)
    for ax in (ax1, ax2):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"plot: {path}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sites", nargs="+", choices=list(CASES), default=["1e4", "1e5"])
    ap.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--iterations", type=int, default=3, help="iterations per run (k = 0 starts cold)")
    ap.add_argument("--out", default=str(ROOT / "runs" / "scale"))
    ap.add_argument("--coarse-every", type=int, default=COARSE_EVERY,
                    help=f"minimizer.coarse_every (default {COARSE_EVERY}; 0: plain CG)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a further config override for every run (e.g. minimizer.local_hops=6)")
    ap.add_argument("--report", action="store_true", help="only read the runs that are there")
    ap.add_argument("--json", help="write the report rows here")
    ap.add_argument("--plot", help="write time per iteration versus sites here (.png)")
    args = ap.parse_args()
    out = Path(args.out)
    if not args.report:
        for label in args.sites:
            for ranks in args.ranks:
                code = run_case(label, ranks, args.iterations, out / f"{label}_{ranks}r", args.coarse_every,
                                args.set)
                if code != 0:
                    print(f"{label} on {ranks} rank(s) ended with exit code {code}", flush=True)
    report(out, args.json, args.plot)


if __name__ == "__main__":
    main()
