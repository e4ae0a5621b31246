#!/usr/bin/env bash
# Stop the daemons that .ci/slurm/start.sh started, by the PIDs it recorded (never by name:
# a munged or slurmctld that is not ours is left alone). Safe to run when nothing is up.
SLURM_TEST_DIR=${SLURM_TEST_DIR:-/tmp/nanoto-slurm}
alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# Cancel the jobs first: slurmstepd and the job's processes outlive a stopped slurmd.
# (Our slurmctld: every job on it is a test job.)
if alive "$SLURM_TEST_DIR/slurmctld.pid" && alive "$SLURM_TEST_DIR/slurmd.pid"; then
  jobs=$(timeout 10 squeue -h -o %F 2>/dev/null | sort -u | tr '\n' ' ')
  if [ -n "${jobs// /}" ]; then
    timeout 10 scancel $jobs 2>/dev/null
    # KillWait=5 s between SIGTERM and SIGKILL, then the node cleans up.
    for _ in $(seq 1 60); do [ -z "$(timeout 5 squeue -h -o %i 2>/dev/null)" ] && break; sleep 0.25; done
    echo "stop.sh: cancelled jobs $jobs"
  fi
fi
for d in slurmd slurmctld munged; do
  f="$SLURM_TEST_DIR/$d.pid"
  [ -s "$f" ] || continue
  pid=$(cat "$f")
  if kill "$pid" 2>/dev/null; then
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      kill -KILL "$pid" 2>/dev/null && echo "stop.sh: $d ($pid) ignored SIGTERM for 10 s: killed" >&2
    else
      echo "stop.sh: stopped $d ($pid)"
    fi
  fi
  rm -f "$f"
done
exit 0
