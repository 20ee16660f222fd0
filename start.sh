#!/usr/bin/env bash
# Set up (first run) and start Eva with the embedded offline models on http://127.0.0.1:8000.
# Arguments go to `eva serve`, e.g. ./start.sh --port 8001
set -euo pipefail
cd "$(dirname "$0")"
scripts/install.sh

# Not exec'd: if a native engine ever kills the server with a signal, say so in words.
# Ctrl-C, SIGTERM and SIGHUP reach the server as SIGTERM, its graceful shutdown.
.venv/bin/eva serve "$@" &
server=$!
trap 'kill -TERM "$server" 2>/dev/null || true' INT TERM HUP
while :; do
    # wait returns early when a trapped signal arrives; the server is then still stopping
    status=0
    wait "$server" || status=$?
    kill -0 "$server" 2>/dev/null || break
done
if [ "$status" -gt 128 ] && [ "$status" -lt 160 ]; then
    signal_name="$(kill -l "$((status - 128))" 2>/dev/null || echo "$((status - 128))")"
    if [ "$signal_name" != TERM ] && [ "$signal_name" != INT ]; then
        echo "eva: the server died by SIG$signal_name in native code; the Python stack above" \
             "names the engine. Run .venv/bin/eva doctor to see which engine fails on this" \
             "machine and what to do." >&2
    fi
fi
exit "$status"
