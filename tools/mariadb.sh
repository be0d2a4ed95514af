#!/usr/bin/env bash
# Make a MariaDB server available for the ISPyB tests and print its SQLAlchemy URL.
#
# If something answers at 127.0.0.1:3306 (root, no password) that server is used. Otherwise a
# private mariadbd (Debian's mariadb-server, installed with apt-get if missing) is started on a
# temporary data directory and a free port, owned by this shell's caller; stop it with
#   tools/mariadb.sh stop
# Usage:  source tools/mariadb.sh           # exports EMPROC_TEST_MYSQL_URL (as `make test` does)
#         eval "$(tools/mariadb.sh env)"   # the same, from any shell
#         tools/mariadb.sh url             # prints the URL only
#         tools/mariadb.sh stop            # stops a private server started earlier

if [[ "${BASH_SOURCE[0]}" != "$0" ]]; then
    # sourced: run as a child (its `set -e` and exits stay there) and export the result
    EMPROC_TEST_MYSQL_URL="$(bash "${BASH_SOURCE[0]}" url)" || return 1
    export EMPROC_TEST_MYSQL_URL
    return 0
fi
set -euo pipefail

STATE_DIR="${EMPROC_MARIADB_DIR:-${TMPDIR:-/tmp}/emproc-mariadb-$(id -u)}"
DEFAULT_URL="mysql+pymysql://root@127.0.0.1:3306"

answers() {  # host port
    python3 - "$1" "$2" <<'PY'
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1).close()
except OSError:
    sys.exit(1)
PY
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

start_private() {
    if [[ -f "$STATE_DIR/port" ]] && answers 127.0.0.1 "$(cat "$STATE_DIR/port")"; then
        echo "mysql+pymysql://root@127.0.0.1:$(cat "$STATE_DIR/port")"
        return
    fi
    if ! command -v mariadbd >/dev/null && [[ ! -x /usr/sbin/mariadbd ]]; then
        echo "installing mariadb-server (Debian)" >&2
        apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mariadb-server >&2
    fi
    local port datadir
    port="$(free_port)"
    datadir="$STATE_DIR/data"
    rm -rf "$STATE_DIR" && mkdir -p "$datadir"
    local user_args=()
    [[ "$(id -u)" == 0 ]] && user_args=(--user=root)
    mariadb-install-db --no-defaults --datadir="$datadir" --auth-root-authentication-method=normal \
        "${user_args[@]}" >"$STATE_DIR/install.log" 2>&1
    /usr/sbin/mariadbd --no-defaults --datadir="$datadir" --port="$port" --bind-address=127.0.0.1 \
        --socket="$STATE_DIR/mysqld.sock" --pid-file="$STATE_DIR/mysqld.pid" \
        --skip-name-resolve --innodb-buffer-pool-size=64M --innodb-log-file-size=16M \
        "${user_args[@]}" >"$STATE_DIR/server.log" 2>&1 &
    echo "$port" >"$STATE_DIR/port"
    for _ in $(seq 100); do
        answers 127.0.0.1 "$port" && { echo "mysql+pymysql://root@127.0.0.1:$port"; return; }
        sleep 0.2
    done
    echo "private mariadbd did not start; see $STATE_DIR/server.log" >&2
    exit 1
}

url() {
    if [[ -n "${EMPROC_TEST_MYSQL_URL:-}" ]]; then
        echo "$EMPROC_TEST_MYSQL_URL"
    elif answers 127.0.0.1 3306; then
        echo "$DEFAULT_URL"
    else
        start_private
    fi
}

case "${1:-env}" in
    url) url ;;
    private) start_private ;;  # always a private server (to test this script)
    env) echo "export EMPROC_TEST_MYSQL_URL=$(url)" ;;
    stop)
        if [[ -f "$STATE_DIR/mysqld.pid" ]]; then
            kill "$(cat "$STATE_DIR/mysqld.pid")" && rm -f "$STATE_DIR/port"
        fi ;;
    *) echo "usage: $0 [env|url|stop]" >&2; exit 2 ;;
esac
