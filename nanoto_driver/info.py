"""What ``nanoto info`` reports: versions, engines, MPI, potentials."""

from __future__ import annotations

import importlib.metadata as md
import platform
import shutil
import sys
from pathlib import Path
from typing import Any

from . import __version__
from .engine import engine_names
from .potential import lammps_potentials_dir, shipped_eam_aluminium


def _version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def collect_info() -> dict[str, Any]:
    """Plain data; importing LAMMPS here is deliberate (the user asked for its details)."""
    info: dict[str, Any] = {
        "nanoto": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": {d: _version(d) for d in ("lammps", "mpich", "mpi4py", "numpy", "scipy", "torch")},
        "engines": engine_names(),
        "lmp_executable": shutil.which(str(Path(sys.executable).parent / "lmp")) or shutil.which("lmp"),
        "mpiexec": shutil.which(str(Path(sys.executable).parent / "mpiexec")) or shutil.which("mpiexec"),
        "potentials_dir": str(lammps_potentials_dir() or ""),
        "aluminium_potentials": [p.name for p in shipped_eam_aluminium()],
    }
    try:
        from mpi4py import MPI

        info["mpi"] = {"library": MPI.Get_library_version().splitlines()[0].strip(),
                       "ranks": MPI.COMM_WORLD.Get_size()}
    except ImportError:
        info["mpi"] = None
    try:
        from .lammps_runtime import new_instance

        lmp = new_instance()
        info["lammps"] = {
            "version": lmp.version(),
            "mpi_support": bool(lmp.has_mpi_support),
            "eam_styles": [s for s in ("eam", "eam/alloy", "eam/fs", "eam/fs/opt")
                           if lmp.has_style("pair", s)],
        }
        lmp.close()
    except Exception as err:  # report, do not fail: info is a diagnostic
        info["lammps"] = {"error": str(err)}
    return info


def format_info(info: dict[str, Any]) -> str:
    lines = [f"nanoto {info['nanoto']} on Python {info['python']} ({info['platform']})"]
    lines.append("packages: " + ", ".join(f"{k} {v or '-'}" for k, v in info["packages"].items()))
    lam = info["lammps"]
    if "error" in lam:
        lines.append(f"LAMMPS: {lam['error']}")
    else:
        styles = ", ".join(lam["eam_styles"])
        lines.append(f"LAMMPS: {lam['version']}, MPI {lam['mpi_support']}, styles {styles}")
    mpi = info["mpi"]
    lines.append("MPI: " + (f"{mpi['library']} ({mpi['ranks']} rank(s) now)" if mpi else "not installed"))
    lines.append(f"engines: {', '.join(info['engines'])}")
    lines.append(f"lmp: {info['lmp_executable'] or 'not found'}; mpiexec: {info['mpiexec'] or 'not found'}")
    lines.append(f"potentials: {info['potentials_dir'] or 'not found'}")
    lines.append("  aluminium EAM: " + (", ".join(info["aluminium_potentials"]) or "none"))
    return "\n".join(lines)
