"""The HDF5 run file: one per run, updated by atomic replacement after every iteration.

Layout (format "nanoto-run", version 1; docs/formats.md has the full table)::

    /                  attrs: format, format_version, status, error, config_json, config_sha256
    /provenance        attrs: versions, potential sha256, MPI ranks, host, command line, times
    /lattice           attrs cells, a0_a; datasets kind (n,), design (n,)
    /iterations/<col>  one row per iteration (k, k_sym_ev_per_a2, ..., occupancy (n_iter, n))
    /state             what the next iteration needs: k, occupancy, alpha_hat, positions_a, response_a
    /final             the last evaluated design: occupancy, positions_a, alpha, alpha_hat

Every update copies the file to ``run.h5.partial``, writes there and renames it
over ``run.h5``: a kill at any moment leaves the last complete iteration readable.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .config import RunConfig, build_config, canonical_json, config_hash
from .errors import InputError
from .optimizer import IterationRecord, OptimizerState
from .structure import Structure

FORMAT, VERSION = "nanoto-run", 1
SCALARS = {  # column -> (dtype, value from a record)
    "k": ("i8", lambda r: r.k),
    "k_sym_ev_per_a2": ("f8", lambda r: r.result.k_sym_ev_per_a2),
    "k_fwd_ev_per_a2": ("f8", lambda r: r.result.k_fwd_ev_per_a2),
    "k_force_ev_per_a2": ("f8", lambda r: r.result.k_force_ev_per_a2),
    "volume_fraction": ("f8", lambda r: r.volume_fraction),
    "n_design_atoms": ("i8", lambda r: r.n_design_atoms),
    "n_added": ("i8", lambda r: r.n_added),
    "n_removed": ("i8", lambda r: r.n_removed),
    "force_evaluations": ("i8", lambda r: r.result.force_evaluations),
    "basin_restarts": ("i8", lambda r: r.result.basin_restarts),
    # the local relaxation before u = 0 (minimizer.local_hops; 0 when off): its own force
    # evaluations and atoms; force_evaluations counts it by its share of the atoms
    "local_force_evaluations": ("i8", lambda r: 0 if r.result.local is None else r.result.local.force_evaluations),
    "local_atoms": ("i8", lambda r: 0 if r.result.local is None else r.result.local.n_atoms),
    # the tail polish before u = 0 (minimizer.polish_ftol_ev_per_a; 0 when off): the whole design's
    # force evaluations to the loose tolerance, the part's own, and the part's atoms
    "polish_loose_force_evaluations": ("i8", lambda r: r.result.polish[0].force_evaluations if r.result.polish else 0),
    "polish_force_evaluations": ("i8", lambda r: _polish_part(r, "force_evaluations")),
    "polish_atoms": ("i8", lambda r: _polish_part(r, "n_atoms")),
    "evaluate_s": ("f8", lambda r: r.evaluate_s),
    "update_s": ("f8", lambda r: r.update_s),
    "lammps_loop_s": ("f8", lambda r: r.result.loop_s),
    "coarse_s": ("f8", lambda r: r.result.coarse_s),
    "solve_s": ("f8", lambda r: r.result.solve_s),
    "lammps_calls_s": ("f8", lambda r: r.result.lammps_calls_s),
    "filter_s": ("f8", lambda r: r.filter_s),
    "step_s": ("f8", lambda r: r.step_s),
    "cleanup_s": ("f8", lambda r: r.cleanup_s),
}


def _polish_part(record: IterationRecord, field: str) -> int:
    """A count of the tail polish's part (0 when it had none)."""
    return getattr(record.result.polish[1], field) if len(record.result.polish) > 1 else 0


class RunFileError(InputError):
    """A run file that cannot be resumed (corrupt, other config, other format)."""


@contextmanager
def replacing(path: Path, new: bool = False) -> Iterator[h5py.File]:
    """Open a copy of ``path`` for writing and atomically move it over ``path`` on success."""
    partial = path.with_name(path.name + ".partial")
    if not new:
        shutil.copyfile(path, partial)
    try:
        with h5py.File(partial, "w" if new else "r+") as f:
            yield f
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def create(path: Path, config: RunConfig, structure: Structure, provenance: dict[str, Any]) -> None:
    """Write a new run file with the config, the lattice and empty iteration columns."""
    n = structure.n_sites
    with replacing(path, new=True) as f:
        f.attrs.update(format=FORMAT, format_version=VERSION, status="running", error="",
                       config_json=canonical_json(config), config_full_json=config.model_dump_json(),
                       config_sha256=config_hash(config))
        f.create_group("provenance").attrs.update({k: json.dumps(v) if isinstance(v, (dict, list)) else v
                                                   for k, v in provenance.items()})
        lat = f.create_group("lattice")
        lat.attrs.update(cells=structure.lattice.cells, a0_a=structure.lattice.a0_a,
                         grid_shape=structure.lattice.grid_shape, periodic=structure.periodic)
        lat["kind"] = structure.kind
        lat["design"] = structure.kind == 0
        it = f.create_group("iterations")
        for name, (dtype, _) in SCALARS.items():
            it.create_dataset(name, shape=(0,), maxshape=(None,), dtype=dtype)
        it.create_dataset("occupancy", shape=(0, n), maxshape=(None, n), dtype=bool,
                          chunks=(1, n), compression="gzip", compression_opts=4)


def _append(group: h5py.Group, name: str, value: Any) -> None:
    ds = group[name]
    ds.resize(ds.shape[0] + 1, axis=0)
    ds[-1] = value


def _write_arrays(group: h5py.Group, **arrays: np.ndarray | None) -> None:
    for name, value in arrays.items():
        if name in group:
            del group[name]
        if value is not None:
            group.create_dataset(name, data=value, compression="gzip", compression_opts=4)


def append(path: Path, record: IterationRecord, previous_write_s: float = 0.0) -> None:
    """Add one iteration, the state to resume from, and the final design so far.

    ``previous_write_s`` (s) is added to the attribute ``write_s``: the time spent
    writing this file so far.
    """
    with replacing(path) as f:
        f.attrs["write_s"] = float(f.attrs.get("write_s", 0.0)) + previous_write_s
        it = f["iterations"]
        for name in SCALARS:
            if name not in it:  # a column newer than the file (a run resumed across versions): NaN before
                it.create_dataset(name, data=np.full(it["k"].shape[0], np.nan), maxshape=(None,))
        for name, (_, value) in SCALARS.items():
            _append(it, name, value(record))
        _append(it, "occupancy", record.occupancy)
        f.attrs["status"] = record.status
        relaxed = record.result.relaxed[0]
        final = f.require_group("final")
        _write_arrays(final, occupancy=record.occupancy, positions_a=relaxed.positions_a,
                      alpha=record.result.alpha, alpha_hat=record.alpha_hat)
        final.attrs.update(k=record.k, k_sym_ev_per_a2=record.k_sym_ev_per_a2,
                           volume_fraction=record.volume_fraction)
        state = f.require_group("state")
        nxt = record.next_state
        if nxt is not None:
            _write_arrays(state, occupancy=nxt.occupancy, alpha_hat=nxt.alpha_hat, positions_a=nxt.positions_a,
                          response_a=nxt.response_a)
            state.attrs["k"] = nxt.k


def mark_failed(path: Path, message: str) -> None:
    """Record why the run stopped; the last complete iteration stays as it was."""
    with replacing(path) as f:
        f.attrs.update(status="failed", error=message)


def _open(path: Path) -> h5py.File:
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise RunFileError(f"{path} is not a readable HDF5 run file ({err}); start a new run in "
                           "another folder") from None
    if f.attrs.get("format") != FORMAT:
        f.close()
        raise RunFileError(f"{path} is not a nanoto run file (format attribute missing)")
    return f


def read_config(path: Path) -> RunConfig:
    with _open(path) as f:
        return build_config(json.loads(f.attrs["config_full_json"]), str(path))


def status(path: Path) -> str:
    with _open(path) as f:
        return str(f.attrs["status"])


def load_state(path: Path, config: RunConfig) -> OptimizerState | None:
    """The state after the last complete iteration (None if none completed).

    Refuses a file written for another config.
    """
    with _open(path) as f:
        if f.attrs["config_sha256"] != config_hash(config):
            raise RunFileError(
                f"{path} holds a run of another config; resume with the same config, or give -o "
                "a new folder"
            )
        it = f["iterations"]
        history = tuple(float(v) for v in it["k_sym_ev_per_a2"][:])
        if not history:
            return None
        st = f["state"]
        return OptimizerState(
            k=int(st.attrs["k"]), occupancy=st["occupancy"][:], alpha_hat=st["alpha_hat"][:],
            positions_a=st["positions_a"][:], response_a=st["response_a"][:] if "response_a" in st else None,
            k_history=history, previous_occupancy=it["occupancy"][-1],
        )


def read_iterations(path: Path) -> dict[str, np.ndarray]:
    """Every per-iteration column, occupancy included."""
    with _open(path) as f:
        return {name: ds[:] for name, ds in f["iterations"].items()}
