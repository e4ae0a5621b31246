"""Engine ``lammps-exe``: plain text files and the ``lmp`` executable.

For each batch it writes ``design.data`` (every site, empty ones as type 4)
and ``run.lmp`` rendered from ``lammps_inputs/``, runs
``mpiexec -n R lmp -in run.lmp`` and reads the per-state dumps and the log.
This is how a site's own LAMMPS build (KOKKOS, GPU, ...) is used, and the
files run by hand without Python (see lammps_inputs/README.md).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from .config import RunConfig
from .engine import InFlightStore, RelaxResult, WarmStart, empty_to_lattice, extrapolation, prescribed_response
from .engine_lammps import is_converged, settings_from, tolerance
from .errors import ConfigError, DisplacementError, EngineError
from .lammps_runtime import lmp_executable, mpiexec_executable
from .lammps_text import StateReport, parse_log, render, setup_script, state_script, write_data_file
from .lammps_unwrap import unwrap_near
from .potential import Potential
from .structure import Structure

_ERROR = re.compile(r"^ERROR.*$", re.M)


class LammpsExeEngine:
    """Runs LAMMPS as a separate program on R MPI ranks."""

    name = "lammps-exe"

    def __init__(self, config: RunConfig, potential: Potential | None) -> None:
        if potential is None:
            raise EngineError("the lammps-exe engine needs a potential")
        if config.minimizer.coarse_every:
            raise ConfigError("minimizer.coarse_every needs the in-process engine (engine.name: lammps): "
                              "the coarse correction moves atoms between CG cycles from Python")
        if config.minimizer.energy_gauge:
            raise ConfigError("minimizer.energy_gauge needs the in-process engine (engine.name: lammps)")
        self.config = config
        self.potential = potential
        self.settings = settings_from(config)
        self.ranks = config.engine.ranks
        self.lmp = lmp_executable(config.engine.lmp_command)
        self.mpiexec = mpiexec_executable(config.engine.mpiexec) if self.ranks > 1 else None
        self.keep_dir = Path(config.engine.work_dir).resolve() if config.engine.work_dir else None

    # -- contract ------------------------------------------------------------
    def lattice_constant_a(self) -> float:
        p = self.potential
        script = render("lattice_constant.lmp.j2", element=p.element, potential_file=p.path,
                        a_start=4.05, pair_style=p.pair_style, pair_coeff=p.pair_coeff(1))
        with self._work_dir() as folder:
            log = self._run(folder, "lattice_constant.lmp", script, u_a=0.0)
        match = re.search(r"^NANOTO_A0 a0=(\S+)", log, re.M)
        if match is None:
            raise EngineError(f"LAMMPS did not report a0 for {p.path.name}")
        return float(match.group(1))

    def relax(self, structure: Structure, occupancy: np.ndarray, states_a: Sequence[float],
              warm: WarmStart | None = None, done: Sequence[RelaxResult] = (),
              on_state: Callable[[RelaxResult], None] | None = None,
              in_flight: InFlightStore | None = None, plain: bool = False,
              ftol_ev_per_a: float | None = None) -> list[RelaxResult]:
        """One LAMMPS run relaxes the whole batch (plain CG: the exe engine has no corrections); ``done``,
        ``on_state`` and ``in_flight`` are not used."""
        with tolerance(self, ftol_ev_per_a):
            return self._relax_batch(structure, occupancy, states_a, warm)

    def _relax_batch(self, structure: Structure, occupancy: np.ndarray, states_a: Sequence[float],
                     warm: WarmStart | None) -> list[RelaxResult]:
        """``relax`` with the settings as they are."""
        start = structure.positions_a if warm is None else warm.positions_a
        response = None
        if warm is not None and warm.response_a is not None and structure.load_mode == "group":
            response = prescribed_response(structure, warm.response_a)
        t0 = time.perf_counter()
        with self._work_dir() as folder:
            write_data_file(folder / "design.data", structure, occupancy,
                            empty_to_lattice(structure, occupancy, start), velocities=response)
            script = self.input_script(structure, states_a, response is not None)
            log = self._run(folder, "run.lmp", script, u_a=float(states_a[-1]))
            reports = parse_log(log)
            if len(reports) != len(states_a):
                raise EngineError(f"LAMMPS reported {len(reports)} of {len(states_a)} states; see {folder}")
            wall = (time.perf_counter() - t0) / len(states_a)
            return [self._result(structure, occupancy, folder / f"state_s{n}.dump", rep, wall)
                    for n, rep in enumerate(reports)]

    def close(self) -> None:
        pass

    # -- text ----------------------------------------------------------------
    def input_script(self, structure: Structure, states_a: Sequence[float], response: bool = False) -> str:
        """The complete ``run.lmp``: set-up from ``design.data``, then one block per state.

        ``response``: the data file's Velocities section holds the previous design's
        response per unit u, and the first displaced state starts on it.
        """
        head = (f"# nanoto {self.name}: {len(states_a)} prescribed states, run with\n"
                "#   lmp -in run.lmp        (or: mpiexec -n R lmp -in run.lmp)\n"
                "# in the folder that holds design.data.\n")
        blocks = [setup_script(structure, self.potential, self.settings, data_file="design.data")]
        for n, u in enumerate(states_a):
            guess = extrapolation(structure, states_a, n)
            blocks.append(state_script(structure, self.settings, f"s{n}", float(u),
                                       dump_file=f"state_s{n}.dump",
                                       restore_label="s0" if n > 0 else None,
                                       extrapolate=(f"s{guess[0]}", guess[1]) if guess else None,
                                       from_response=response and n == 1 and guess is None))
        return head + "".join(blocks)

    # -- internals -----------------------------------------------------------
    def _work_dir(self) -> _Folder:
        return _Folder(self.keep_dir)

    def _command(self, script_name: str) -> list[str]:
        cmd = [self.lmp, "-in", script_name, "-log", "log.lammps", "-screen", "none", "-nocite"]
        if self.mpiexec:
            cmd = [self.mpiexec, "-n", str(self.ranks), *cmd]
        return cmd

    def _run(self, folder: Path, script_name: str, script: str, u_a: float) -> str:
        (folder / script_name).write_text(script)
        try:
            proc = subprocess.run(self._command(script_name), cwd=folder, capture_output=True,
                                  text=True, env=os.environ.copy())
        except OSError as err:
            raise EngineError(f"cannot run {self.lmp}: {err}") from None
        log_path = folder / "log.lammps"
        log = log_path.read_text(errors="replace") if log_path.exists() else ""
        if proc.returncode != 0:
            found = _ERROR.search(log + "\n" + proc.stdout + "\n" + proc.stderr)
            text = found.group(0) if found else (proc.stderr.strip().splitlines() or ["no message"])[-1]
            if "Lost atoms" in text:
                raise DisplacementError(f"the displacement lost atoms in LAMMPS ({text}); reduce load.strain")
            raise EngineError(f"{Path(self.lmp).name} failed (exit {proc.returncode}): {text}")
        return log

    def _result(self, structure: Structure, occupancy: np.ndarray, dump: Path, rep: StateReport,
                wall_s: float) -> RelaxResult:
        ids, energies, positions, lengths = read_dump(dump)
        atoms = occupancy[ids - 1].astype(bool)  # empty_sites: type dumps the empty sites too
        ids, energies, positions = ids[atoms], energies[atoms], positions[atoms]
        site_e = np.zeros(structure.n_sites)
        site_e[ids - 1] = energies
        full = empty_to_lattice(structure, occupancy, structure.positions_a)
        full[ids - 1] = positions
        full = unwrap_near(full, structure.positions_a + structure.affine_displacement_a(rep.u_a),
                           structure.periodic, lengths)
        st = rep.stats
        return RelaxResult(
            u_a=rep.u_a, site_energies_ev=site_e, positions_a=full, engine_energy_ev=rep.pe_ev,
            reaction_ev_per_a=rep.reaction_ev_per_a,
            converged=is_converged(st.stop_reason, rep.fmax_ev_per_a, self.settings),
            stop_reason=st.stop_reason, iterations=st.iterations, force_evaluations=st.force_evaluations,
            fnorm_ev_per_a=rep.fnorm_ev_per_a, fmax_ev_per_a=rep.fmax_ev_per_a, n_atoms=rep.natoms,
            wall_s=wall_s, loop_s=st.loop_s,
        )


def read_dump(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Read a ``write_dump ... id c_pe x y z`` file.

    Returns ids (n,), per-atom energies (n,) eV, positions (n, 3) Å, box lengths (3,) Å.
    """
    with open(path) as f:
        head = [next(f) for _ in range(9)]
        table = np.loadtxt(f, ndmin=2)
    bounds = np.array([[float(v) for v in line.split()[:2]] for line in head[5:8]])
    ids = table[:, 0].astype(np.int64)
    return ids, table[:, 1], table[:, 2:5], bounds[:, 1] - bounds[:, 0]


class _Folder:
    """A temporary folder removed on exit, or the user's ``work_dir`` kept as is."""

    def __init__(self, keep: Path | None) -> None:
        self.keep = keep
        self.path: Path | None = None

    def __enter__(self) -> Path:
        if self.keep is not None:
            self.keep.mkdir(parents=True, exist_ok=True)
            self.path = self.keep
        else:
            self.path = Path(tempfile.mkdtemp(prefix="nanoto-lmp-"))
        return self.path

    def __exit__(self, *exc: object) -> None:
        if self.keep is None and self.path is not None:
            shutil.rmtree(self.path, ignore_errors=True)
