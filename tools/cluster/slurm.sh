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
# slurmctld logs every finished job (submit, start and end times) to STATE_DIR/jobcomp.log.
# Scaling runs (benchmarks/bench_cluster_throughput.py) set, before `start`:
#   EMPROC_SLURM_NODES=N  N node names (<hostname>-1..N), each its own slurmd on this host
#   EMPROC_SLURM_CPUS=C   CPUs per node (default: all cores; more oversubscribes this host)
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

command=${1:?usage: slurm.sh install|start|stop [STATE_DIR]}
state=${2:-}
node=$(hostname)
nodes=${EMPROC_SLURM_NODES:-1}

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

node_names() { # the slurmd node names: this host, or <hostname>-1..N for a scaling run
    if [ "$nodes" = 1 ]; then echo "$node"; else seq -f "$node-%g" "$nodes"; fi
}

node_lines() {
    local cpus=$1 mem_mb=$2
    if [ "$nodes" = 1 ]; then
        echo "NodeName=$node CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN"
        echo "PartitionName=emproc Nodes=$node Default=YES MaxTime=INFINITE State=UP"
    else
        # Several slurmds on one host: each listens on its own port (slurmd -N name).
        echo "NodeName=$node-[1-$nodes] NodeHostname=$node Port=[17001-$((17000 + nodes))]" \
            "CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN"
        echo "PartitionName=emproc Nodes=$node-[1-$nodes] Default=YES MaxTime=INFINITE State=UP"
    fi
}

write_conf() {
    local cpus mem_mb overrides=""
    cpus=${EMPROC_SLURM_CPUS:-$(nproc)}
    # Leave 10 % of RAM to the system so a node never drains for "low RealMemory"; several
    # nodes on one host share it.
    mem_mb=$(awk -v n="$nodes" '/MemTotal/ {print int($2 / 1024 * 0.9 / n)}' /proc/meminfo)
    # Configured CPUs beyond this host's cores (oversubscription) would drain the node.
    [ "$cpus" -le "$(nproc)" ] || overrides="SlurmdParameters=config_overrides"
    mkdir -p "$state/state" "$state/spool" "$state/log"
    cat >"$state/slurm.conf" <<EOF
# Written by tools/cluster/slurm.sh: one node, no accounting, for tests only.
ClusterName=emproc
SlurmctldHost=$node
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$state/state
SlurmdSpoolDir=$state/spool/%n
SlurmctldPidFile=$state/slurmctld.pid
SlurmdPidFile=$state/slurmd-%n.pid
SlurmctldLogFile=$state/log/slurmctld.log
SlurmdLogFile=$state/log/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=$state/jobcomp.log
MpiDefault=none
ReturnToService=2
MinJobAge=3600
SchedulerType=sched/backfill
SlurmctldTimeout=30
SlurmdTimeout=30
$overrides
$(node_lines "$cpus" "$mem_mb")
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

nodes_up() { # every node idle, or already running jobs
    [ "$(sinfo -h -N -o '%T' | grep -c -E '^(idle|mixed|allocated)')" -ge "$nodes" ]
}

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
    local name
    for name in $(node_names); do
        mkdir -p "$state/spool/$name"
        if [ "$nodes" = 1 ]; then slurmd; else slurmd -N "$name"; fi
    done
    wait_for 60 "$nodes node(s)" nodes_up
    echo "SLURM up: export SLURM_CONF=$SLURM_CONF"
}

stop() {
    need_state
    local pidfile
    for pidfile in "$state"/slurmd-*.pid; do stop_pid "$pidfile"; done
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
