#!/usr/bin/env bash
# Start a throwaway single-node SLURM cluster on this machine for integration
# tests: munged, MariaDB, slurmdbd, slurmctld and slurmd, every file of which
# (configs, keys, logs, spool dirs, pid files, sockets, database) lives under
# STATE_DIR.
#
# Usage: workflow/cluster/start.sh STATE_DIR
#
# Progress goes to stderr; stdout carries only `export` lines (also written to
# STATE_DIR/env.sh): SLURM_CONF, and PATH with STATE_DIR/bin (client wrappers
# that keep working inside Snakemake jobs) in front. So
# `eval "$(workflow/cluster/start.sh DIR)"` points sbatch/squeue/sacct/scancel
# at this cluster. Idempotent: daemons that are already running (by pid file)
# are left alone. Stop with stop.sh STATE_DIR.
#
# Exit codes: 0 ok, 1 failure, 2 usage, 3 not root (callers may skip on 3).
set -euo pipefail

# Non-default ports so a system slurm/MariaDB on the usual ones is unaffected.
CTLD_PORT=${STLM_SLURMCTLD_PORT:-16817}
SLURMD_PORT=${STLM_SLURMD_PORT:-16818}
DBD_PORT=${STLM_SLURMDBD_PORT:-16819}
DB_PORT=${STLM_MARIADB_PORT:-16306}
CLUSTER_NAME=${STLM_SLURM_CLUSTER:-stlm}
ACCOUNT=${STLM_SLURM_ACCOUNT:-stlm}
PARTITION=cpu
WAIT_TIMEOUT=${STLM_SLURM_WAIT_TIMEOUT:-60}
PACKAGES=(slurm-wlm munge slurmdbd mariadb-server)

log() { printf '[cluster] %s\n' "$*" >&2; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# timed FUNC: run FUNC and log how long it took.
timed() {
  local t0
  t0=$(now)
  "$@"
  log "  ($1: $(elapsed "$t0") s)"
}

usage() {
  echo "usage: $0 STATE_DIR" >&2
  exit 2
}

# --- process helpers ---------------------------------------------------------

# running PID: alive and not a zombie (an exited daemon stays a zombie until
# pid 1 reaps it, which can take seconds in a container).
running() {
  kill -0 "$1" 2>/dev/null && ! grep -qs '^State:[[:space:]]*Z' "/proc/$1/status"
}

# pid_alive PIDFILE NAME: true if PIDFILE names a live process whose command
# line mentions NAME (guards against a stale pid reused by another program).
pid_alive() {
  local pidfile=$1 name=$2 pid
  [[ -s $pidfile ]] || return 1
  pid=$(pid_of "$pidfile")
  [[ -n $pid ]] && running "$pid" || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$name"
}

# wait_until SECONDS DESCRIPTION CMD...: poll CMD until it succeeds. When
# WATCH_PID is set (e.g. `WATCH_PID=$! wait_until ...`), give up as soon as
# that process has exited instead of waiting for the timeout.
wait_until() {
  local timeout=$1 what=$2 deadline
  shift 2
  deadline=$(($(date +%s) + timeout))
  until "$@" >/dev/null 2>&1; do
    if [[ -n ${WATCH_PID:-} ]] && ! running "$WATCH_PID"; then
      log "$what: process $WATCH_PID exited"
      return 1
    fi
    if (($(date +%s) >= deadline)); then
      log "timed out after ${timeout}s waiting for: $what"
      return 1
    fi
    sleep 0.5
  done
}

# pid_of PIDFILE: the pid in PIDFILE, or nothing.
pid_of() { tr -dc '0-9' 2>/dev/null <"$1" || true; }

# Print the end of every log under STATE_DIR, for diagnosing a failed start.
dump_logs() {
  local f
  for f in "$STATE"/log/*.log; do
    [[ -f $f && $f != */mariadb-install.log ]] || continue
    log "---- tail of $f ----"
    tail -n 25 "$f" >&2 || true
  done
}

fail() {
  log "ERROR: $*"
  dump_logs
  log "daemons that did start are still running; clean up with: $(dirname "$0")/stop.sh $STATE"
  exit 1
}

# --- packages ----------------------------------------------------------------

install_packages() {
  local missing=() p t0
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' \
      || missing+=("$p")
  done
  if ((${#missing[@]} == 0)); then
    log "packages already installed"
    return
  fi
  log "installing: ${missing[*]}"
  t0=$(now)
  block_service_starts
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >&2
  unblock_service_starts
  log "package install took $(elapsed "$t0") s"
}

# The packages' install scripts would start system munged/slurmd/mariadb
# (on the default sockets and ports) where init scripts can run; this
# cluster runs its own. A policy-rc.d answering 101 forbids that, unless the
# machine already has one.
POLICY_RC=/usr/sbin/policy-rc.d
block_service_starts() {
  [[ -e $POLICY_RC ]] && return 0
  printf '#!/bin/sh\nexit 101\n' >"$POLICY_RC"
  chmod 0755 "$POLICY_RC"
  CREATED_POLICY_RC=1
  trap unblock_service_starts EXIT
}
unblock_service_starts() {
  if [[ -n ${CREATED_POLICY_RC:-} ]]; then
    rm -f "$POLICY_RC"
    CREATED_POLICY_RC=
  fi
}

# --- layout and configuration ------------------------------------------------

make_layout() {
  mkdir -p "$STATE"/{log,run,spool/slurmctld,spool/slurmd,munge,mariadb}
  # munged wants its socket dir searchable by all but writable only by owner.
  chmod 0755 "$STATE/munge"
}

# Memory slurmd may hand out: MemTotal minus a margin for the OS and for
# whatever else runs here. Never above what slurmd detects, or the node is
# marked invalid.
node_memory_mb() {
  local total_mb
  total_mb=$(awk '/^MemTotal:/ { print int($2 / 1024) }' /proc/meminfo)
  echo $((total_mb - total_mb / 10 - 512))
}

write_slurm_conf() {
  local host cpus mem
  host=$(hostname -s)
  cpus=$(nproc)
  mem=$(node_memory_mb)
  cat >"$STATE/slurm.conf" <<EOF
# Generated by workflow/cluster/start.sh: throwaway single-node test cluster.
ClusterName=$CLUSTER_NAME
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
# Test cluster only: every daemon and every job runs as root.
SlurmUser=root
SlurmdUser=root

AuthType=auth/munge
CredType=cred/munge
# Private munged socket under STATE_DIR (used by auth/munge and cred/munge).
AuthInfo=socket=$MUNGE_SOCKET
# Connections to slurmdbd authenticate with the munge socket named here; left
# empty they would use the system socket.
AccountingStoragePass=$MUNGE_SOCKET

StateSaveLocation=$STATE/spool/slurmctld
SlurmdSpoolDir=$STATE/spool/slurmd
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info

# No cgroups inside a container: track processes via /proc, no task binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
MpiDefault=none
# Silences "MailProg is invalid" (Debian's default mailer is not installed).
MailProg=/bin/true
# Do not copy the submitter's ulimits into jobs; setrlimit can fail in a sandbox.
PropagateResourceLimits=NONE
ReturnToService=2

# Short timeouts: a test should fail fast rather than hang.
SlurmctldTimeout=30
SlurmdTimeout=30
MessageTimeout=10
InactiveLimit=0
KillWait=5
Waittime=0
# Finished jobs stay visible to squeue for 5 minutes, long enough for
# Snakemake's squeue-based status check (needs >= 120 s).
MinJobAge=300

# Cores and memory are consumable, so two 1-core jobs share a 2-core node.
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# Without a default, a job that does not ask for memory gets the whole node.
DefMemPerCPU=1024

AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$DBD_PORT
# Jobs must name (or default to) an account registered with sacctmgr.
AccountingStorageEnforce=associations
JobCompType=jobcomp/none
# Keep each job's comment (the executor writes the rule and wildcards there) in the accounting, for sacct.
AccountingStoreFlags=job_comment

# A hardware mismatch (e.g. memory) must not drain the only node.
SlurmdParameters=config_overrides
# Every logical CPU counts as a core, so CR_Core hands out single CPUs even
# where the hardware has two threads per core.
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus Sockets=1 CoresPerSocket=$cpus ThreadsPerCore=1 RealMemory=$mem State=UNKNOWN
PartitionName=$PARTITION Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
}

write_slurmdbd_conf() {
  local pass
  pass=$(cat "$STATE/mariadb/slurm.password")
  cat >"$STATE/slurmdbd.conf" <<EOF
# Generated by workflow/cluster/start.sh.
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=root
LogFile=$STATE/log/slurmdbd.log
PidFile=$STATE/run/slurmdbd.pid
DebugLevel=info
StorageType=accounting_storage/mysql
# TCP on 127.0.0.1: the MySQL plugin cannot be given a socket path.
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$pass
StorageLoc=slurm_acct_db
EOF
  # slurmdbd refuses a config that holds a password and is readable by others.
  chmod 0600 "$STATE/slurmdbd.conf"
}

# Wrappers in STATE_DIR/bin that pin SLURM_CONF. Needed inside jobs: the
# Snakemake jobstep executor strips every SLURM_* variable (SLURM_CONF too)
# before it calls `srun`, and PATH is what survives.
write_client_wrappers() {
  local cmd real
  mkdir -p "$STATE/bin"
  for cmd in sbatch srun salloc squeue sacct sacctmgr scancel sinfo scontrol sstat sshare sprio sreport; do
    # The first real binary on PATH, skipping our own wrappers.
    real=$(type -a -P "$cmd" | grep -v -x -F "$STATE/bin/$cmd" | head -n 1) || true
    [[ -n $real ]] || continue
    printf '#!/bin/sh\nSLURM_CONF=%q exec %q "$@"\n' "$STATE/slurm.conf" "$real" >"$STATE/bin/$cmd"
    chmod 0755 "$STATE/bin/$cmd"
  done
}

write_env() {
  {
    printf 'export SLURM_CONF=%q\n' "$STATE/slurm.conf"
    # shellcheck disable=SC2016  # $PATH is expanded by whoever sources env.sh
    printf 'export PATH=%q:"$PATH"\n' "$STATE/bin"
  } >"$STATE/env.sh"
  cat "$STATE/env.sh"
}

# --- munge -------------------------------------------------------------------

munge_works() {
  munge -S "$MUNGE_SOCKET" -n </dev/null | unmunge -S "$MUNGE_SOCKET" >/dev/null
}

# start_munged SOCKET: run munged with our key on SOCKET, pid/log/seed in STATE.
start_munged() {
  MUNGE_SOCKET=$1
  munged --socket="$MUNGE_SOCKET" \
    --key-file="$STATE/munge/munge.key" \
    --pid-file="$STATE/run/munged.pid" \
    --log-file="$STATE/log/munged.log" \
    --seed-file="$STATE/munge/munged.seed" >>"$STATE/log/munged.log" 2>&1 &&
    wait_until 10 "munged on $MUNGE_SOCKET" munge_works
}

ensure_munge() {
  local key=$STATE/munge/munge.key
  # The private socket path is kept in a file, so a later run (and stop.sh)
  # uses the same one even when the fallback below was taken.
  MUNGE_SOCKET=$(cat "$STATE/munge/socket.path" 2>/dev/null || echo "$STATE/munge/munge.socket")
  if pid_alive "$STATE/run/munged.pid" munged && munge_works; then
    log "munged already running (pid $(cat "$STATE/run/munged.pid"))"
    return
  fi
  if [[ ! -s $key ]]; then
    mungekey --create --keyfile="$key" 2>/dev/null \
      || dd if=/dev/urandom of="$key" bs=1024 count=1 status=none
    chmod 0400 "$key"
  fi
  # A unix socket path is limited to 107 bytes.
  if ((${#MUNGE_SOCKET} < 100)) && start_munged "$MUNGE_SOCKET"; then
    :
  else
    log "munged on a private socket failed; falling back to the system socket dir"
    mkdir -p /run/munge
    start_munged /run/munge/munge.socket.2 || fail "munged did not start"
  fi
  echo "$MUNGE_SOCKET" >"$STATE/munge/socket.path"
  log "munged running (pid $(cat "$STATE/run/munged.pid"), socket $MUNGE_SOCKET)"
}

# --- MariaDB -----------------------------------------------------------------

db_socket() { echo "$STATE/mariadb/mysqld.sock"; }

# shellcheck disable=SC2120  # called with arguments via wait_until
db_sql() { mariadb --no-defaults --user=root --socket="$(db_socket)" "$@"; }

ensure_mariadb() {
  local data=$STATE/mariadb/data pass_file=$STATE/mariadb/slurm.password
  [[ -s $pass_file ]] || { head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' >"$pass_file"; }
  chmod 0600 "$pass_file"
  if pid_alive "$STATE/run/mariadb.pid" mariadbd; then
    log "mariadbd already running (pid $(cat "$STATE/run/mariadb.pid"))"
    return
  fi
  # Throwaway data: trade durability for speed (no fsync per commit, no
  # doublewrite, small redo log). Native AIO is often unavailable in containers.
  local fast=(--innodb-use-native-aio=0 --innodb-flush-log-at-trx-commit=0
    --innodb-doublewrite=0 --innodb-log-file-size=32M)
  if [[ ! -d $data/mysql ]]; then
    mariadb-install-db --no-defaults --user=root --datadir="$data" \
      --auth-root-authentication-method=socket --skip-test-db "${fast[@]}" \
      >"$STATE/log/mariadb-install.log" 2>&1 || fail "mariadb-install-db failed; see $STATE/log/mariadb-install.log"
  fi
  rm -f "$STATE/run/mariadb.pid"
  # setsid: detach from this shell so the server outlives the script.
  # The lock wait timeout is the value slurmdbd checks for (it warns otherwise).
  setsid mariadbd --no-defaults --user=root \
    --datadir="$data" --socket="$(db_socket)" --pid-file="$STATE/run/mariadb.pid" \
    --bind-address=127.0.0.1 --port="$DB_PORT" --skip-name-resolve \
    --log-error="$STATE/log/mariadb.log" \
    "${fast[@]}" --innodb-lock-wait-timeout=900 \
    </dev/null >>"$STATE/log/mariadb.log" 2>&1 &
  WATCH_PID=$! wait_until 30 "mariadbd" db_sql -e 'SELECT 1' || fail "mariadbd did not start"
  log "mariadbd running (pid $(cat "$STATE/run/mariadb.pid"), port $DB_PORT)"
}

ensure_database() {
  local pass
  pass=$(cat "$STATE/mariadb/slurm.password")
  # --skip-name-resolve: TCP clients from 127.0.0.1 match the host '127.0.0.1'.
  # shellcheck disable=SC2119
  db_sql <<EOF || fail "creating slurm_acct_db failed"
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$pass';
ALTER USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$pass';
GRANT ALL PRIVILEGES ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
FLUSH PRIVILEGES;
EOF
}

# --- SLURM daemons -------------------------------------------------------------

dbd_ready() { sacctmgr -n list cluster; }

ensure_slurmdbd() {
  if pid_alive "$STATE/run/slurmdbd.pid" slurmdbd; then
    log "slurmdbd already running (pid $(cat "$STATE/run/slurmdbd.pid"))"
  else
    rm -f "$STATE/run/slurmdbd.pid" # stale: must not be mistaken for the new one
    # slurmdbd has no -f: it reads slurmdbd.conf next to $SLURM_CONF.
    slurmdbd >>"$STATE/log/slurmdbd.log" 2>&1 || fail "slurmdbd did not start"
  fi
  WATCH_PID=$(pid_of "$STATE/run/slurmdbd.pid") wait_until 30 "slurmdbd" dbd_ready \
    || fail "slurmdbd not answering"
  log "slurmdbd running (pid $(pid_of "$STATE/run/slurmdbd.pid"), port $DBD_PORT)"
}

# Register cluster, account and root user; with AccountingStorageEnforce the
# controller rejects jobs without an association. Must precede slurmctld so it
# finds its cluster registered.
ensure_associations() {
  if [[ -z $(sacctmgr -n -P list cluster "$CLUSTER_NAME" format=cluster) ]]; then
    sacctmgr -i add cluster "$CLUSTER_NAME" >&2 || fail "sacctmgr add cluster failed"
  fi
  if [[ -z $(sacctmgr -n -P list account "$ACCOUNT" format=account) ]]; then
    sacctmgr -i add account "$ACCOUNT" Cluster="$CLUSTER_NAME" \
      Description="test account" Organization=test >&2 \
      || fail "sacctmgr add account failed"
  fi
  if ! sacctmgr -n -P list assoc user=root account="$ACCOUNT" format=user | grep -q root; then
    sacctmgr -i add user root Account="$ACCOUNT" Cluster="$CLUSTER_NAME" >&2 \
      || fail "sacctmgr add user failed"
  fi
  sacctmgr -i modify user root set DefaultAccount="$ACCOUNT" >/dev/null 2>&1 || true
}

ensure_slurmctld() {
  if pid_alive "$STATE/run/slurmctld.pid" slurmctld; then
    log "slurmctld already running (pid $(cat "$STATE/run/slurmctld.pid"))"
  else
    rm -f "$STATE/run/slurmctld.pid"
    slurmctld -f "$STATE/slurm.conf" >>"$STATE/log/slurmctld.log" 2>&1 \
      || fail "slurmctld did not start"
  fi
  WATCH_PID=$(pid_of "$STATE/run/slurmctld.pid") wait_until 30 "slurmctld" scontrol ping \
    || fail "slurmctld not answering"
}

ensure_slurmd() {
  if pid_alive "$STATE/run/slurmd.pid" slurmd; then
    log "slurmd already running (pid $(cat "$STATE/run/slurmd.pid"))"
  else
    rm -f "$STATE/run/slurmd.pid"
    slurmd -f "$STATE/slurm.conf" >>"$STATE/log/slurmd.log" 2>&1 \
      || fail "slurmd did not start"
  fi
}

node_idle() {
  sinfo -h -N -p "$PARTITION" -o '%t' | grep -Eq '^(idle|mix|alloc)'
}

wait_node_idle() {
  WATCH_PID=$(pid_of "$STATE/run/slurmd.pid") \
    wait_until "$WAIT_TIMEOUT" "node in partition $PARTITION to become idle" node_idle \
    || fail "node not idle; sinfo says: $(sinfo -N -p "$PARTITION" 2>&1 | tail -n +2)"
  log "node up: $(sinfo -h -N -p "$PARTITION" -o '%N %t cpus=%c mem=%m')"
}

# --- main --------------------------------------------------------------------

main() {
  [[ $# -eq 1 && -n $1 ]] || usage
  if ((EUID != 0)); then
    log "ERROR: must run as root (the test cluster's daemons and jobs run as root)"
    exit 3
  fi
  STATE=$(realpath -m -- "$1")
  export SLURM_CONF=$STATE/slurm.conf

  install_packages
  local t0
  t0=$(now)
  make_layout
  write_client_wrappers
  timed ensure_munge
  write_slurm_conf
  timed ensure_mariadb
  timed ensure_database
  write_slurmdbd_conf
  timed ensure_slurmdbd
  timed ensure_associations
  timed ensure_slurmctld
  timed ensure_slurmd
  timed wait_node_idle
  log "cluster '$CLUSTER_NAME' ready in $(elapsed "$t0") s (state in $STATE)"
  write_env
}

main "$@"
