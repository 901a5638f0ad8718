#!/usr/bin/env bash
# slurm_cluster_stop.sh - stop the one-node SLURM cluster started by
# slurm_cluster_start.sh. Cancels its queued/running jobs first, then stops
# slurmd, slurmctld and munged ONLY through their PID files (never by process
# name), after checking /proc/PID/comm.
#
#   bash scripts/slurm_cluster_stop.sh [--purge]
#
# --purge also deletes $NSL_SLURM_DIR and the slurm.conf the start script wrote
# (restoring a backed-up foreign one). Same environment variables as the start
# script (NSL_SLURM_DIR, SLURM_CONF).
set -uo pipefail

D=${NSL_SLURM_DIR:-/tmp/nsl-slurm}
CONF=${SLURM_CONF:-/etc/slurm/slurm.conf}
MARK="# managed by nipype-secondlevel scripts/slurm_cluster_start.sh"
PURGE=0
for a in "$@"; do
  case "$a" in
    --purge) PURGE=1 ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "usage: $0 [--purge]" >&2; exit 2 ;;
  esac
done
export PATH="$PATH:/usr/sbin:/sbin"

alive() {
  local p; p=$(cat "$1" 2>/dev/null) || return 1
  [ -n "$p" ] && [ -d "/proc/$p" ] && [ "$(cat "/proc/$p/comm" 2>/dev/null)" = "$2" ]
}

# stop PIDFILE COMM: TERM the pid if it is alive and really is COMM, wait, then KILL
stop() {
  local f=$1 comm=$2 p
  p=$(cat "$f" 2>/dev/null) || { echo "$comm: no pid file ($f), nothing to stop"; return 0; }
  if ! alive "$f" "$comm"; then
    echo "$comm: pid '$p' from $f is not running (or is not $comm), nothing to stop"
    rm -f "$f"; return 0
  fi
  kill -TERM "$p"
  for _ in $(seq 1 100); do [ -d "/proc/$p" ] || break; sleep 0.1; done
  if [ -d "/proc/$p" ] && [ "$(cat "/proc/$p/comm" 2>/dev/null)" = "$comm" ]; then
    echo "$comm ($p) ignored TERM for 10 s, sending KILL"; kill -KILL "$p"; sleep 0.2
  fi
  rm -f "$f"; echo "$comm: stopped pid $p"
}

# cancel jobs only on OUR cluster (our slurmctld alive and our conf in use)
if alive "$D/run/slurmctld.pid" slurmctld && grep -qF "$MARK" "$CONF" 2>/dev/null \
   && command -v squeue >/dev/null 2>&1; then
  export SLURM_CONF="$CONF"
  jobs=$(squeue -h -o %i 2>/dev/null | tr '\n' ' ')
  if [ -n "${jobs// /}" ]; then
    echo "cancelling jobs: $jobs"
    # shellcheck disable=SC2086
    scancel $jobs 2>/dev/null
    for _ in $(seq 1 50); do
      [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break; sleep 0.2
    done
  fi
fi
stop "$D/run/slurmd.pid"    slurmd
stop "$D/run/slurmctld.pid" slurmctld
stop "$D/munge/munged.pid"  munged

if [ "$PURGE" = 1 ]; then
  case "$D" in
    /|/tmp|/tmp/|/etc*|/usr*|/var|/var/|/root|/home|/home/*) echo "refusing to purge $D" ;;
    *) rm -rf "$D"; echo "removed $D" ;;
  esac
  if grep -qF "$MARK" "$CONF" 2>/dev/null; then
    rm -f "$CONF"; echo "removed $CONF"
    if [ -f "$CONF.orig" ]; then mv "$CONF.orig" "$CONF"; echo "restored $CONF from $CONF.orig"; fi
  fi
fi
exit 0
