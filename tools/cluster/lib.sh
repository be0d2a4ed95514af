# Shared by the tool scripts in tools/cluster (sourced, not run). They set `command` and
# `state` from their arguments and define `log_hint` (where to look when a daemon fails).

need_state() { # make STATE_DIR absolute and existing, or stop: every command but install needs it
    [ -n "$state" ] || { echo "$(basename "$0") $command: STATE_DIR is required" >&2; exit 2; }
    mkdir -p "$state"
    state=$(cd "$state" && pwd)
}

wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
    local seconds=$1 what=$2
    shift 2
    for _ in $(seq "$seconds"); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 1
    done
    echo "$(basename "$0"): $what did not come up within ${seconds}s ($(log_hint))" >&2
    exit 1
}

stop_pid() { # stop_pid PIDFILE: TERM, then KILL after 10 s
    local file=$1 pid
    [ -s "$file" ] || return 0
    pid=$(cat "$file")
    if kill "$pid" 2>/dev/null; then
        for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$file"
}
