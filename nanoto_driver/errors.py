"""One shallow error hierarchy; the CLI maps it to exit codes.

Exit codes: 0 ok, 2 bad input (config, potential, geometry, displacement),
3 engine failure (LAMMPS missing or crashed, relaxation did not converge).
Every message says what went wrong and what to change.
"""

from __future__ import annotations


class NanotoError(Exception):
    """Base class. ``exit_code`` is what the CLI returns."""

    exit_code = 1


class InputError(NanotoError):
    """The user's input is wrong: fix the config, the files or the command."""

    exit_code = 2


class ConfigError(InputError):
    """A run config that does not validate (unknown key, bad value)."""


class PotentialError(InputError):
    """A missing or unreadable potential file, or an element it lacks."""


class GeometryError(InputError):
    """An impossible domain or design (too small, no load path)."""


class DisplacementError(InputError):
    """The prescribed displacement tore the structure or lost atoms."""


class EngineError(NanotoError):
    """The engine could not run (LAMMPS missing, crashed, bad install)."""

    exit_code = 3


class RelaxationError(EngineError):
    """A relaxation that did not converge or gave a non-physical result."""


class RunStopped(BaseException):
    """A signal stopped the run (Slurm time limit, requeue, scancel, Ctrl-C). Not an error: the
    run file holds every complete iteration and the run resumes from there. A BaseException so
    that no ``except Exception`` swallows it."""

    def __init__(self, signum: int) -> None:
        import signal

        super().__init__(signal.Signals(signum).name)
        self.signum = signum
