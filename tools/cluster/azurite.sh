#!/usr/bin/env bash
# A local Azure Blob emulator (azurite, from npm) for the storage round-trip test of profiles/azure.
#   tools/cluster/azurite.sh install            npm install -g azurite when missing
#   tools/cluster/azurite.sh start STATE_DIR    blob service on 127.0.0.1:${AZURITE_BLOB_PORT:-10000}
#   tools/cluster/azurite.sh stop STATE_DIR     stop the emulator this script started (by pid)
# Clients: export AZURITE_CONNECTION_STRING (printed by `start`, also in STATE_DIR/connection).
set -euo pipefail

command=${1:?usage: azurite.sh install|start|stop [STATE_DIR]}
state=${2:-}
port=${AZURITE_BLOB_PORT:-10000}
# Azurite's documented development account (public, not a secret).
account=devstoreaccount1
key='Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

install() {
    command -v azurite-blob >/dev/null && return 0
    command -v npm >/dev/null || {
        [ "$(id -u)" = 0 ] || { echo "azurite.sh: npm missing (apt-get install npm)" >&2; exit 1; }
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null
    }
    npm install -g --silent azurite >/dev/null
}

start() {
    need_state
    mkdir -p "$state/data"
    # --skipApiVersionCheck: the Python SDK speaks a newer API version than azurite 3.x knows.
    nohup azurite-blob --skipApiVersionCheck --silent --location "$state/data" \
        --blobHost 127.0.0.1 --blobPort "$port" >"$state/azurite.log" 2>&1 &
    echo $! >"$state/azurite.pid"
    for _ in $(seq 30); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            local connection="DefaultEndpointsProtocol=http;AccountName=$account;AccountKey=$key;BlobEndpoint=http://127.0.0.1:$port/$account;"
            echo "$connection" >"$state/connection"
            echo "azurite up: export AZURITE_CONNECTION_STRING='$connection'"
            return 0
        fi
        kill -0 "$(cat "$state/azurite.pid")" 2>/dev/null || break
        sleep 1
    done
    echo "azurite.sh: azurite-blob did not come up (log: $state/azurite.log)" >&2
    exit 1
}

stop() {
    need_state
    stop_pid "$state/azurite.pid"
}

case "$command" in
install) install ;;
start) start ;;
stop) stop ;;
*) echo "usage: azurite.sh install|start|stop [STATE_DIR]" >&2; exit 2 ;;
esac
