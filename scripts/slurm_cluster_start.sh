#!/usr/bin/env bash
# slurm_cluster_start.sh - bring up a real single-node SLURM cluster on this
# machine (Debian/Ubuntu, run as root, no systemd or cgroups needed), for the
# tests of nipype_secondlevel.runtime.slurm and for CI.
#
# Idempotent: installs slurm-wlm + munge with apt-get if they are missing,
# (re)writes slurm.conf, starts only the daemons that are not already running
# (munged, slurmctld, slurmd), waits until the node is idle, and prints ONE
# line on stdout ("SLURM cluster up: ...").  Progress goes to stderr.
#
#   bash scripts/slurm_cluster_start.sh
#   bash scripts/slurm_cluster_stop.sh [--purge]
#
# Environment:
#   NSL_SLURM_DIR   state/spool/log/pid dir          (default /tmp/nsl-slurm)
#   SLURM_CONF      slurm.conf to write and use      (default /etc/slurm/slurm.conf,
#                   which every SLURM client reads without any env var)
#   NSL_SLURM_WAIT  seconds to wait for the node to become idle (default 60)
#
# Exit status: 0 up; 2 not root; 3 packages missing and cannot be installed;
# 1 any other failure (message on stderr, with the log to look at).
#
# munged runs as user "munge" on a PRIVATE socket ($NSL_SLURM_DIR/munge), so it
# never collides with a system munged; slurm.conf points at it via AuthInfo.
set -euo pipefail

D=${NSL_SLURM_DIR:-/tmp/nsl-slurm}
CONF=${SLURM_CONF:-/etc/slurm/slurm.conf}
WAIT=${NSL_SLURM_WAIT:-60}
MARK="# managed by nipype-secondlevel scripts/slurm_cluster_start.sh"
ms() { echo $(( $(date +%s%N) / 1000000 )); }
secs() { local d=$(( $(ms) - $1 )); printf '%d.%02d' $((d / 1000)) $(( (d % 1000) / 10 )); }
T0=$(ms)
log() { printf '[slurm-start %6ss] %s\n' "$(secs "$T0")" "$*" >&2; }
die() { local rc=${2:-1}; log "ERROR: $1"; echo "SLURM cluster NOT up: $1" >&2; exit "$rc"; }
tail_log() { [ -f "$1" ] && { log "last lines of $1:"; tail -n 15 "$1" >&2; }; return 0; }

case "$D" in /*) ;; *) die "NSL_SLURM_DIR must be an absolute path (got '$D')" ;; esac
[ "$(id -u)" = 0 ] || die "must run as root (uid $(id -u)): the daemons and apt-get need it" 2

# ---------------------------------------------------------------- 1. install
have_all() {
  for c in slurmctld slurmd sbatch squeue scontrol sinfo munged munge unmunge; do
    command -v "$c" >/dev/null 2>&1 || [ -x "/usr/sbin/$c" ] || return 1
  done
}
export PATH="$PATH:/usr/sbin:/sbin"
if ! have_all; then
  command -v apt-get >/dev/null 2>&1 \
    || die "slurm-wlm/munge are not installed and apt-get is not available" 3
  log "installing slurm-wlm + munge with apt-get (--no-install-recommends)"
  # keep the packages' postinst scripts from starting system services
  added_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d; added_policy=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  rc=0
  { apt-get update -qq && apt-get install -y -qq --no-install-recommends slurm-wlm munge; } \
    >"${TMPDIR:-/tmp}/nsl-slurm-apt.log" 2>&1 || rc=$?
  if [ "$added_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
  if [ "$rc" != 0 ]; then
    tail_log "${TMPDIR:-/tmp}/nsl-slurm-apt.log"
    die "apt-get install slurm-wlm munge failed (rc $rc)" 3
  fi
  have_all || die "slurm-wlm/munge installed but some commands are still missing" 3
  log "installed"
fi
log "versions: $(slurmd -V) / $(munged -V 2>&1 | head -1)"

# ------------------------------------------------------------- 2. directories
mkdir -p "$D"/{state,spool,log,run} "$D/munge"
chmod 755 "$D"
# munged runs as user munge: it must own its dir (log/pid/seed/socket), and it
# insists on o+x for the socket dir ("execute permissions for all required")
chown munge:munge "$D/munge"; chmod 755 "$D/munge"
if [ ! -s /etc/munge/munge.key ]; then
  log "creating munge key"
  mkdir -p /etc/munge; chown munge:munge /etc/munge; chmod 700 /etc/munge
  runuser -u munge -- mungekey --create --keyfile=/etc/munge/munge.key \
    || die "could not create /etc/munge/munge.key"
fi
chown munge:munge /etc/munge/munge.key; chmod 600 /etc/munge/munge.key

# ---------------------------------------------------------------- 3. config
HOST=$(hostname -s)
[ -n "$HOST" ] || die "hostname -s returned nothing"
# real hardware as slurmd sees it: "CPUs=2 Boards=1 ... RealMemory=24105"
HW=$(slurmd -C 2>/dev/null | head -1 | sed -E 's/^NodeName=[^ ]+ //')
[ -n "$HW" ] || die "slurmd -C printed no hardware description"
if [ -e "$CONF" ] && ! grep -qF "$MARK" "$CONF"; then
  log "backing up foreign $CONF to $CONF.orig"; cp -a "$CONF" "$CONF.orig"
fi
mkdir -p "$(dirname "$CONF")"
NEWCONF=$(mktemp)
cat > "$NEWCONF" <<EOC
$MARK (state in $D)
ClusterName=nslci
# addresses given explicitly: no DNS or /etc/hosts entry needed
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$D/munge/munge.socket.2
MpiDefault=none
# no cgroups, no systemd
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
# job completion log: lets 'sacct -c' list finished jobs without slurmdbd
JobCompType=jobcomp/filetxt
JobCompLoc=$D/log/jobcomp.txt
SwitchType=switch/none
SchedulerType=sched/backfill
# batch_sched_delay=0: batch jobs start ~1 s after submission (default 3 s each)
SchedulerParameters=batch_sched_delay=0
# cancel jobs whose afterok dependency failed, else SLURMGraph leaves them
# PENDING (DependencyNeverSatisfied) forever. On 22.05 this is ignored in
# SchedulerParameters: it must be in DependencyParameters.
DependencyParameters=kill_invalid_depend
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# memory is a consumable resource (so --mem is honoured in scheduling); jobs
# without --mem get 500 MB per CPU instead of the whole node
DefMemPerCPU=500
ReturnToService=2
MailProg=/bin/true
SlurmctldPort=6817
SlurmdPort=6818
SlurmctldPidFile=$D/run/slurmctld.pid
SlurmdPidFile=$D/run/slurmd.pid
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool
SlurmctldLogFile=$D/log/slurmctld.log
SlurmdLogFile=$D/log/slurmd.log
InactiveLimit=0
KillWait=5
MinJobAge=300
SlurmctldTimeout=30
SlurmdTimeout=30
Waittime=0
NodeName=$HOST NodeAddr=127.0.0.1 NodeHostname=$HOST $HW State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOC
conf_changed=0
if ! cmp -s "$NEWCONF" "$CONF"; then cp "$NEWCONF" "$CONF"; chmod 644 "$CONF"; conf_changed=1; fi
rm -f "$NEWCONF"
export SLURM_CONF="$CONF"

# --------------------------------------------------------------- 4. daemons
# alive PIDFILE COMM -> 0 if the pid in PIDFILE is running and is named COMM
alive() {
  local p; p=$(cat "$1" 2>/dev/null) || return 1
  [ -n "$p" ] && [ -d "/proc/$p" ] && [ "$(cat "/proc/$p/comm" 2>/dev/null)" = "$2" ]
}
# pid_of PIDFILE -> pid once the forked daemon has written its PID file (<= 5 s)
pid_of() {
  for _ in $(seq 1 50); do [ -s "$1" ] && { cat "$1"; return 0; }; sleep 0.1; done
  echo "?"
}
started=()
TD=$(ms)
MSOCK="$D/munge/munge.socket.2"
if alive "$D/munge/munged.pid" munged; then
  log "munged already running (pid $(cat "$D/munge/munged.pid"))"
else
  rm -f "$MSOCK" "$MSOCK.lock" "$D/munge/munged.pid"
  runuser -u munge -- /usr/sbin/munged --socket="$MSOCK" \
    --pid-file="$D/munge/munged.pid" --log-file="$D/munge/munged.log" \
    --seed-file="$D/munge/munged.seed" --key-file=/etc/munge/munge.key \
    || { tail_log "$D/munge/munged.log"; die "munged did not start, see $D/munge/munged.log"; }
  log "started munged (pid $(pid_of "$D/munge/munged.pid"))"; started+=(munged)
fi
munge -S "$MSOCK" -n | unmunge -S "$MSOCK" >/dev/null \
  || { tail_log "$D/munge/munged.log"; die "munge round-trip failed, see $D/munge/munged.log"; }

if alive "$D/run/slurmctld.pid" slurmctld; then
  log "slurmctld already running (pid $(cat "$D/run/slurmctld.pid"))"
  if [ "$conf_changed" = 1 ]; then log "config changed: scontrol reconfigure"; scontrol reconfigure || true; fi
else
  rm -f "$D/run/slurmctld.pid"
  /usr/sbin/slurmctld -f "$CONF" \
    || { tail_log "$D/log/slurmctld.log"; die "slurmctld did not start, see $D/log/slurmctld.log"; }
  log "started slurmctld (pid $(pid_of "$D/run/slurmctld.pid"))"; started+=(slurmctld)
fi
for _ in $(seq 1 100); do scontrol -Q ping 2>/dev/null | grep -q UP && break; sleep 0.1; done
scontrol -Q ping 2>/dev/null | grep -q UP \
  || { tail_log "$D/log/slurmctld.log"; die "slurmctld is not answering, see $D/log/slurmctld.log"; }

if alive "$D/run/slurmd.pid" slurmd; then
  log "slurmd already running (pid $(cat "$D/run/slurmd.pid"))"
else
  rm -f "$D/run/slurmd.pid"
  /usr/sbin/slurmd -f "$CONF" \
    || { tail_log "$D/log/slurmd.log"; die "slurmd did not start, see $D/log/slurmd.log"; }
  log "started slurmd (pid $(pid_of "$D/run/slurmd.pid"))"; started+=(slurmd)
fi

# ------------------------------------------------------- 5. wait until idle
state=""
for i in $(seq 1 $((WAIT * 5))); do
  state=$(sinfo -h -n "$HOST" -o %t 2>/dev/null | head -1 | tr -d '*~#!%$@^-')
  case "$state" in
    idle|mix|alloc) break ;;
    down|drain|drng|fail|failg|inval|unk)   # stale state from an earlier run
      if [ $((i % 10)) = 1 ]; then scontrol update NodeName="$HOST" State=RESUME >/dev/null 2>&1 || true; fi ;;
  esac
  sleep 0.2
done
case "$state" in
  idle|mix|alloc) ;;
  *) sinfo -R >&2 || true; tail_log "$D/log/slurmd.log"
     die "node $HOST is '$state' after ${WAIT}s, see $D/log/" ;;
esac
cpus=$(sinfo -h -n "$HOST" -o %c 2>/dev/null | head -1)
mem=$(sinfo -h -n "$HOST" -o %m 2>/dev/null | head -1)
log "daemons -> ready in $(secs "$TD")s"
echo "SLURM cluster up: node $HOST $state (${cpus} CPUs, ${mem} MB), partition debug," \
     "started [${started[*]:-none}], conf $CONF, state $D ($(secs "$T0")s)"
