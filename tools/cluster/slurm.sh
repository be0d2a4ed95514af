#!/usr/bin/env bash
# A single-node SLURM cluster on localhost, for the cluster tests and for trying profiles/slurm.
#   tools/cluster/slurm.sh install            apt-get slurm-wlm + munge when missing (root)
#   tools/cluster/slurm.sh start STATE_DIR    write STATE_DIR/slurm.conf, start munged/slurmctld/slurmd
#   tools/cluster/slurm.sh stop STATE_DIR     stop the daemons this script started (by pid file)
# Clients need `export SLURM_CONF=STATE_DIR/slurm.conf`. Inside jobs, the Snakemake SLURM plugin
# drops every SLURM_* variable (SLURM_CONF too) before calling srun, so the config is also linked
# at Debian's default /etc/slurm/slurm.conf unless a site config already lives there.
# No accounting database: the Snakemake plugin must poll with `squeue` (profile override
# `slurm-status-command: squeue`), and MinJobAge keeps finished jobs visible to squeue.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

command=${1:?usage: slurm.sh install|start|stop [STATE_DIR]}
state=${2:-}
node=$(hostname)

log_hint() { echo "logs in $state/log"; }

install() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null \
        && command -v sbatch >/dev/null && command -v munged >/dev/null; then
        return 0
    fi
    [ "$(id -u)" = 0 ] || { echo "slurm.sh: installing slurm-wlm needs root" >&2; exit 1; }
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends slurm-wlm slurm-client munge >/dev/null
}

write_conf() {
    local cpus mem_mb
    cpus=$(nproc)
    # Leave 10 % of RAM to the system so the node never drains for "low RealMemory".
    mem_mb=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
    mkdir -p "$state/state" "$state/spool" "$state/log"
    cat >"$state/slurm.conf" <<EOF
# Written by tools/cluster/slurm.sh: one node, no accounting, for tests only.
ClusterName=emproc
SlurmctldHost=$node
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$state/state
SlurmdSpoolDir=$state/spool
SlurmctldPidFile=$state/slurmctld.pid
SlurmdPidFile=$state/slurmd.pid
SlurmctldLogFile=$state/log/slurmctld.log
SlurmdLogFile=$state/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
MinJobAge=3600
SchedulerType=sched/backfill
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName=$node CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=emproc Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
}

start_munge() {
    if [ -S /run/munge/munge.socket.2 ] && munge -n </dev/null >/dev/null 2>&1; then
        return 0 # a working munged is already there: use it, do not own it
    fi
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    if [ ! -s /etc/munge/munge.key ]; then
        if command -v mungekey >/dev/null; then
            mungekey --create --keyfile=/etc/munge/munge.key
        else
            dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
        fi
        chown munge:munge /etc/munge/munge.key
        chmod 400 /etc/munge/munge.key
    fi
    runuser -u munge -- /usr/sbin/munged
    cp /run/munge/munged.pid "$state/munged.pid"
}

node_idle() { sinfo -h -N -n "$node" -o '%T' | grep -q -E '^(idle|mixed|allocated)'; }

start() {
    need_state
    write_conf
    export SLURM_CONF=$state/slurm.conf
    mkdir -p /etc/slurm
    if [ ! -e /etc/slurm/slurm.conf ] || [ -L /etc/slurm/slurm.conf ]; then
        ln -sfn "$SLURM_CONF" /etc/slurm/slurm.conf
    fi
    start_munge
    # -c: clean start, no job state from an earlier run of the tests.
    slurmctld -c
    wait_for 30 slurmctld scontrol ping
    slurmd
    wait_for 60 "node $node" node_idle
    echo "SLURM up: export SLURM_CONF=$SLURM_CONF"
}

stop() {
    need_state
    stop_pid "$state/slurmd.pid"
    stop_pid "$state/slurmctld.pid"
    stop_pid "$state/munged.pid"
    if [ "$(readlink /etc/slurm/slurm.conf 2>/dev/null)" = "$state/slurm.conf" ]; then
        rm -f /etc/slurm/slurm.conf
    fi
}

case "$command" in
install) install ;;
start) start ;;
stop) stop ;;
*) echo "usage: slurm.sh install|start|stop [STATE_DIR]" >&2; exit 2 ;;
esac
