"""Opening nanoto's HDF5 files (datasets, samples) with errors that name the file and the fix."""

from __future__ import annotations

from pathlib import Path

import h5py

from .errors import InputError


def open_readable(path: Path, what: str, hint: str) -> h5py.File:
    """``path`` opened read-only; InputError "<what> not found" / "not a readable HDF5 file" + ``hint``."""
    if not path.is_file():
        raise InputError(f"{what} not found: {path}; {hint}")
    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise InputError(f"{what} {path} is not a readable HDF5 file ({err}); {hint}") from None
