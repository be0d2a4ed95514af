#!/usr/bin/env bash
# A single-host Grid Engine (Debian's gridengine 8.1.9) on localhost, for the cluster tests and
# for trying profiles/uge.
#   tools/cluster/gridengine.sh install          debconf-preseeded apt-get when missing (root)
#   tools/cluster/gridengine.sh start STATE_DIR  start sge_qmaster/sge_execd, queue all.q (one slot
#                                                per core; EMPROC_SGE_SLOTS=N sets N)
#   tools/cluster/gridengine.sh stop STATE_DIR   stop the daemons this script started (by pid)
# Clients need `export SGE_ROOT=/var/lib/gridengine SGE_CELL=default`.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

command=${1:?usage: gridengine.sh install|start|stop [STATE_DIR]}
state=${2:-}
node=$(hostname)
export SGE_ROOT=${SGE_ROOT:-/var/lib/gridengine}
export SGE_CELL=${SGE_CELL:-default}
common=$SGE_ROOT/$SGE_CELL/common
slots=${EMPROC_SGE_SLOTS:-$(nproc)}

log_hint() { echo "see $SGE_ROOT/$SGE_CELL/spool/*/messages"; }

install() {
    if command -v qsub >/dev/null && [ -x /usr/sbin/sge_qmaster ] && [ -x /usr/sbin/sge_execd ]; then
        return 0
    fi
    [ "$(id -u)" = 0 ] || { echo "gridengine.sh: installing gridengine needs root" >&2; exit 1; }
    # The packages ask for the master host and cell; answer before they ask.
    for package in gridengine-common gridengine-client gridengine-master; do
        debconf-set-selections <<EOF
$package shared/gridenginemaster string $node
$package shared/gridenginecell string default
$package shared/gridengineconfig boolean true
EOF
    done
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq gridengine-master gridengine-exec gridengine-client >/dev/null
}

# qconf -M*/-A* read a file whose name must be the object's name.
apply_file() { # apply_file OPTION NAME  (content on stdin)
    local dir
    dir=$(mktemp -d)
    cat >"$dir/$2"
    qconf "$1" "$dir/$2" >/dev/null 2>&1
    rm -rf "$dir"
}

configure() {
    # Root submits the test jobs; Grid Engine refuses uid/gid 0 by default.
    qconf -sconf global | sed -e 's/^min_uid .*/min_uid 0/' -e 's/^min_gid .*/min_gid 0/' \
        | apply_file -Mconf global
    # The default 15 s scheduling interval would dominate a test's run time.
    qconf -ssconf | sed -e 's/^schedule_interval .*/schedule_interval 0:0:2/' \
        -e 's/^job_load_adjustments .*/job_load_adjustments NONE/' \
        | apply_file -Msconf sched_configuration
    qconf -sh 2>/dev/null | grep -qx "$node" || qconf -ah "$node" >/dev/null
    qconf -ss 2>/dev/null | grep -qx "$node" || qconf -as "$node" >/dev/null
    if ! qconf -sp smp >/dev/null 2>&1; then
        apply_file -Ap smp <<EOF
pe_name            smp
slots              999
user_lists         NONE
xuser_lists        NONE
start_proc_args    NONE
stop_proc_args     NONE
allocation_rule    \$pe_slots
control_slaves     FALSE
job_is_first_task  TRUE
urgency_slots      min
accounting_summary FALSE
qsort_args         NONE
EOF
    fi
    if ! qconf -sq all.q >/dev/null 2>&1; then
        # Start from Grid Engine's own template so every attribute is present.
        qconf -sq | sed -e "s/^qname .*/qname all.q/" -e "s/^hostlist .*/hostlist $node/" \
            -e "s/^slots .*/slots $slots/" -e "s|^shell .*|shell /bin/bash|" \
            -e "s/^pe_list .*/pe_list smp/" | apply_file -Aq all.q
    fi
    # The queue outlives the daemons (spool): set its slots on every start. More slots than
    # cores oversubscribe this host (scaling runs: benchmarks/bench_cluster_throughput.py).
    qconf -rattr queue slots "$slots" all.q >/dev/null
    # A busy shared test machine must not hold jobs back as "overloaded".
    qconf -rattr queue load_thresholds NONE all.q >/dev/null 2>&1
}

queue_ready() { qstat -f -q all.q 2>/dev/null | grep -q "all.q@$node.*[0-9]/[0-9]*/[0-9]* *[0-9.-]* *lx-amd64 *$"; }

start() {
    need_state
    [ -f "$common/act_qmaster" ] || {
        echo "gridengine.sh: $common/act_qmaster missing: is gridengine-master installed?" >&2
        exit 1
    }
    # This host resolves as both localhost and its name; commlib refuses that without an alias.
    grep -q "^$node localhost" "$common/host_aliases" 2>/dev/null \
        || echo "$node localhost" >>"$common/host_aliases"
    echo "$node" >"$common/act_qmaster"
    local qmaster_spool execd_spool
    qmaster_spool=$(awk '$1 == "qmaster_spool_dir" {print $2}' "$common/bootstrap")
    rm -f "$qmaster_spool/qmaster.pid" # stale after a killed run
    /usr/sbin/sge_qmaster
    wait_for 30 sge_qmaster qstat -g c
    wait_for 30 "qmaster pid file" test -s "$qmaster_spool/qmaster.pid"
    cp "$qmaster_spool/qmaster.pid" "$state/qmaster.pid"
    configure
    execd_spool=$(qconf -sconf global | awk '$1 == "execd_spool_dir" {print $2}')
    rm -f "$execd_spool"/*/execd.pid
    /usr/sbin/sge_execd
    # The execd spools under the name commlib resolved (here: localhost), not always $node.
    wait_for 30 sge_execd compgen -G "$execd_spool/*/execd.pid"
    cat "$execd_spool"/*/execd.pid | tail -n 1 >"$state/execd.pid"
    wait_for 60 "queue all.q@$node" queue_ready
    echo "Grid Engine up: export SGE_ROOT=$SGE_ROOT SGE_CELL=$SGE_CELL"
}

stop() {
    need_state
    stop_pid "$state/execd.pid"
    stop_pid "$state/qmaster.pid"
}

case "$command" in
install) install ;;
start) start ;;
stop) stop ;;
*) echo "usage: gridengine.sh install|start|stop [STATE_DIR]" >&2; exit 2 ;;
esac
