"""The Slurm executor: a campaign as job arrays, plus a collector job that builds the dataset.

``submit`` renders ``workflows/slurm/array.sbatch.j2`` with a site profile (partition,
account, time, ranks, launcher, set-up lines), splits the design indices so that no
array task id reaches the cluster's MaxArraySize, submits each piece with
``--array=<indices>%<throttle>``, then submits ``collect.sbatch.j2`` with
``--dependency=afterany:<all array jobs>``. Scripts and job ids are kept in
``CAMPAIGN/slurm/`` (``submissions.json``), which ``status`` reads.
"""

from __future__ import annotations

import datetime
import json
import logging
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .campaign import Campaign, write_json
from .errors import ConfigError, EngineError, InputError

log = logging.getLogger("nanoto")
DEFAULT_MAX_ARRAY_SIZE = 1001  # Slurm's default MaxArraySize


class SlurmProfile(BaseModel):
    """A site profile (YAML); unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    time: str = Field("01:00:00", description="time limit per array element (sbatch --time)")
    ranks_per_task: int = Field(1, ge=1, description="MPI ranks per design")
    cpus_per_rank: int = Field(1, ge=1)
    mem_per_cpu: str | None = None
    launcher: Literal["srun", "mpiexec"] = "srun"
    srun_args: str = "--mpi=pmi2"
    mpiexec: str = "mpiexec"
    setup: str = Field("", description="shell lines run first: module loads, venv activation")
    python: str | None = Field(None, description="Python with nanoto installed; default: the submitting one")
    signal_margin_s: int = Field(120, ge=10, description="USR1 this many seconds before the time limit")
    max_array_size: int | None = Field(None, ge=2, description="default: scontrol show config")
    extra_sbatch: list[str] = Field(default_factory=list)
    collector_time: str = "00:30:00"


def load_profile(path: str | Path) -> SlurmProfile:
    path = Path(path)
    try:
        tree = yaml.safe_load(path.read_text()) or {}
        return SlurmProfile.model_validate(tree)
    except FileNotFoundError:
        raise ConfigError(f"Slurm profile not found: {path} "
                          "(start from a copy of workflows/slurm/profiles/example.yaml)") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({err})") from None
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        if first["type"] == "extra_forbidden":
            valid = ", ".join(SlurmProfile.model_fields)
            raise ConfigError(f"{path}: unknown key '{where}' (valid keys: {valid})") from None
        raise ConfigError(f"{path}: {where}: {first['msg']}") from None


def array_spec(task_ids: list[int], throttle: int | None = None) -> str:
    """``[0, 1, 2, 5, 7, 8]`` -> ``"0-2,5,7-8"`` (plus ``%throttle``)."""
    runs: list[list[int]] = []
    for i in sorted(set(task_ids)):
        if runs and i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    spec = ",".join(f"{a}-{b}" if b > a else str(a) for a, b in runs)
    return f"{spec}%{throttle}" if throttle else spec


def split_indices(indices: list[int], max_array_size: int) -> list[tuple[int, list[int]]]:
    """Pieces ``(offset, indices)`` with offsets multiples of ``max_array_size``: array task id =
    index - offset stays below it, and equals the design index on clusters large enough."""
    pieces: dict[int, list[int]] = {}
    for i in sorted(set(indices)):
        pieces.setdefault(i - i % max_array_size, []).append(i)
    return list(pieces.items())


def cluster_max_array_size() -> int:
    """MaxArraySize from ``scontrol show config`` (Slurm's default if it cannot be read)."""
    try:
        out = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return DEFAULT_MAX_ARRAY_SIZE
    found = re.search(r"^MaxArraySize\s*=\s*(\d+)", out, re.MULTILINE)
    return int(found.group(1)) if found else DEFAULT_MAX_ARRAY_SIZE


def _template(name: str) -> Any:
    from importlib import resources

    import jinja2

    text = (resources.files("nanoto_workflows") / "slurm" / name).read_text()
    return jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True).from_string(text)


def _common(campaign: Campaign, profile: SlurmProfile, profile_name: str) -> dict[str, Any]:
    return {"name": campaign.name, "p": profile, "profile_name": profile_name,
            "slurm_dir": campaign.slurm_dir.resolve(), "root": campaign.root.resolve(),
            "python": profile.python or sys.executable}


def render_array(campaign: Campaign, profile: SlurmProfile, profile_name: str, offset: int, indices: list[int],
                 throttle: int | None, max_array_size: int) -> str:
    """The sbatch script of one array piece (design indices ``indices``)."""
    p = profile
    launch = (f"srun --ntasks={p.ranks_per_task} {p.srun_args}".strip() if p.launcher == "srun"
              else f"{p.mpiexec} -n {p.ranks_per_task}")
    return str(_template("array.sbatch.j2").render(
        **_common(campaign, profile, profile_name), designs=array_spec(indices), count=len(indices),
        total=len(campaign), offset=offset, max_array_size=max_array_size, launch=launch,
        array=array_spec([i - offset for i in indices], throttle)))


def render_collector(campaign: Campaign, profile: SlurmProfile, profile_name: str, job_ids: list[str]) -> str:
    return str(_template("collect.sbatch.j2").render(**_common(campaign, profile, profile_name), job_ids=job_ids))


@dataclass(frozen=True)
class Script:
    kind: Literal["array", "collector"]
    path: Path
    text: str
    offset: int = 0
    indices: tuple[int, ...] = ()


def read_submissions(campaign: Campaign) -> list[dict[str, Any]]:
    """Every array piece submitted so far, oldest first (``[]`` if none)."""
    path = campaign.slurm_dir / "submissions.json"
    if not path.is_file():
        return []
    return [s for s in json.loads(path.read_text()) if s["kind"] == "array"]


def _sbatch(script: Path) -> str:
    done = subprocess.run(["sbatch", "--parsable", str(script)], capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise EngineError(f"sbatch {script} failed: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout.strip().split(";")[0]


def submit(campaign: Campaign, profile: SlurmProfile, profile_name: str, indices: list[int],
           throttle: int | None = None, dry_run: bool = False, collector: bool = True) -> list[tuple[Script, str]]:
    """Render, write and submit the array piece(s) and the collector; return (script, job id) pairs.

    With ``dry_run`` nothing is written or submitted and job ids are placeholders.
    """
    if not indices:
        return []
    if not dry_run and shutil.which("sbatch") is None:
        raise InputError("sbatch not found: submit from a Slurm login node, or run with --executor local")
    max_size = profile.max_array_size or cluster_max_array_size()
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S")
    if not dry_run:
        campaign.slurm_dir.mkdir(exist_ok=True)
    results: list[tuple[Script, str]] = []
    for n, (offset, piece) in enumerate(split_indices(indices, max_size)):
        text = render_array(campaign, profile, profile_name, offset, piece, throttle, max_size)
        script = Script("array", campaign.slurm_dir / f"array_{stamp}_{n}.sbatch", text, offset, tuple(piece))
        results.append((script, _submit_one(campaign, script, dry_run)))
    if collector:
        job_ids = [job for _, job in results]
        text = render_collector(campaign, profile, profile_name, job_ids)
        script = Script("collector", campaign.slurm_dir / f"collect_{stamp}.sbatch", text)
        results.append((script, _submit_one(campaign, script, dry_run)))
    return results


def _submit_one(campaign: Campaign, script: Script, dry_run: bool) -> str:
    if dry_run:
        return f"<job id of {script.path.name}>"
    script.path.write_text(script.text)
    job_id = _sbatch(script.path)
    path = campaign.slurm_dir / "submissions.json"
    records = json.loads(path.read_text()) if path.is_file() else []
    records.append({"kind": script.kind, "job_id": job_id, "script": script.path.name, "offset": script.offset,
                    "indices": list(script.indices),
                    "submitted_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")})
    write_json(path, records)
    log.info("submitted %s as job %s (%d designs)", script.path.name, job_id, len(script.indices))
    return job_id
