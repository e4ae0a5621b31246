"""The relaxed states of the iteration in flight, kept so that a killed run resumes inside it.

A design of 10^6 sites spends tens of minutes in each of its three relaxations (0, +δ,
-δ). The run file stores whole iterations; ``states.partial.npz`` next to it holds the
states of the current iteration that are already relaxed, keyed by the iteration and
the sha256 of its occupancy. On resume the engine starts after them, with the same
result as a run in one go (every state starts from atoms created afresh either way).
Rank 0 reads and writes the file; the other ranks get the states by broadcast.
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

from .engine import RelaxResult

log = logging.getLogger("nanoto")

PARTIAL = "states.partial.npz"
_ARRAYS = ("site_energies_ev", "positions_a")


def occupancy_key(k: int, occupancy: np.ndarray) -> str:
    """Iteration and sha256 of the (n_sites,) bool occupancy: which evaluation the states belong to."""
    return f"{k}:{hashlib.sha256(np.packbits(occupancy.astype(bool)).tobytes()).hexdigest()}"


class StateCheckpoint:
    """``resume(k, occupancy)`` before an evaluation, ``save`` after each state, ``clear`` at the end."""

    def __init__(self, path: Path, share: Callable[[Any], Any] = lambda value: value, rank: int = 0) -> None:
        self.path = Path(path)
        self.share = share
        self.rank = rank
        self._key = ""
        self._k = 0
        self._done: list[RelaxResult] = []

    def resume(self, k: int, occupancy: np.ndarray) -> list[RelaxResult]:
        """States of iteration ``k`` relaxed before a stop (usually none); a file left by
        another iteration, or unreadable, is removed: it only ever costs time, never results."""
        self._key, self._k = occupancy_key(k, occupancy), k
        found = self._read() if self.rank == 0 else None
        self._done = list(self.share(found) or [])
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
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, self.path)

    def clear(self) -> None:
        if self.rank == 0:
            self.path.unlink(missing_ok=True)

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
