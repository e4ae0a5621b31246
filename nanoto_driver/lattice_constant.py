"""a0 from the potential, cached per potential file hash (never hard-coded).

The cache is a small JSON file in ``$NANOTO_CACHE_DIR`` (default
``~/.cache/nanoto``), written by atomic rename so concurrent runs cannot
corrupt it.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from .engine import Engine
from .potential import Potential


def cache_file() -> Path:
    root = os.environ.get("NANOTO_CACHE_DIR") or Path.home() / ".cache" / "nanoto"
    return Path(root) / "lattice_constants.json"


def _read_cache(path: Path) -> dict[str, float]:
    try:
        data = json.loads(path.read_text())
        return {str(k): float(v) for k, v in data.items()}
    except (OSError, ValueError, AttributeError):
        return {}  # a missing or damaged cache is simply recomputed


def _write_cache(path: Path, key: str, value: float) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = _read_cache(path)
        data[key] = value
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".partial")
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except OSError:
        pass  # read-only home: the value is recomputed next time, nothing breaks


def cache_key(potential: Potential) -> str:
    return f"{potential.sha256}:{potential.pair_style}:{potential.element}"


def lattice_constant_a(engine: Engine, potential: Potential | None, comm: Any | None = None) -> float:
    """a0 in Å: from the cache, or relaxed by the engine and then cached (rank 0 writes)."""
    if potential is None:  # analytic test double: its own model constant
        return engine.lattice_constant_a()
    rank = comm.Get_rank() if comm is not None else 0
    key = cache_key(potential)
    cached = _read_cache(cache_file()).get(key) if rank == 0 else None
    if comm is not None:
        cached = comm.bcast(cached, root=0)
    if cached is not None:
        return cached
    value = engine.lattice_constant_a()  # collective under MPI
    if rank == 0:
        _write_cache(cache_file(), key, value)
    return value
