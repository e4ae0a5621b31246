"""Observers of the optimization loop: run file, log, progress bar.

Each gets every IterationRecord; none of them changes the optimization.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm import tqdm

from . import runfile
from .errors import RunStopped
from .optimizer import IterationRecord

log = logging.getLogger("nanoto")


class RunFileObserver:
    """Appends each iteration to the run file; measures its own write time (s).

    Each append also books the time of the previous one in the file, so the run
    file carries its own write cost (all but the last write).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.write_s = 0.0
        self._last_s = 0.0

    def iteration(self, record: IterationRecord) -> None:
        t0 = time.perf_counter()
        runfile.append(self.path, record, self._last_s)
        self._last_s = time.perf_counter() - t0
        self.write_s += self._last_s


class LogObserver:
    """One log line per iteration (stderr on rank 0, and the run's log file)."""

    def iteration(self, record: IterationRecord) -> None:
        log.info("iteration %3d  K_sym %.6g eV/Å²  V %.4f  +%d -%d atoms  %.2f s (LAMMPS %.2f s, %d force "
                 "evaluations)  %s", record.k, record.k_sym_ev_per_a2, record.volume_fraction, record.n_added,
                 record.n_removed, record.evaluate_s + record.update_s, record.evaluate_s,
                 record.result.force_evaluations, record.status)


class ProgressObserver:
    """A tqdm bar on stderr: iteration, K_sym, volume fraction, seconds per iteration.

    Silent when stderr is not a terminal (batch jobs, pipes, CI).
    """

    def __init__(self, total: int, start: int = 0, enabled: bool | None = None) -> None:
        on = sys.stderr.isatty() if enabled is None else enabled
        self.bar = tqdm(total=total, initial=start, unit="it", desc="nanoto run", disable=not on,
                        file=sys.stderr, dynamic_ncols=True)

    def iteration(self, record: IterationRecord) -> None:
        self.bar.update(1)
        self.bar.set_postfix(K_sym=f"{record.k_sym_ev_per_a2:.5g}", V=f"{record.volume_fraction:.3f}",
                             s_per_it=f"{record.evaluate_s + record.update_s:.1f}")

    def close(self) -> None:
        self.bar.close()


class StopObserver:
    """Ends the run after a saved iteration when a checkpoint was asked for (SIGUSR1).

    Goes last, after the run-file write. Rank 0's answer is broadcast (``share``), so every MPI
    rank stops after the same iteration and the launch ends cleanly (no rank left in a collective).
    """

    def __init__(self, requested: Callable[[], int | None], share: Callable[[Any], Any]) -> None:
        self.requested = requested  # the signal number that asked for the stop, or None
        self.share = share

    def iteration(self, record: IterationRecord) -> None:
        signum = self.share(self.requested())
        if signum is not None:
            log.info("checkpoint after iteration %d: the run resumes from here", record.k)
            raise RunStopped(signum)
