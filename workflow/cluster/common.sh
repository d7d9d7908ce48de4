# Helpers shared by start.sh and stop.sh (sourced, not run).
# shellcheck shell=bash

log() { printf '[cluster] %s\n' "$*" >&2; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

usage() {
  echo "usage: $0 STATE_DIR" >&2
  exit 2
}

# running PID: alive and not a zombie (an exited daemon stays a zombie until
# pid 1 reaps it, which can take seconds in a container).
running() {
  kill -0 "$1" 2>/dev/null && ! grep -qs '^State:[[:space:]]*Z' "/proc/$1/status"
}

# pid_of PIDFILE: the pid in PIDFILE, or nothing.
pid_of() { tr -dc '0-9' 2>/dev/null <"$1" || true; }

# live_pid PIDFILE NAME: print the pid if PIDFILE names a live process whose
# command line mentions NAME (a stale pid file may name an unrelated, reused pid).
live_pid() {
  local pidfile=$1 name=$2 pid
  [[ -s $pidfile ]] || return 1
  pid=$(pid_of "$pidfile")
  [[ -n $pid ]] && running "$pid" || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$name" || return 1
  echo "$pid"
}
