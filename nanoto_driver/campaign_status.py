"""Where every design of a campaign stands: done, pending, running, failed or missing.

    done      summary.json exists (the run finished)
    running   its task is alive: a local pid on this host, or a Slurm element in the queue
              that has started
    pending   not started yet: never launched, or waiting in the Slurm queue (including
              an element Slurm requeued near its time limit)
    failed    its task stopped on an error (task.json holds the error and the log tail)
    missing   launched but nothing is working on it and it did not finish: killed, timed out,
              interrupted, cancelled, or lost with its node. ``resubmit`` and ``run`` pick it up
              and it resumes from its last complete iteration.
"""

from __future__ import annotations

import os
import socket
import subprocess
from dataclasses import asdict, dataclass
from typing import Any

from .campaign import Campaign, CampaignDesign
from .task import read_task

STATES = ("done", "running", "pending", "failed", "missing")


@dataclass(frozen=True)
class DesignStatus:
    index: int
    id: str
    state: str
    detail: str = ""
    error: str = ""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def slurm_queue() -> dict[str, str]:
    """``{"<job>_<task>": STATE}`` for every array element in the Slurm queue ({} without Slurm)."""
    try:
        out = subprocess.run(["squeue", "-h", "-r", "-o", "%i %T"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    queue = {}
    for line in out.stdout.splitlines():
        job, _, state = line.strip().partition(" ")
        queue[job] = state
    return queue


def submitted_elements(campaign: Campaign) -> dict[int, str]:
    """Design index -> the Slurm element (``<job>_<task>``) that last took it."""
    from .executor_slurm import read_submissions

    elements: dict[int, str] = {}
    for sub in read_submissions(campaign):
        for index in sub["indices"]:
            elements[index] = f"{sub['job_id']}_{index - sub['offset']}"
    return elements


def design_status(design: CampaignDesign, queue: dict[str, str], element: str | None) -> DesignStatus:
    """Classify one design from its products, its task record and the Slurm queue."""
    if design.done:
        return DesignStatus(design.index, design.id, "done")
    task = read_task(design)
    queued = queue.get(element or "", "")
    if queued and queued != "RUNNING":
        return DesignStatus(design.index, design.id, "pending", f"Slurm {element} {queued.lower()}")
    if queued and (task is None or task.get("slurm_job") != element):  # started, task.json not yet written
        return DesignStatus(design.index, design.id, "running", f"Slurm {element} starting")
    if task is None:
        if element is not None:
            return DesignStatus(design.index, design.id, "missing", f"Slurm {element} left the queue unstarted")
        seeded = " (seeded: resumes where a run of lower target left its path)" if design.run_path.exists() else ""
        return DesignStatus(design.index, design.id, "pending", "not started" + seeded)
    where = task.get("slurm_job") or f"{task.get('host')} pid {task.get('pid')}"
    if task["state"] == "failed":
        return DesignStatus(design.index, design.id, "failed", f"exit {task.get('exit_code')} on {where}",
                            str(task.get("error", "")))
    if task["state"] == "running" and _alive(task, queue):
        return DesignStatus(design.index, design.id, "running", str(where))
    reason = task.get("error") or f"its task ({where}) is gone"
    return DesignStatus(design.index, design.id, "missing", str(reason))


def _alive(task: dict[str, Any], queue: dict[str, str]) -> bool:
    if task.get("slurm_job"):
        return queue.get(task["slurm_job"]) == "RUNNING"
    return task.get("host") == socket.gethostname() and _pid_alive(int(task.get("pid", -1)))


def campaign_status(campaign: Campaign) -> list[DesignStatus]:
    """Status of every design in index order (one ``squeue`` call when Slurm jobs were submitted)."""
    elements = submitted_elements(campaign)
    queue = slurm_queue() if elements else {}
    return [design_status(d, queue, elements.get(d.index)) for d in campaign.designs]


def counts(statuses: list[DesignStatus]) -> dict[str, int]:
    return {state: sum(s.state == state for s in statuses) for state in STATES}


def status_json(campaign: Campaign, statuses: list[DesignStatus]) -> dict[str, Any]:
    return {"campaign": campaign.name, "root": str(campaign.root), "designs": len(statuses),
            "counts": counts(statuses), "status": [asdict(s) for s in statuses]}


def format_status(campaign: Campaign, statuses: list[DesignStatus], errors: int = 5) -> str:
    """A table a person reads: counts, then failed/missing/running designs with their errors."""
    c = counts(statuses)
    lines = [f"campaign {campaign.name} ({campaign.root}): {len(statuses)} designs",
             "  " + "  ".join(f"{state} {c[state]}" for state in STATES)]
    for s in statuses:
        if s.state in ("failed", "missing", "running"):
            lines.append(f"  [{s.index:>5}] {s.state:<8} {campaign.design(s.index).label}  ({s.detail})")
            if s.error and errors > 0:
                errors -= 1
                lines.extend("           | " + line for line in s.error.splitlines()[-8:])
    return "\n".join(lines)
