"""The README starts with exactly the two commands, and .ci/run runs the second one."""

import json
import re
import subprocess

import pytest

from .conftest import EXAMPLES, ROOT, run_cli

MAIN_JOB = (".venv/bin/mpiexec -n 2 .venv/bin/nanoto run workflows/examples/optimize_cantilever.yaml "
            "-o runs/demo --resume")


def _fenced_bash(text: str) -> list[str]:
    return re.findall(r"^```bash\n(.*?)\n```", text, re.S | re.M)


def test_readme_opens_with_two_commands():
    text = (ROOT / "README.md").read_text()
    before_prose = text.split("\n\nThe first command")[0]
    blocks = _fenced_bash(before_prose)
    assert len(blocks) == 2 and all("\n" not in b for b in blocks)
    main, tests = blocks
    assert main.startswith("python3 -m venv .venv && .venv/bin/pip install")
    assert main.endswith(MAIN_JOB)  # test_readme_main_job runs exactly this job
    assert (EXAMPLES / "optimize_cantilever.yaml").is_file()
    assert "pytest" in tests and "[all,test]" in tests


def test_ci_runs_the_readme_test_command():
    script = ROOT / ".ci" / "run"
    awk = re.search(r"\$\(awk '(.*?)' README.md\)", script.read_text()).group(1)
    out = subprocess.run(["awk", awk, "README.md"], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == _fenced_bash((ROOT / "README.md").read_text())[1]


@pytest.mark.slow
@pytest.mark.lammps
@pytest.mark.timeout(960)  # the 15-minute promise plus start-up; the global 600 s cut it on a busy machine
def test_readme_main_job(lammps_ok, tmp_path):
    """The demo: a real LAMMPS optimization of >= 3,000 design sites that converges within 15 minutes."""
    out = tmp_path / "demo"
    proc = run_cli("run", str(EXAMPLES / "optimize_cantilever.yaml"), "-o", str(out), "--resume", ranks=2,
                   timeout=900)
    assert proc.returncode == 0, proc.stderr
    assert "convergence.png" in proc.stdout and "design.png" in proc.stdout
    summary = json.loads((out / "summary.json").read_text())
    n_design_sites = round(summary["n_design_atoms"] / summary["volume_fraction"])
    assert n_design_sites >= 3000
    assert summary["converged"] and summary["volume_fraction"] == 0.5
    assert summary["session_wall_s"] < 900
    assert summary["k_sym_ev_per_a2"] < summary["k_sym_initial_ev_per_a2"]
