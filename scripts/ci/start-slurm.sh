#!/usr/bin/env bash
# Starts a one-node Slurm cluster on this host for the slurm runner tests: munged, MariaDB, slurmdbd,
# slurmctld and slurmd, with no cgroups (proctrack/linuxproc), job accounting through slurmdbd (sacct
# shows each job's elapsed time and allocated TRES, gres/gpu included; no AccountingStorageEnforce, no
# jobacct_gather) and count-only GPUs (gres/gpu with a count and no device files, so nothing is bound
# to a real GPU). Idempotent and fast when the cluster already answers: it exits as soon as `sinfo`
# shows the node usable, MariaDB and slurmdbd run, and the configs (slurm.conf, gres.conf,
# slurmdbd.conf) are the ones this script writes; a cluster running an older config is restarted.
# Installs Debian's slurm-wlm, munge, slurmdbd and mariadb-server when they are missing (needs root).
# MariaDB runs without systemd (mariadbd in the background, log in /var/log/slurm/mariadb.log).
#
# Environment: FEDHPC_SLURM_CPUS (CPUs the node advertises, default 16: the test jobs are tiny and
# run side by side, so the node may claim more CPUs than the machine has); FEDHPC_SLURM_GPUS
# (count-only GPUs the node advertises, default 4); FEDHPC_SLURM_ACCOUNTING=0 (no MariaDB or
# slurmdbd: accounting_storage/none, so sacct fails; the GPUs stay).
set -euo pipefail

readonly CONF=/etc/slurm/slurm.conf
readonly HOST="$(hostname -s)"
readonly CPUS="${FEDHPC_SLURM_CPUS:-16}"
readonly GPUS="${FEDHPC_SLURM_GPUS:-4}"
readonly GPU_DIR=/var/spool/slurmd/fake-gpu
readonly ACCOUNTING="${FEDHPC_SLURM_ACCOUNTING:-1}"
readonly GRES_CONF=/etc/slurm/gres.conf
readonly DBD_CONF=/etc/slurm/slurmdbd.conf
# slurmdbd's MariaDB login: a local test database, so a fixed password is fine.
readonly DB_NAME=slurm_acct_db
readonly DB_USER=slurm
readonly DB_PASS=fedhpc-ci-slurmdbd
readonly DEADLINE_S=60

log() { printf 'start-slurm: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ "$GPUS" =~ ^[1-9][0-9]*$ ]] || die "FEDHPC_SLURM_GPUS must be a positive count, not '$GPUS'"

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
$(if [ "$ACCOUNTING" = 0 ]; then
    echo 'AccountingStorageType=accounting_storage/none'
  else
    echo 'AccountingStorageType=accounting_storage/slurmdbd'
    echo 'AccountingStorageHost=localhost'
    # sacct's AllocTRES lists gres/gpu only when it is tracked (slurmctld refuses this without slurmdbd).
    echo 'AccountingStorageTRES=gres/gpu'
  fi)
GresTypes=gpu
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
NodeName=${HOST} CPUs=${CPUS} RealMemory=4096 Gres=gpu:${GPUS} State=UNKNOWN
PartitionName=debug Nodes=${HOST} Default=YES MaxTime=INFINITE State=UP
EOF
}

# Count-only GPUs. Slurm 22.05's gres/gpu drops a GPU without File= ("Removing file-less GPU"), and
# File= must be a character or block device, so each GPU is a link to /dev/null. With task/none
# nothing is bound; a job only gets CUDA_VISIBLE_DEVICES (0,1,... of the GPUs it was given).
render_gres() {
  cat <<EOF
# Written by fedhpc scripts/ci/start-slurm.sh: count-only GPUs (links to /dev/null).
NodeName=${HOST} Name=gpu File=${GPU_DIR}/gpu[0-$((GPUS - 1))]
EOF
}

render_dbd() {
  cat <<EOF
# Written by fedhpc scripts/ci/start-slurm.sh: slurmdbd for the one-node test cluster.
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
PidFile=/run/slurmdbd.pid
LogFile=/var/log/slurm/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageLoc=${DB_NAME}
StorageUser=${DB_USER}
StoragePass=${DB_PASS}
EOF
}

node_usable() {
  local state
  state="$(timeout 10 sinfo -h -n "$HOST" -o '%t' 2>/dev/null | head -n1)" || return 1
  case "$state" in idle | mix | alloc | comp) return 0 ;; *) return 1 ;; esac
}

same() { [ -f "$2" ] && diff -q <("$1") "$2" >/dev/null 2>&1; }
conf_current() {
  same render_conf "$CONF" && same render_gres "$GRES_CONF" &&
    { [ "$ACCOUNTING" = 0 ] || same render_dbd "$DBD_CONF"; }
}
running() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
mariadb_up() { timeout 10 mariadb-admin --connect-timeout=2 ping >/dev/null 2>&1; }
accounting_up() { [ "$ACCOUNTING" = 0 ] || { running /run/slurmdbd.pid && mariadb_up; }; }

# (sinfo waits about 10 s for a slurmctld that is not there, hence the pid file checks first.)
if conf_current && accounting_up && running /run/slurmctld.pid && running /run/slurmd.pid && node_usable; then
  exit 0
fi

[ "$(id -u)" -eq 0 ] || die "the cluster is not running and starting it needs root"

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null || ! command -v sbatch >/dev/null; then
  log "installing slurm-wlm and munge"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq -o DPkg::Lock::Timeout=600 slurm-wlm munge >/dev/null 2>&1 ||
    { apt-get update -qq && apt-get install -y -qq -o DPkg::Lock::Timeout=600 slurm-wlm munge >/dev/null; }
fi
if [ "$ACCOUNTING" != 0 ] && { ! command -v slurmdbd >/dev/null || ! command -v mariadbd >/dev/null ||
  ! command -v mariadb-install-db >/dev/null || ! command -v sacctmgr >/dev/null; }; then
  log "installing slurmdbd and mariadb-server"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq -o DPkg::Lock::Timeout=600 slurmdbd mariadb-server >/dev/null 2>&1 ||
    { apt-get update -qq && apt-get install -y -qq -o DPkg::Lock::Timeout=600 slurmdbd mariadb-server >/dev/null; }
  log "installed in ${SECONDS} s"
fi

mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd "$GPU_DIR" /var/log/slurm /run/munge
for ((i = 0; i < GPUS; i++)); do ln -sfn /dev/null "$GPU_DIR/gpu$i"; done
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
  log "writing $CONF and $GRES_CONF for host $HOST$([ "$ACCOUNTING" = 0 ] && echo ' (no accounting)' || echo " and $DBD_CONF")"
  render_conf >"$CONF.tmp" && mv "$CONF.tmp" "$CONF"
  render_gres >"$GRES_CONF.tmp" && mv "$GRES_CONF.tmp" "$GRES_CONF"
  if [ "$ACCOUNTING" != 0 ]; then
    # slurmdbd refuses a config that others may read (it holds the database password).
    (umask 077 && render_dbd >"$DBD_CONF.tmp")
    chown root:root "$DBD_CONF.tmp"
    chmod 0600 "$DBD_CONF.tmp"
    mv "$DBD_CONF.tmp" "$DBD_CONF"
  fi
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
# Waits until `$@` succeeds, for DEADLINE_S at most; on timeout prints the tail of log $1 and fails.
wait_for() {
  local what="$1" logfile="$2" end=$((SECONDS + DEADLINE_S))
  shift 2
  until "$@"; do
    if [ "$SECONDS" -ge "$end" ]; then
      log "$logfile tail:"
      tail -n 20 "$logfile" >&2 || true
      die "$what does not answer after ${DEADLINE_S} s"
    fi
    sleep 0.5
  done
}
sacctmgr_answers() { timeout 10 sacctmgr -n show cluster >/dev/null 2>&1; }

if [ "$restart" -eq 1 ]; then
  stop_pidfile /run/slurmd.pid
  stop_pidfile /run/slurmctld.pid
  stop_pidfile /run/slurmdbd.pid
fi

if [ "$ACCOUNTING" != 0 ]; then
  # MariaDB without systemd: its own session, no stdio of ours (a caller waiting on our pipes would
  # otherwise wait for it too).
  if ! mariadb_up; then
    log "starting MariaDB"
    mkdir -p /run/mysqld
    chown mysql:mysql /run/mysqld
    if [ ! -d /var/lib/mysql/mysql ]; then
      mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/var/log/slurm/mariadb-install.log 2>&1 ||
        { tail -n 20 /var/log/slurm/mariadb-install.log >&2; die "mariadb-install-db failed"; }
    fi
    setsid mariadbd --user=mysql --pid-file=/run/mysqld/mysqld.pid </dev/null >>/var/log/slurm/mariadb.log 2>&1 &
    wait_for MariaDB /var/log/slurm/mariadb.log mariadb_up
  fi
  # Root logs in through the unix socket; the statements are idempotent.
  mariadb -u root <<EOF
CREATE DATABASE IF NOT EXISTS ${DB_NAME};
CREATE USER IF NOT EXISTS '${DB_USER}'@'localhost' IDENTIFIED BY '${DB_PASS}';
ALTER USER '${DB_USER}'@'localhost' IDENTIFIED BY '${DB_PASS}';
GRANT ALL PRIVILEGES ON ${DB_NAME}.* TO '${DB_USER}'@'localhost';
EOF
  if ! running /run/slurmdbd.pid; then
    log "starting slurmdbd"
    slurmdbd
  fi
  wait_for slurmdbd /var/log/slurm/slurmdbd.log sacctmgr_answers
  # Adding the cluster also adds the account root with root's association, so jobs root submits
  # are recorded under it.
  clusters="$(timeout 10 sacctmgr -n -P show cluster format=cluster)"
  if ! grep -qx fedhpc-ci <<<"$clusters"; then
    log "registering cluster fedhpc-ci with slurmdbd"
    timeout 30 sacctmgr -i add cluster fedhpc-ci >/dev/null
  fi
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
log "cluster up in ${SECONDS} s: $(sinfo -h -o '%P %D %t %G' | tr '\n' ' ')"
