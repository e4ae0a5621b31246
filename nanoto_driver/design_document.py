"""The output document of one finished design, for workflow managers (jobflow, FireWorks).

A typed, JSON-serializable record of a run folder: the headline figures of
``summary.json``, where the run file is and its sha256 (so a store entry can be
checked against the file it points to), and the provenance written into the run file.
Needs neither jobflow nor FireWorks: both integrations return this.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from .errors import InputError


class DesignDocument(BaseModel):
    """One Nano-TO design, done. Energies in eV, lengths in Å, stiffness in eV/Å²."""

    name: str
    config_sha256: str = Field(description="sha256 of the canonical run config: the design's identity")
    k_sym_ev_per_a2: float = Field(description="K_sym of the final design")
    k_sym_initial_ev_per_a2: float = Field(description="K_sym of the full design domain")
    volume_fraction: float
    n_design_atoms: int
    iterations: int
    converged: bool
    status: str
    final_occupancy_sha256: str = Field(description="sha256 of the final occupancy (site order, uint8)")
    force_evaluations: int
    wall_s: float
    run_dir: str = Field(description="absolute path of the run folder")
    run_file: str = Field(description="absolute path of run.h5")
    run_file_sha256: str
    provenance: dict[str, Any] = Field(description="versions, potential sha256, MPI ranks, host (run.h5 /provenance)")
    summary: dict[str, Any] = Field(description="summary.json as written")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_provenance(run_file: Path) -> dict[str, Any]:
    """The attributes of ``/provenance`` in a run file, as plain JSON values."""
    import h5py

    with h5py.File(run_file, "r") as f:
        attrs = dict(f["provenance"].attrs)
    return {k: (v.item() if hasattr(v, "item") else v) for k, v in attrs.items()}


def design_document(run_dir: str | Path) -> DesignDocument:
    """The document of the finished run in ``run_dir`` (needs its summary.json and run.h5)."""
    run_dir = Path(run_dir).resolve()
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError) as err:
        raise InputError(f"{run_dir}: no finished run here (summary.json: {err})") from None
    run_file = run_dir / "run.h5"
    fields = {k: summary[k] for k in DesignDocument.model_fields if k in summary}
    return DesignDocument(**fields, run_dir=str(run_dir), run_file=str(run_file),
                          run_file_sha256=file_sha256(run_file), provenance=read_provenance(run_file),
                          summary=summary)
