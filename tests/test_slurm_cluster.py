"""The Slurm test cluster runs a job array (skips without Slurm, fails when NANOTO_SLURM=1 or CI=true)."""

import subprocess

import pytest

from .slurm_cluster import require_slurm, wait_for_jobs


@pytest.mark.slurm
def test_two_element_array_writes_both_files(tmp_path):
    require_slurm()
    wrap = 'echo "task $SLURM_ARRAY_TASK_ID" > done_$SLURM_ARRAY_TASK_ID'
    proc = subprocess.run(
        ["sbatch", "--parsable", "--array=0-1", "--ntasks=1", "--time=2", f"--chdir={tmp_path}",
         f"--output={tmp_path}/slurm-%A_%a.out", "--wrap", wrap],
        capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    job_id = proc.stdout.strip().split(";")[0]  # --parsable: "jobid[;cluster]"
    states = wait_for_jobs([job_id], timeout_s=120)
    assert states == {f"{job_id}_0": "COMPLETED", f"{job_id}_1": "COMPLETED"}, states
    for i in (0, 1):
        assert (tmp_path / f"done_{i}").read_text() == f"task {i}\n"
