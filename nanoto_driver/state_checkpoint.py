"""The relaxed states of the iteration in flight, kept so that a killed run resumes inside it.

A design of 10^6 sites spends tens of minutes in each of its three relaxations (0, +δ,
-δ), and a reconstructing one at 6.5 x 10^5 sites more than an hour in one. The run
file stores whole iterations; next to it

- ``states.partial.npz`` holds the states of the current iteration that are already
  relaxed, keyed by the iteration and the sha256 of its occupancy. On resume the engine
  starts after them, with the same result as a run in one go (every state starts from
  atoms created afresh either way);
- ``state.inflight.npz`` holds the progress of the state being relaxed (a two-level
  relaxation keeps it every engine_lammps.IN_FLIGHT_EVERY_S seconds, between two CG cycles; engine.py
  InFlightState), keyed as above plus the state's place in the iteration and its u. On
  resume the state goes on from there: the same relaxation up to round-off (LAMMPS'
  order of the atoms in memory differs, which can reorder sums), so a killed run loses
  minutes, not the state.

Rank 0 reads and writes the files; the other ranks get their contents by broadcast.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .engine import InFlightState, RelaxResult, no_secant_history

log = logging.getLogger("nanoto")

PARTIAL = "states.partial.npz"
IN_FLIGHT = "state.inflight.npz"
_ARRAYS = ("site_energies_ev", "positions_a")


def occupancy_key(k: int, occupancy: np.ndarray) -> str:
    """Iteration and sha256 of the (n_sites,) bool occupancy: which evaluation the states belong to."""
    return f"{k}:{hashlib.sha256(np.packbits(occupancy.astype(bool)).tobytes()).hexdigest()}"


class StateCheckpoint:
    """``resume(k, occupancy)`` before an evaluation, ``save`` after each state, ``clear`` at the end;
    ``in_flight`` and ``keep_in_flight`` for the progress inside a state (engine.InFlightStore);
    ``before_stop_s``, the seconds of the states and of the part of a state that resume and
    in_flight found done before a stop (the iteration's time includes them)."""

    def __init__(self, path: Path, share: Callable[[Any], Any] = lambda value: value, rank: int = 0) -> None:
        self.path = Path(path)
        self.share = share
        self.rank = rank
        self._key = ""
        self._k = 0
        self._done: list[RelaxResult] = []
        self.before_stop_s = 0.0  # seconds the iteration spent before the stop (its time includes them)

    def resume(self, k: int, occupancy: np.ndarray) -> list[RelaxResult]:
        """States of iteration ``k`` relaxed before a stop (usually none); a file left by
        another iteration, or unreadable, is removed: it only ever costs time, never results."""
        self._key, self._k = occupancy_key(k, occupancy), k
        found = self._read() if self.rank == 0 else None
        self._done = list(self.share(found) or [])
        self.before_stop_s = sum(r.wall_s for r in self._done)
        if self._done and self.rank == 0:
            log.info("iteration %d: %d state(s) relaxed before the stop are reused (%s)", k, len(self._done),
                     self.path.name)
        return list(self._done)

    def save(self, result: RelaxResult) -> None:
        """Add a relaxed state of the current iteration; rank 0 rewrites the file atomically."""
        self._done.append(result)
        if self.rank != 0:
            return
        # a state of a 10^6-site design can take an hour: run.log shows each one as it ends
        log.info("iteration %d, state %d (u = %+.4g Å): %d force evaluations, %d CG iterations, largest force "
                 "%.2g eV/Å, %.1f s%s", self._k, len(self._done) - 1, result.u_a, result.force_evaluations,
                 result.iterations, result.fmax_ev_per_a, result.wall_s, "" if result.converged else " (NOT converged)")
        arrays: dict[str, Any] = {"key": np.array(self._key)}
        scalars = []
        for n, r in enumerate(self._done):
            fields = dataclasses.asdict(r)
            for name in _ARRAYS:
                arrays[f"{name}_{n}"] = fields.pop(name)
            scalars.append(fields)
        arrays["scalars"] = np.array(json.dumps(scalars))
        _write_atomically(self.path, **arrays)
        # after the write: a kill in between leaves the progress of this state behind, keyed to its place,
        # which no longer matches and is removed on the next read
        self.in_flight_path.unlink(missing_ok=True)

    def clear(self) -> None:
        if self.rank == 0:
            self.path.unlink(missing_ok=True)
            self.in_flight_path.unlink(missing_ok=True)

    @property
    def in_flight_path(self) -> Path:
        return self.path.with_name(IN_FLIGHT)

    def _in_flight_key(self, u_a: float) -> str:
        """The evaluation, the state's place in it (earlier basin attempts included) and its u."""
        return f"{self._key}:{len(self._done)}:{u_a!r}"

    def in_flight(self, u_a: float) -> InFlightState | None:
        """The progress kept for the next state (prescribed displacement ``u_a`` Å), if a stop
        left one for it; one kept for another state is removed (it only ever costs time)."""
        found = self._read_in_flight(u_a) if self.rank == 0 else None
        found = self.share(found)
        if found is not None:
            self.before_stop_s += found.wall_s
        if found is not None and self.rank == 0:
            log.info("iteration %d, state %d (u = %+.4g Å): going on after %d CG iterations (%.1f s) relaxed "
                     "before the stop (%s)", self._k, len(self._done), u_a, found.iterations, found.wall_s,
                     self.in_flight_path.name)
        return found

    def keep_in_flight(self, u_a: float, state: InFlightState) -> None:
        """Keep the progress of the state being relaxed; rank 0 rewrites the file atomically."""
        if self.rank != 0:
            return
        log.info("iteration %d, state %d (u = %+.4g Å): %d CG iterations, %d s so far; energy %.10g eV, largest "
                 "force %.2g eV/Å; kept in %s", self._k, len(self._done), u_a, state.iterations, state.wall_s,
                 state.energy_ev, state.fmax_ev_per_a, self.in_flight_path.name)
        fields = dataclasses.asdict(state)
        positions, text, history = fields.pop("positions_a"), fields.pop("log_text"), fields.pop("secant_history")
        try:
            _write_atomically(self.in_flight_path, key=np.array(self._in_flight_key(u_a)), positions_a=positions,
                              log_text=np.array(text), secant_history=history, scalars=np.array(json.dumps(fields)))
        except OSError as err:  # costs only what a stop would redo: the relaxation goes on
            log.warning("could not keep the progress of the state in %s (%s); a stop now would relax it again "
                        "from its start", self.in_flight_path, err)

    def _read_in_flight(self, u_a: float) -> InFlightState | None:
        path = self.in_flight_path
        if not path.is_file():
            return None
        try:
            with np.load(path) as f:
                if str(f["key"]) == self._in_flight_key(u_a):
                    return InFlightState(positions_a=f["positions_a"], log_text=str(f["log_text"]),
                                         secant_history=_history(f), **json.loads(str(f["scalars"])))
        except (OSError, ValueError, KeyError, TypeError) as err:
            log.warning("%s is unreadable (%s); relaxing that state from its start", path, err)
        path.unlink(missing_ok=True)
        return None

    def _read(self) -> list[RelaxResult]:
        if not self.path.is_file():
            return []
        try:
            with np.load(self.path) as f:
                if str(f["key"]) != self._key:
                    self.path.unlink()
                    return []
                return [RelaxResult(**scalars, **{name: f[f"{name}_{n}"] for name in _ARRAYS})
                        for n, scalars in enumerate(json.loads(str(f["scalars"])))]
        except (OSError, ValueError, KeyError, TypeError) as err:
            log.warning("%s is unreadable (%s); relaxing its states again", self.path, err)
            self.path.unlink(missing_ok=True)
            return []


def _history(kept: Any) -> np.ndarray:
    """The secant history (r, 2, n_atoms, 3) of a kept progress; empty in files kept before
    minimizer.secant_pairs existed, which were relaxed without one."""
    return kept["secant_history"] if "secant_history" in kept.files else no_secant_history()


def _write_atomically(path: Path, **arrays: Any) -> None:
    """``np.savez`` to a temporary file renamed over ``path``: a kill leaves the old file or the new one."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
    os.replace(tmp, path)
