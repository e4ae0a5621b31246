"""Campaign bookkeeping cost per design, and local-executor throughput (2 workers vs serial).

Bookkeeping (no optimization in the timing): for a sweep of ``--designs`` points,
    plan     ``nanoto campaign plan``  (expand, validate, one signac job per design)
    submit   ``nanoto campaign submit`` of every design: a real ``sbatch`` when Slurm answers
             (the array is cancelled at once), else ``--dry-run`` (rendering only; said in the output)
    status   ``nanoto campaign status --json`` with every design finished
    collect  ``nanoto dataset build`` over every design
Each is one CLI process (imports included), timed ``--repeat`` times; the figure is the
median divided by the number of designs. The designs are real smoke-sized LAMMPS runs cut
to 3 iterations (run untimed with the local executor between submit and status), so
status and collect read the files a real campaign holds.

Throughput: the smoke sweep with a volume-fraction axis of 4 values (8 real LAMMPS
designs of 128 sites), ``nanoto campaign run --workers 1`` versus ``--workers 2``, each
planned afresh, alternating order, median of ``--repeat`` runs.

    python bench/campaign_bench.py [--designs 40] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

import yaml

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "workflows" / "sweeps" / "smoke.yaml"


def nanoto(*args: str) -> float:
    """Run ``nanoto ARGS``; return its wall time (s); raise with stderr on failure."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "nanoto_driver", *args], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"nanoto {' '.join(args)} failed:\n{proc.stderr}")
    return wall


def write_sweep(path: Path, name: str, fractions: list[float], shells: list[int], max_iterations: int = 40) -> Path:
    tree = yaml.safe_load(SMOKE.read_text())
    tree["config"]["optimizer"]["max_iterations"] = max_iterations
    tree.update(name=name, grid={"optimizer.volume_fraction": fractions, "filter.shells": shells})
    path.write_text(yaml.safe_dump(tree, sort_keys=False))
    return path


def slurm_up() -> bool:
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return False
    return any(s.strip() in ("idle", "mixed", "allocated") for s in out.splitlines())


def bookkeeping(work: Path, n: int, repeat: int) -> dict[str, float]:
    """Median seconds per design of plan, submit, status and collect."""
    fractions = [round(0.30 + 0.40 * i / (n - 1), 6) for i in range(n)]
    sweep = write_sweep(work / "book.yaml", "book", fractions, [3], max_iterations=3)
    profile = ROOT / "workflows" / "slurm" / "profiles" / "ci-local.yaml"
    real = slurm_up()
    times: dict[str, list[float]] = {"plan": [], "submit": [], "status": [], "collect": []}
    for r in range(repeat):
        root = work / f"book{r}"
        times["plan"].append(nanoto("campaign", "plan", str(sweep), "-o", str(root)))
        args = ["campaign", "submit", str(root), "--profile", str(profile), "--throttle", "1"]
        times["submit"].append(nanoto(*args) if real else nanoto(*args, "--dry-run"))
        if real:
            for sub in json.loads((root / "slurm" / "submissions.json").read_text()):
                subprocess.run(["scancel", sub["job_id"]], check=False)  # its record stays: status asks squeue
        if r == 0:
            nanoto("campaign", "run", str(root), "--workers", "2")
        else:  # the same finished designs: copy the campaign planned in the first round
            shutil.rmtree(root)
            shutil.copytree(work / "book0", root)
        times["status"].append(nanoto("campaign", "status", str(root), "--json"))
        times["collect"].append(nanoto("dataset", "build", str(root), "-o", str(root / "dataset.h5")))
    per = {k: median(v) / n for k, v in times.items()}
    per["total"] = sum(per.values())
    per["submit_mode"] = "sbatch" if real else "dry-run"  # type: ignore[assignment]
    return per


def throughput(work: Path, repeat: int) -> dict[str, float]:
    """Median wall time of the 8-design sweep with 1 and 2 workers."""
    sweep = write_sweep(work / "tp.yaml", "tp", [0.5, 0.6, 0.7, 0.8], [1, 3])
    walls: dict[int, list[float]] = {1: [], 2: []}
    for r in range(repeat):
        for workers in ((1, 2) if r % 2 == 0 else (2, 1)):
            root = work / f"tp{r}w{workers}"
            nanoto("campaign", "plan", str(sweep), "-o", str(root))
            # --independent: the same work either way (shared descent would depend on the start order)
            walls[workers].append(nanoto("campaign", "run", str(root), "--workers", str(workers), "--independent"))
            print(f"  run {r}: {workers} worker(s) {walls[workers][-1]:.1f} s", flush=True)
    serial, parallel = median(walls[1]), median(walls[2])
    return {"serial_s": serial, "two_workers_s": parallel, "speedup": serial / parallel, "designs": 8}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--designs", type=int, default=40)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-throughput", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="nanoto-campaign-bench-") as tmp:
        work = Path(tmp)
        book = bookkeeping(work, args.designs, args.repeat)
        print(f"bookkeeping per design ({args.designs} designs, median of {args.repeat}, "
              f"submit via {book.pop('submit_mode')}):")
        for key, value in book.items():
            print(f"  {key:<8} {value * 1e3:8.2f} ms")
        if not args.skip_throughput:
            tp = throughput(work, args.repeat)
            print(f"local executor, {tp['designs']} smoke designs: serial {tp['serial_s']:.1f} s, "
                  f"2 workers {tp['two_workers_s']:.1f} s, speed-up {tp['speedup']:.2f}x")


if __name__ == "__main__":
    main()
