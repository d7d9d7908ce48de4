#!/usr/bin/env bash
# Stop the throwaway SLURM cluster that start.sh started in STATE_DIR:
# cancel remaining jobs, then stop slurmd, slurmctld, slurmdbd, MariaDB and
# munged by the pids in their pid files (SIGKILL after a grace period).
# Idempotent: succeeds quietly when nothing is running. STATE_DIR is kept
# (logs stay readable); delete it yourself if wanted.
#
# Usage: workflow/cluster/stop.sh STATE_DIR
set -euo pipefail

GRACE_SECONDS=${STLM_SLURM_STOP_GRACE:-15}
STOPPED_PIDS=()

# shellcheck source=SCRIPTDIR/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# stop_daemon NAME PIDFILE: SIGTERM, wait, then SIGKILL; remove the pid file.
stop_daemon() {
  local name=$1 pidfile=$2 pid deadline t0
  if ! pid=$(live_pid "$pidfile" "$name"); then
    rm -f "$pidfile"
    return 0
  fi
  t0=$(now)
  kill -TERM "$pid" 2>/dev/null || true
  deadline=$(($(date +%s) + GRACE_SECONDS))
  while running "$pid"; do
    if (($(date +%s) >= deadline)); then
      log "$name (pid $pid) ignored SIGTERM for ${GRACE_SECONDS}s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.5
      break
    fi
    sleep 0.2
  done
  rm -f "$pidfile"
  STOPPED_PIDS+=("$pid")
  log "stopped $name (pid $pid) in $(elapsed "$t0") s"
}

# Cancel queued and running jobs while the controller still answers, so their
# processes (children of slurmstepd, not of slurmd) do not outlive the cluster.
cancel_jobs() {
  live_pid "$STATE/run/slurmctld.pid" slurmctld >/dev/null || return 0
  command -v scancel >/dev/null || return 0
  local jobs
  jobs=$(timeout 5 squeue -h -o '%i' 2>/dev/null || true)
  [[ -n $jobs ]] || return 0
  log "cancelling jobs: $(echo "$jobs" | tr '\n' ' ')"
  # shellcheck disable=SC2086  # one job id per word
  timeout 10 scancel $jobs 2>/dev/null || true
  # Give slurmstepd a moment to signal and reap the job processes.
  local _
  for _ in $(seq 1 20); do
    [[ -z $(timeout 5 squeue -h -t R,CG -o '%i' 2>/dev/null || true) ]] && break
    sleep 0.5
  done
}

# descendants PID: all child processes of PID, recursively.
descendants() {
  local child
  for child in $(pgrep -P "$1" 2>/dev/null || true); do
    echo "$child"
    descendants "$child"
  done
}

# Job step daemons (and the job processes under them) that outlived slurmd,
# e.g. because the controller was already down and scancel was impossible.
# They are ours if they inherited this cluster's SLURM_CONF from our slurmd.
kill_leftover_steps() {
  local pid
  for pid in $(pgrep -x slurmstepd 2>/dev/null || true); do
    tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null \
      | grep -qxF "SLURM_CONF=$STATE/slurm.conf" || continue
    # shellcheck disable=SC2046  # one pid per word
    kill -KILL $(descendants "$pid") "$pid" 2>/dev/null || true
    STOPPED_PIDS+=("$pid")
    log "killed leftover slurmstepd (pid $pid) and its job processes"
  done
}

# Exited daemons linger as zombies until pid 1 reaps them (here every ~2 s);
# wait briefly so that `pgrep slurm` right after this script shows nothing.
wait_reaped() {
  local pid deadline=$(($(date +%s) + 5))
  for pid in "${STOPPED_PIDS[@]}"; do
    while [[ -e /proc/$pid ]] && (($(date +%s) < deadline)); do
      sleep 0.2
    done
  done
}

main() {
  [[ $# -eq 1 && -n $1 ]] || usage
  STATE=$(realpath -m -- "$1")
  [[ -d $STATE ]] || return 0
  export SLURM_CONF=$STATE/slurm.conf
  local t0
  t0=$(now)

  cancel_jobs
  # Reverse start order: node daemon first, database and munge last, since the
  # SLURM daemons talk to slurmdbd and munged while shutting down.
  stop_daemon slurmd "$STATE/run/slurmd.pid"
  kill_leftover_steps
  stop_daemon slurmctld "$STATE/run/slurmctld.pid"
  stop_daemon slurmdbd "$STATE/run/slurmdbd.pid"
  stop_daemon mariadbd "$STATE/run/mariadb.pid"
  stop_daemon munged "$STATE/run/munged.pid"
  wait_reaped
  if ((${#STOPPED_PIDS[@]} > 0)); then
    log "cluster in $STATE stopped in $(elapsed "$t0") s"
  fi
}

main "$@"
