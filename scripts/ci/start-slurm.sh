#!/usr/bin/env bash
# Starts a one-node Slurm cluster on this host for the slurm runner tests: munged, slurmctld and
# slurmd, with no cgroups (proctrack/linuxproc) and no accounting. Idempotent and fast when the
# cluster already answers: it exits as soon as `sinfo` shows the node usable and the config is the
# one this script writes. Installs Debian's slurm-wlm and munge when they are missing (needs root).
#
# Environment: FEDHPC_SLURM_CPUS (CPUs the node advertises, default 16: the test jobs are tiny and
# run side by side, so the node may claim more CPUs than the machine has).
set -euo pipefail

readonly CONF=/etc/slurm/slurm.conf
readonly HOST="$(hostname -s)"
readonly CPUS="${FEDHPC_SLURM_CPUS:-16}"
readonly DEADLINE_S=60

log() { printf 'start-slurm: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

render_conf() {
  cat <<EOF
# Written by fedhpc scripts/ci/start-slurm.sh: a one-node test cluster on ${HOST}.
ClusterName=fedhpc-ci
SlurmctldHost=${HOST}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# Requeued jobs wait cred_expire seconds (default 120) before they may start again.
AuthInfo=cred_expire=10
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
# No cgroups: containers and CI VMs rarely delegate them.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SchedulerType=sched/backfill
# Tests want pending jobs (requeued ones included) started within seconds, not the default minute.
SchedulerParameters=sched_interval=2,bf_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
ReturnToService=2
# Finished jobs stay visible to squeue/scontrol this long, then only the round directory tells.
MinJobAge=30
KillWait=5
JobRequeue=1
OverTimeLimit=0
InactiveLimit=0
Waittime=0
MessageTimeout=10
NodeName=${HOST} CPUs=${CPUS} RealMemory=4096 State=UNKNOWN
PartitionName=debug Nodes=${HOST} Default=YES MaxTime=INFINITE State=UP
EOF
}

node_usable() {
  local state
  state="$(timeout 10 sinfo -h -n "$HOST" -o '%t' 2>/dev/null | head -n1)" || return 1
  case "$state" in idle | mix | alloc | comp) return 0 ;; *) return 1 ;; esac
}

conf_current() { [ -f "$CONF" ] && diff -q <(render_conf) "$CONF" >/dev/null 2>&1; }

if conf_current && node_usable; then
  exit 0
fi

[ "$(id -u)" -eq 0 ] || die "the cluster is not running and starting it needs root"

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null || ! command -v sbatch >/dev/null; then
  log "installing slurm-wlm and munge"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq -o DPkg::Lock::Timeout=600 slurm-wlm munge >/dev/null 2>&1 ||
    { apt-get update -qq && apt-get install -y -qq -o DPkg::Lock::Timeout=600 slurm-wlm munge >/dev/null; }
fi

mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge
chown munge:munge /run/munge
chmod 0755 /run/munge

# munge: a key (the package makes one; create one if it did not), then the daemon.
if [ ! -s /etc/munge/munge.key ]; then
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
fi
chown munge:munge /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  log "starting munged"
  runuser -u munge -- munged --force
fi

restart=0
if ! conf_current; then
  log "writing $CONF for host $HOST"
  render_conf >"$CONF.tmp"
  mv "$CONF.tmp" "$CONF"
  restart=1
fi

# Daemons of ours that run with an old config are stopped, by their pid files, before a restart.
stop_pidfile() {
  local f="$1" pid
  [ -f "$f" ] || return 0
  pid="$(cat "$f")"
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$f"
}
running() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

if [ "$restart" -eq 1 ]; then
  stop_pidfile /run/slurmd.pid
  stop_pidfile /run/slurmctld.pid
fi
if ! running /run/slurmctld.pid; then
  log "starting slurmctld"
  slurmctld
fi
if ! running /run/slurmd.pid; then
  log "starting slurmd"
  slurmd
fi

end=$((SECONDS + DEADLINE_S))
while ! node_usable; do
  state="$(timeout 10 sinfo -h -n "$HOST" -o '%t' 2>/dev/null | head -n1 || true)"
  case "$state" in
    down* | drain* | drng* | fail*) timeout 10 scontrol update NodeName="$HOST" State=RESUME >/dev/null 2>&1 || true ;;
  esac
  if [ "$SECONDS" -ge "$end" ]; then
    log "last node state: ${state:-none}; slurmctld log tail:"
    tail -n 20 /var/log/slurm/slurmctld.log >&2 || true
    tail -n 20 /var/log/slurm/slurmd.log >&2 || true
    die "node $HOST not usable after ${DEADLINE_S} s"
  fi
  sleep 0.5
done
log "cluster up: $(sinfo -h -o '%P %D %t' | tr '\n' ' ')"
