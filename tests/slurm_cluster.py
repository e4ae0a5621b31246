"""Helpers for tests that need a real Slurm cluster (``.ci/slurm/start.sh`` starts one, as root).

``require_slurm()`` skips a test when Slurm is not usable, except when the environment says a
cluster must be there (``NANOTO_SLURM=1``, set by ``.ci/run``, or ``CI=true``): then it fails.
``wait_for_jobs()`` polls ``squeue`` (there is no ``sacct`` on the test cluster: no slurmdbd).
The test cluster keeps finished jobs visible to ``squeue``/``scontrol`` for MinJobAge=600 s.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterable

import pytest

START_SCRIPT = ".ci/slurm/start.sh"
# squeue %T states of a job that has not finished yet (squeue man page, "JOB STATE CODES").
ACTIVE_STATES = frozenset({
    "PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "REQUEUE_FED",
    "REQUEUE_HOLD", "RESIZING", "RESV_DEL_HOLD", "SIGNALING", "STAGE_OUT", "STOPPED",
})
_NODE_UP = re.compile(r"(idle|mixed|allocated)\+?")  # "idle*" (not responding) does not count


def slurm_must_be_there() -> bool:
    """True when a missing Slurm is a failure: NANOTO_SLURM=1 (set by .ci/run) or CI=true."""
    return (os.environ.get("NANOTO_SLURM") == "1"
            or os.environ.get("CI", "").lower() in ("1", "true", "yes"))


@functools.lru_cache(maxsize=1)
def _slurm_problem(wait_s: float = 5.0) -> str | None:
    """None when sbatch/squeue/sinfo exist and a node is idle/mixed/allocated within wait_s."""
    missing = [cmd for cmd in ("sbatch", "squeue", "sinfo") if shutil.which(cmd) is None]
    if missing:
        return f"{', '.join(missing)} not on PATH"
    deadline = time.monotonic() + wait_s
    last = ""
    while True:
        try:
            proc = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=wait_s)
            states = proc.stdout.split()
            if any(_NODE_UP.fullmatch(s) for s in states):
                return None
            last = (proc.stderr.strip() or f"node states: {' '.join(states) or 'none'}")
        except subprocess.TimeoutExpired:
            last = f"sinfo did not answer within {wait_s:g} s"
        if time.monotonic() >= deadline:
            return f"no Slurm node is idle/mixed/allocated ({last})"
        time.sleep(0.25)


def require_slurm() -> bool:
    """Return True when Slurm is usable; otherwise skip the test, or fail it where Slurm is required."""
    problem = _slurm_problem()
    if problem is None:
        return True
    if slurm_must_be_there():
        pytest.fail(f"Slurm is required here (NANOTO_SLURM=1 or CI=true) but not usable: {problem}. "
                    f"Start a one-node cluster with `sudo bash {START_SCRIPT}` (stop it with .ci/slurm/stop.sh).",
                    pytrace=False)
    pytest.skip(f"Slurm not usable: {problem} (start one with {START_SCRIPT})")
    return False  # not reached


def _squeue(job_id: str) -> tuple[dict[str, str], str]:
    """{element id: state} for one job id ("123", "123_4"); {} once Slurm has forgotten the job."""
    # -r: one line per array element (pending ones too); --states=all: finished ones too.
    proc = subprocess.run(["squeue", "-h", "-r", "--states=all", "-j", job_id, "-o", "%i %T"],
                          capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        if "Invalid job id" in proc.stderr:  # purged after MinJobAge: it has finished
            return {}, ""
        return {job_id: "UNKNOWN"}, proc.stderr.strip()
    return dict(line.split(None, 1) for line in proc.stdout.splitlines() if line.strip()), ""


def wait_for_jobs(job_ids: Iterable[str | int], timeout_s: float) -> dict[str, str]:
    """Poll squeue until none of the jobs (plain or array, e.g. "123" or "123_4") is pending or running.

    Returns {element id: final state} (e.g. {"123_0": "COMPLETED", "123_1": "FAILED"}); raises
    AssertionError with ``scontrol show job`` output when a job is still active after timeout_s.
    """
    ids = [str(j).strip() for j in job_ids]
    deadline = time.monotonic() + timeout_s
    while True:
        states: dict[str, str] = {}
        errors = []
        for job_id in ids:
            found, err = _squeue(job_id)
            states.update(found)
            if err:
                errors.append(err)
        active = {k: v for k, v in states.items() if v in ACTIVE_STATES or v == "UNKNOWN"}
        if not active:
            return states
        if time.monotonic() >= deadline:
            shows = [subprocess.run(["scontrol", "show", "job", j], capture_output=True, text=True,
                                    timeout=30) for j in ids]
            detail = "\n".join((p.stdout + p.stderr).strip() for p in shows)
            raise AssertionError(
                f"Slurm jobs {', '.join(ids)} still active after {timeout_s:g} s: "
                f"{' '.join(f'{k}={v}' for k, v in sorted(active.items()))}"
                + (f"\nsqueue errors: {'; '.join(errors)}" if errors else "")
                + f"\nscontrol show job:\n{detail}")
        time.sleep(0.5)
