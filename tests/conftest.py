"""Shared fixtures. LAMMPS tests skip on a laptop without LAMMPS but fail in CI (CI=true)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "workflows" / "examples"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep the a0 cache of the test session away from the user's home."""
    os.environ["NANOTO_CACHE_DIR"] = str(tmp_path_factory.mktemp("nanoto-cache"))


def _have_lammps() -> str | None:
    try:
        from nanoto_driver.lammps_runtime import import_lammps

        import_lammps()
    except Exception as err:  # noqa: BLE001 - any failure means "not usable"
        return str(err)
    return None


@pytest.fixture(scope="session")
def lammps_ok() -> None:
    """Use in every LAMMPS test: skips without LAMMPS, except in CI where it fails."""
    problem = _have_lammps()
    if problem is None:
        return
    if IN_CI:
        pytest.fail(f"CI=true but LAMMPS is not usable: {problem}")
    pytest.skip(f"LAMMPS not available: {problem}")


def run_cli(*args: str, ranks: int = 1, cwd: Path | None = None, timeout: float = 600):
    """Run ``nanoto ARGS`` in a subprocess (under mpiexec when ranks > 1)."""
    cmd = [sys.executable, "-m", "nanoto_driver", *args]
    if ranks > 1:
        mpiexec = Path(sys.executable).parent / "mpiexec"
        cmd = [str(mpiexec), "-n", str(ranks), *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=timeout)


def evaluate_json(config: Path | str, *sets: str, engine: str | None = None, ranks: int = 1) -> dict:
    """``nanoto evaluate CONFIG --json`` as a dict; fails the test with stderr on error."""
    args = ["evaluate", str(config), "--json", *[x for s in sets for x in ("--set", s)]]
    if engine:
        args += ["--engine", engine]
    proc = run_cli(*args, ranks=ranks)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


SMOKE = ROOT / "workflows" / "sweeps" / "smoke.yaml"


def iterations_done(run_file: Path) -> int:
    """Iterations stored in a run file (0 while it does not exist or is not readable)."""
    import h5py

    try:
        with h5py.File(run_file, "r") as f:
            return int(f["iterations/k"].shape[0])
    except (OSError, KeyError):
        return 0


def results(root: Path) -> dict[str, tuple[float, str]]:
    """Campaign design id -> (K_sym, final occupancy sha256) of every finished design."""
    from nanoto_driver.campaign import open_campaign

    out = {}
    for d in open_campaign(root).designs:
        if d.done:
            s = json.loads(d.summary_path.read_text())
            out[d.id] = (s["k_sym_ev_per_a2"], s["final_occupancy_sha256"])
    return out


@pytest.fixture(scope="session")
def smoke(lammps_ok, tmp_path_factory) -> Path:
    """The smoke sweep run by the local executor, 2 workers x 1 rank."""
    root = tmp_path_factory.mktemp("campaign") / "smoke"
    assert run_cli("campaign", "plan", str(SMOKE), "-o", str(root)).returncode == 0
    proc = run_cli("campaign", "run", str(root), "--executor", "local", "--workers", "2")
    assert proc.returncode == 0, proc.stderr
    assert "4 done, 0 failed" in proc.stdout
    return root


def need(module: str):
    """Import an optional backend: skip without it on a laptop, fail in CI (every extra is installed)."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        if IN_CI:
            pytest.fail(f"CI=true but {module} is not importable: {err}")
        pytest.skip(f"{module} not installed: pip install 'nanoto[workflows]'")


def half_failing_sweep(folder: Path) -> Path:
    """A sweep of smoke design 0 (same config, same id) and one design whose potential file is missing."""
    import yaml

    tree = yaml.safe_load(SMOKE.read_text())
    tree.update(grid={"optimizer.volume_fraction": [0.5], "filter.shells": [1]},
                zip={"potential.file": ["Al_mm.eam.fs", "no_such_potential.eam.fs"]})
    path = folder / "half_failing.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path
