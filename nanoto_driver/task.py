"""One campaign task: optimize one design in its folder; what a Slurm array element runs.

Idempotent: a design with ``summary.json`` is done and the task returns at once;
otherwise the run resumes from its run file (``run.h5`` keeps every complete
iteration), so a task killed at any moment, or requeued by Slurm near its time
limit, loses at most the iteration in flight.

``task.json`` in the design folder says what the task is doing (written by rank 0,
atomically):

    state        running | done | failed | interrupted
    host, pid    where it runs (``status`` checks a local pid is alive)
    slurm_job    "<array job id>_<task id>" under Slurm, else null
    restarts     SLURM_RESTART_COUNT (how often Slurm requeued it)
    error        for failed: the error and the tail of run.log
    exit_code    2 input, 3 engine, 143 SIGTERM, 138 SIGUSR1 (checkpointed), 130 SIGINT
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import traceback
from pathlib import Path
from typing import Any

from .campaign import Campaign, CampaignDesign, _now, write_json
from .errors import NanotoError, RunStopped

log = logging.getLogger("nanoto")
ERROR_TAIL_LINES = 15


class _Signals:
    """SIGTERM stops the task at once; SIGUSR1 asks for a checkpoint after the running iteration.

    SIGTERM (scancel, Slurm's kill at the time limit, the local executor's Ctrl-C) raises
    RunStopped wherever Python is: the iteration in flight is lost. SIGUSR1 (the array script
    forwards it when the time limit is near) only sets a flag that the run reads after its next
    saved iteration, so every MPI rank stops after the same iteration and the launch ends cleanly.
    """

    def __init__(self) -> None:
        self.checkpoint: int | None = None

    def stop_now(self, signum: int, frame: Any) -> None:
        raise RunStopped(signum)

    def ask_checkpoint(self, signum: int, frame: Any) -> None:
        self.checkpoint = signum

    def requested(self) -> int | None:
        return self.checkpoint


def slurm_job() -> str | None:
    """``<array job>_<task>`` (or the plain job id) when running under Slurm."""
    if "SLURM_ARRAY_JOB_ID" in os.environ:
        return f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ.get('SLURM_ARRAY_TASK_ID', '')}"
    return os.environ.get("SLURM_JOB_ID")


def read_task(design: CampaignDesign) -> dict[str, Any] | None:
    """The task record, or None if the task never started (or the record is unreadable)."""
    import json

    try:
        return dict(json.loads(design.task_path.read_text()))
    except (OSError, ValueError):
        return None


def _record(design: CampaignDesign, state: str, **extra: Any) -> None:
    old = read_task(design) or {}
    record = {
        "index": design.index, "id": design.id, "state": state, "host": socket.gethostname(),
        "pid": os.getpid(), "slurm_job": slurm_job(), "restarts": int(os.environ.get("SLURM_RESTART_COUNT", 0)),
        "attempts": int(old.get("attempts", 0)) + (state == "running"),
        "started_utc": old.get("started_utc") if state != "running" else _now(), "updated_utc": _now(), **extra,
    }
    write_json(design.task_path, record)


def _error_tail(design: CampaignDesign, message: str) -> str:
    log_path = design.path / "run.log"
    lines = log_path.read_text(errors="replace").splitlines()[-ERROR_TAIL_LINES:] if log_path.is_file() else []
    return "\n".join([message, *lines]) if lines else message


def run_task(campaign: Campaign, index: int, share_descent: bool = True) -> int:
    """Run (or resume, or skip if done) design ``index``; return the exit code.

    Every MPI rank calls this; rank 0 alone writes ``task.json``. With ``share_descent`` the run
    seeds the not yet started designs that differ from it only by a higher target volume
    fraction (shared_descent.py): they resume where their path leaves this one's.
    """
    from .lammps_runtime import launcher_rank
    from .rundir import run_in_dir
    from .shared_descent import campaign_branches

    design = campaign.design(index)
    if design.done:
        log.info("design %d (%s) is done: nothing to do", index, design.id)
        return 0
    config = campaign.config(index)
    is_root = (launcher_rank() or 0) == 0
    signals = _Signals()
    previous = signal.signal(signal.SIGTERM, signals.stop_now)
    # SIGUSR1 keeps this handler after the run: a checkpoint asked for once the design is saved
    # must not kill the process (the default action) while it writes its last files.
    signal.signal(signal.SIGUSR1, signals.ask_checkpoint)
    try:
        if is_root:
            _record(design, "running")
        log.info("design %d (%s): %s", index, design.id, design.label)
        branches = campaign_branches(campaign, index) if share_descent and is_root else []
        summary = run_in_dir(config, design.path, resume=True, progress=False, stop_requested=signals.requested,
                             branches=branches)
    except NanotoError as err:
        if is_root:
            _record(design, "failed", exit_code=err.exit_code, error=_error_tail(design, str(err)))
        raise
    except RunStopped as stop:
        if is_root:
            _record(design, "interrupted", exit_code=128 + stop.signum, error=f"stopped by {stop}")
        log.warning("design %d stopped by %s: it resumes from its last complete iteration", index, stop)
        return 128 + stop.signum
    except KeyboardInterrupt:
        if is_root:
            _record(design, "interrupted", exit_code=130, error="interrupted (SIGINT)")
        raise
    except Exception:  # a bug, not an input problem: keep the traceback for the report
        if is_root:
            _record(design, "failed", exit_code=1, error=_error_tail(design, traceback.format_exc(limit=5)))
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
    if is_root:
        _record(design, "done", exit_code=0, k_sym_ev_per_a2=summary.get("k_sym_ev_per_a2"))
    return 0


def task_log(design: CampaignDesign) -> Path:
    """Where the local executor sends the task's stdout and stderr."""
    return design.path / "task.log"
