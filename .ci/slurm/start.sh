#!/usr/bin/env bash
# Start a throw-away one-node Slurm cluster (munge + slurmctld + slurmd) for the test suite.
# Debian bookworm, slurm-wlm 22.05.8: `apt-get install -y slurm-wlm munge` first (~20 s).
# No systemd, no cgroups, no slurmdbd (so no sacct). Must run as root; starts in < 1 s.
# State, logs and PID files go under $SLURM_TEST_DIR (default /tmp/nanoto-slurm);
# .ci/slurm/stop.sh stops exactly the daemons whose PIDs this script recorded.
#
# Measured with this configuration on a 2-core machine (22.05.8; throw-away jobs, not in the repo):
# a. Requeue (`scontrol requeue <job>_<task>`, from outside or from inside the batch script):
#    Slurm holds the element with BeginTime = end of the old run + cred_expire + 1 s, then it waits
#    for a scheduler pass (nothing "happens" when a BeginTime passes: backfill skips idle cycles).
#    Slurm defaults (cred_expire 120, sched_interval 60): restart 143-144 s after the requeue.
#    cred_expire=5 only: 13-14 s (and > 19 s once). cred_expire=5 + sched_interval=1 (below):
#    5.9-6.0 s in 8 of 8 tries (job dies at once on SIGTERM), 7.2 s in c. below; 12.2 s when a
#    child ignores SIGTERM (+ KillWait). cred_expire < 5 is rejected ("AuthInfo=cred_expire=4
#    invalid" in slurmd.log) and 120 s is used instead.
# b. `--signal=B:USR1@N`: slurmctld checks time limits every 30 s (PERIODIC_TIMEOUT, fixed; the
#    ticks are 30.0 s apart for all jobs) and signals at the first tick where the time left is
#    <= N + 30 s, never before the first tick after the start. So USR1 arrives 0-30 s earlier
#    than asked, or (when N+30 >= the time left at the first tick) at the first tick, 0-30 s after
#    the start. --time=1: N=10 -> 16-40 s before the limit (8 jobs); N=30 and N=50 -> 31-33 s
#    before (6 jobs); --time=2: N=30 -> 32 s, N=90 -> 91 s. 17 of 17 jobs got the signal.
# c. Requeue-on-signal (--requeue, trap USR1 -> scontrol requeue own element): works; USR1 goes
#    to the batch shell only (B:); the requeue then sends SIGCONT + SIGTERM to the shell AND all
#    its children ~10-30 ms after `scontrol requeue` returns 0, SIGKILL KillWait=5 s later.
#    The restarted element has the same SLURM_JOB_ID and SLURM_RESTART_COUNT=1 (unset on the
#    first run). Output file: default open mode truncates it (only the last run's output is
#    left); --open-mode=append keeps both runs plus "CANCELLED ... DUE TO JOB REQUEUE".
#    A bash `wait` interrupted by a trapped signal returns 128+sig: loop on wait.
# d. In `sbatch --ntasks=2`: `srun -n 2 python -c <mpi4py>` (MpiDefault=pmi2) and
#    `/tmp/venv/bin/mpiexec -n 2 ...` both print ranks 0,1 of size 2 (2 of 2 jobs each).
# e. MaxArraySize=1001 (the default, set explicitly): indices 0..1000; `--array=1001` or
#    `--array=0-1001` -> "sbatch: error: Batch job submission failed: Invalid job array
#    specification" (exit 1); `--array=1000` is accepted.
# f. No sacct: `squeue -h -r --states=all -j <id> -o '%i %T %r'` gives one line per element
#    ("44_1 FAILED NonZeroExitCode", pending ones too; %A job id, %F array job id, %K index).
#    Without --states=all a finished job prints nothing (exit 0). `scontrol -o show job <id>`
#    gives one line per element with JobState= and ExitCode=3:0 (squeue has no exit code in
#    22.05). Both work for MinJobAge (600 s) after the end; then "Invalid job id specified", exit 1.
set -euo pipefail
SLURM_TEST_DIR=${SLURM_TEST_DIR:-/tmp/nanoto-slurm}
CONF=/etc/slurm/slurm.conf      # where sbatch/squeue/sinfo look without SLURM_CONF
MARK="# written by nanoto .ci/slurm/start.sh"
# Requeue hold = cred_expire + 1 s (a.); 5 is the smallest value Slurm accepts.
CRED_EXPIRE=${SLURM_CRED_EXPIRE:-5}
# Seconds between passes of the main scheduler (default 60): starts a requeued job as soon as its
# BeginTime passes (a.). Cheap on one node.
SCHED_INTERVAL=${SLURM_SCHED_INTERVAL:-1}
die() { echo "start.sh: error: $*" >&2; exit 1; }
alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
node_up() { timeout 5 sinfo -h -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; }

[ "$(uname -s)" = Linux ] || die "only Linux is supported"
[ "$(id -u)" = 0 ] || die "must run as root (the daemons run as root; no SlurmUser account here)"
for b in munged munge unmunge slurmctld slurmd sinfo sbatch; do
  command -v "$b" >/dev/null || [ -x "/usr/sbin/$b" ] \
    || die "'$b' not found: apt-get install -y slurm-wlm munge"
done

# ---- already running? -------------------------------------------------------
if alive "$SLURM_TEST_DIR/slurmctld.pid" && alive "$SLURM_TEST_DIR/slurmd.pid" && node_up; then
  echo "start.sh: our Slurm cluster is already up (state in $SLURM_TEST_DIR); nothing to do"
  sinfo
  exit 0
fi
if alive "$SLURM_TEST_DIR/slurmctld.pid" || alive "$SLURM_TEST_DIR/slurmd.pid"; then
  echo "start.sh: daemons from an earlier start of ours are up but the node is not; restarting them" >&2
  bash "$(dirname "$0")/stop.sh"
fi
if (echo >/dev/tcp/127.0.0.1/6817) 2>/dev/null; then
  die "port 6817 is in use by a slurmctld that is not ours (no live PID in $SLURM_TEST_DIR); stop it first"
fi
if [ -e "$CONF" ] && ! grep -qxF "$MARK" "$CONF"; then
  die "$CONF exists and was not written by this script; move it away to use the test cluster"
fi

mkdir -p "$SLURM_TEST_DIR"/{spool/ctld,spool/d,log} /etc/slurm /run/munge
rm -f "$SLURM_TEST_DIR"/*.pid

# ---- munge (authentication) -------------------------------------------------
# Reuse a munged that already answers (then it is not ours and stop.sh leaves it alone).
if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  echo "start.sh: using the munged that is already running"
else
  [ -s /etc/munge/munge.key ] || mungekey --create --force
  chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge
  chmod 0700 /etc/munge; chmod 0600 /etc/munge/munge.key; chmod 0755 /run/munge
  rm -f /run/munge/munged.pid
  runuser -u munge -- /usr/sbin/munged --force --pid-file=/run/munge/munged.pid \
    || die "munged did not start (see /var/log/munge/munged.log)"
  for _ in $(seq 1 50); do [ -s /run/munge/munged.pid ] && break; sleep 0.1; done
  cp /run/munge/munged.pid "$SLURM_TEST_DIR/munged.pid"
  munge -n | unmunge >/dev/null || die "munge does not work (see /var/log/munge/munged.log)"
fi

# ---- slurm.conf ---------------------------------------------------------------
HOST=$(hostname -s)
NCPUS=${NCPUS:-$(nproc)}
# 90 % of the RAM: a RealMemory above what slurmd finds would drain the node.
MEM_MB=$(( $(awk '/MemTotal/{print $2}' /proc/meminfo) * 9 / 10 / 1024 ))
cat > "$CONF" <<CONF
$MARK
# One-node test cluster; state in ${SLURM_TEST_DIR}. Do not use in production.
ClusterName=nanoto-ci
SlurmctldHost=${HOST}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire also sets how long a requeued job is held (BeginTime = end + cred_expire + 1 s);
# the default 120 s (plus up to 60 s for a scheduler pass) makes every requeue wait 2-3 minutes.
# Job step credentials live as long: 5 s was enough for srun -n 2 here.
AuthInfo=cred_expire=${CRED_EXPIRE}
StateSaveLocation=${SLURM_TEST_DIR}/spool/ctld
SlurmdSpoolDir=${SLURM_TEST_DIR}/spool/d
SlurmctldPidFile=${SLURM_TEST_DIR}/slurmctld.pid
SlurmdPidFile=${SLURM_TEST_DIR}/slurmd.pid
SlurmctldLogFile=${SLURM_TEST_DIR}/log/slurmctld.log
SlurmdLogFile=${SLURM_TEST_DIR}/log/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
# No cgroups in containers/CI runners: track processes by /proc, no task binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=${SCHED_INTERVAL}
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
# pip's MPICH talks PMI2 (--mpi=pmix does not work with it).
MpiDefault=pmi2
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
# Finished jobs stay visible to squeue/scontrol for 10 min (there is no sacct here).
MinJobAge=600
# SIGTERM -> SIGKILL grace on time limit, scancel and requeue.
KillWait=5
Waittime=0
MailProg=/bin/true
# The default, written out so tests can rely on it: array indices 0..1000.
MaxArraySize=1001
NodeName=localhost NodeHostname=${HOST} NodeAddr=127.0.0.1 CPUs=${NCPUS} RealMemory=${MEM_MB} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
cp "$CONF" "$SLURM_TEST_DIR/slurm.conf"

# ---- daemons ------------------------------------------------------------------
fail() {
  echo "start.sh: error: $*" >&2
  tail -n 20 "$SLURM_TEST_DIR"/log/*.log >&2 || true
  bash "$(dirname "$0")/stop.sh" >&2 || true
  exit 1
}
/usr/sbin/slurmctld -i || fail "slurmctld did not start"   # daemonizes; -i: drop state of an earlier run
/usr/sbin/slurmd -N localhost || fail "slurmd did not start" # daemonizes; -N: our NodeName, whatever the hostname
for _ in $(seq 1 120); do
  if node_up; then
    echo "start.sh: Slurm is up (state and logs in $SLURM_TEST_DIR)"
    sinfo
    exit 0
  fi
  sleep 0.25
done
fail "the node did not become idle within 30 s"
