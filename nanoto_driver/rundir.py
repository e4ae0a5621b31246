"""A run directory: ``run.h5`` updated every iteration, products written at the end.

    DIR/run.h5          the HDF5 run file (resumable)
    DIR/run.log         the iteration log
    DIR/summary.json    headline figures
    DIR/convergence.png K_sym and volume fraction versus iteration
    DIR/design.png      three orthogonal views of the final design
    DIR/final.data      final design, LAMMPS data file (ids = site + 1, relaxed positions)
    DIR/final.extxyz    the same for OVITO / ASE, with per-atom site, kind and alpha

Under MPI every rank runs the loop; rank 0 alone reads and writes files.
"""

from __future__ import annotations

import datetime
import logging
import platform
import socket
import sys
import time
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__, runfile
from .config import RunConfig, config_hash
from .errors import InputError, NanotoError
from .evaluate import Problem, open_problem
from .lammps_runtime import launcher_rank, mpi_comm
from .observers import LogObserver, ProgressObserver, RunFileObserver, StopObserver
from .optimizer import OptimizerState, run
from .outputs import occupancy_sha256, plot_convergence, plot_design, write_structure_files, write_summary
from .shared_descent import Branch, SeedObserver, seeded_iterations
from .state_checkpoint import PARTIAL, StateCheckpoint
from .structure import DESIGN

log = logging.getLogger("nanoto")
FINISHED = ("converged", "max_iterations")
PHASES = ("lammps_loop_s", "lammps_calls_s", "coarse_s", "solve_s", "filter_s", "step_s", "cleanup_s")


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return ""


def provenance(problem: Problem, ranks: int) -> dict[str, Any]:
    pot = problem.potential
    return {
        "nanoto_version": __version__, "lammps_version": _version("lammps"), "h5py_version": _version("h5py"),
        "numpy_version": np.__version__, "python": sys.version.split()[0], "platform": platform.platform(),
        "host": socket.gethostname(), "command_line": " ".join(sys.argv), "mpi_ranks": ranks,
        "engine": problem.engine.name, "a0_a": problem.a0_a,
        "potential_path": str(pot.path) if pot else "", "potential_sha256": pot.sha256 if pot else "",
        "started_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


class _Ranks:
    """Rank 0 does I/O; ``share`` broadcasts its value to the others."""

    def __init__(self) -> None:
        self.comm = mpi_comm() if "mpi4py" in sys.modules or launcher_rank() is not None else None
        self.rank = self.comm.Get_rank() if self.comm is not None else 0
        self.size = self.comm.Get_size() if self.comm is not None else 1

    def share(self, value: Any) -> Any:
        return self.comm.bcast(value, root=0) if self.comm is not None else value

    def gather(self, value: Any) -> list[Any]:
        """Every rank's ``value`` on rank 0 (an empty list elsewhere)."""
        if self.comm is None:
            return [value]
        return self.comm.gather(value, root=0) or []


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (MB; Linux reports kB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _check_folder(run_path: Path, config: RunConfig, resume: bool) -> str | None:
    """Status of an existing run to resume (None for a new run); refuses to overwrite."""
    if not run_path.exists():
        return None
    if not resume:
        raise InputError(f"{run_path} exists: add --resume to continue that run, or choose another -o")
    old = runfile.read_config(run_path)
    if config_hash(old) != config_hash(config):
        raise runfile.RunFileError(f"{run_path} holds a run of another config; resume with the same config "
                                   "and --set values, or choose another -o")
    return runfile.status(run_path)


def run_in_dir(config: RunConfig, out_dir: str | Path, resume: bool = False, progress: bool | None = None,
               stop_requested: Callable[[], int | None] | None = None,
               branches: Sequence[Branch] = ()) -> dict[str, Any]:
    """Optimize ``config`` in ``out_dir`` (resuming if asked); return the summary (rank 0).

    ``stop_requested()`` is asked after every saved iteration (rank 0's answer counts): a signal
    number ends the run there with RunStopped, resumable. ``branches`` (same config, higher target
    volume fraction, no run file yet) get a seed run file when the descent they share ends.
    """
    ranks = _Ranks()
    out = Path(out_dir)
    run_path = out / "run.h5"
    status = ranks.share(_check_folder(run_path, config, resume) if ranks.rank == 0 else None)
    handler = None
    if ranks.rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        handler = _log_to(out / "run.log")
    t0 = time.perf_counter()
    try:
        problem = open_problem(config)
        try:
            if status not in FINISHED:
                _optimize(problem, run_path, status is not None, ranks, progress, stop_requested, branches)
            rss = ranks.gather(peak_rss_mb())
            summary = _finish(problem, out, time.perf_counter() - t0, rss) if ranks.rank == 0 else {}
        finally:
            problem.engine.close()
    finally:
        if handler is not None:
            logging.getLogger("nanoto").removeHandler(handler)
            handler.close()
    return summary


def _optimize(problem: Problem, run_path: Path, resuming: bool, ranks: _Ranks, progress: bool | None,
              stop_requested: Callable[[], int | None] | None, branches: Sequence[Branch]) -> None:
    state: OptimizerState | None = None
    if ranks.rank == 0:
        if resuming:
            state = runfile.load_state(run_path, problem.config)
            shared = seeded_iterations(run_path)
            log.info("resuming %s at iteration %d%s", run_path, state.k if state else 0,
                     f" (iterations 0-{shared - 1} shared with a run of lower target)" if shared else "")
        else:
            runfile.create(run_path, problem.config, problem.structure, provenance(problem, ranks.size))
    state = ranks.share(state)
    observers: list[Any] = []
    bar = None
    if ranks.rank == 0:
        bar = ProgressObserver(problem.config.optimizer.max_iterations, state.k if state else 0, progress)
        observers = [RunFileObserver(run_path), LogObserver(), bar]
        if branches:
            observers.append(SeedObserver(run_path, problem.config, branches, problem.structure.kind == DESIGN))
        if not bar.bar.disable:  # the bar replaces the per-iteration lines on the terminal
            _quiet_stderr()
    if stop_requested is not None:
        observers.append(StopObserver(stop_requested, ranks.share))
    checkpoint = StateCheckpoint(run_path.parent / PARTIAL, ranks.share, ranks.rank)
    try:
        run(problem, observers, state, checkpoint)
    except NanotoError as err:
        if ranks.rank == 0:
            runfile.mark_failed(run_path, str(err))
            log.error("run stopped: %s", err)
        raise
    finally:
        if bar is not None:
            bar.close()


def _finish(problem: Problem, out: Path, wall_s: float, rss_mb: list[float]) -> dict[str, Any]:
    """Summary, plots and structure files from the run file; ``rss_mb``: peak memory per rank (MB)."""
    run_path = out / "run.h5"
    it = runfile.read_iterations(run_path)
    import h5py

    with h5py.File(run_path, "r") as f:
        final = {name: ds[:] for name, ds in f["final"].items()}
        status = str(f.attrs["status"])
        write_s = float(f.attrs.get("write_s", 0.0))
    occ = final["occupancy"].astype(bool)
    name = problem.config.name
    engine_s, update_s = float(np.sum(it["evaluate_s"])), float(np.sum(it["update_s"]))
    wall = engine_s + update_s + write_s
    # outside LAMMPS: everything but the calls into it (the engine's Python side, the coarse
    # corrections' solves, filter, update, writes); rows older than that column, and engines
    # without a library handle: the whole engine counts as LAMMPS
    calls = it.get("lammps_calls_s", np.full(it["k"].size, np.nan))
    inside = float(np.sum(np.where(np.isfinite(calls), calls, it["evaluate_s"])))
    products = [
        plot_convergence(out / "convergence.png", it, f"{name}: K_sym and volume fraction"),
        plot_design(out / "design.png", problem.structure, occ, final["positions_a"], name),
        *write_structure_files(out, "final", problem.structure, occ, final["positions_a"], final["alpha"]),
    ]
    summary = {
        "name": name, "config_sha256": config_hash(problem.config),
        "k_sym_ev_per_a2": float(it["k_sym_ev_per_a2"][-1]),
        "k_sym_initial_ev_per_a2": float(it["k_sym_ev_per_a2"][0]),
        "volume_fraction": float(it["volume_fraction"][-1]),
        "n_design_atoms": int(it["n_design_atoms"][-1]), "n_atoms": int(occ.sum()),
        "iterations": int(it["k"].size), "shared_iterations": seeded_iterations(run_path),
        "converged": status == "converged", "status": status,
        "wall_s": wall, "session_wall_s": wall_s,
        "lammps_s": engine_s, "update_s": update_s, "write_s": write_s,  # lammps_s: the engine, by its old name
        "outside_lammps_fraction": (wall - inside) / max(wall, 1e-12),
        # the phases measured one by one (s; NaN sums for iterations older than the column)
        **{name: float(np.sum(it[name])) for name in PHASES if name in it},
        "peak_rss_mb_per_rank": [round(x, 1) for x in rss_mb], "peak_rss_mb_total": round(sum(rss_mb), 1),
        "force_evaluations": int(np.sum(it["force_evaluations"])),
        "final_occupancy_sha256": occupancy_sha256(occ),
        "products": [p.name for p in products] + ["run.h5", "run.log"],
    }
    write_summary(out / "summary.json", summary)
    return summary


def _log_to(path: Path) -> logging.Handler:
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    handler.setLevel(logging.INFO)
    logger = logging.getLogger("nanoto")
    logger.addHandler(handler)
    if logger.level == logging.NOTSET or logger.level > logging.INFO:
        logger.setLevel(logging.INFO)  # the run log always gets the iteration lines
    return handler


def _quiet_stderr() -> None:
    for handler in logging.getLogger("nanoto").handlers:
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
            handler.setLevel(logging.WARNING)
