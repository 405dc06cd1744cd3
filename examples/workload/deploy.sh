#!/usr/bin/env bash
# Deploy the example workload on this host: strip the permission token in $PT (with your
# `sable login` session), bind the service token to this host, keep it in a private file
# outside the repository, start the workload in the background, and return once it answers.
# The service token never leaves this script un-attenuated.
#
# DPOP=1: proof of possession (SPEC §14). A key is made on this host (once; it never leaves
# it), the token is also bound to it (cnf-jkt), and the workload accepts the token only with a
# fresh DPoP proof made with that key: a copy of the token file alone is useless.
set -euo pipefail
: "${PT:?set PT to a permission token (sable token create ...)}"
PORT=${PORT:-8080}
TOKEN_FILE=${SABLE_TOKEN_FILE:-${XDG_CACHE_HOME:-$HOME/.cache}/sable/workload.token}
PYTHON=${PYTHON:-$(dirname "$(command -v sable)")/python}
umask 077
mkdir -p "$(dirname "$TOKEN_FILE")"
# A port another process holds (an older workload, say) would answer the readiness check below
# in place of the new one: refuse it before stripping anything.
if ! "$PYTHON" -c 'import socket, sys; socket.create_server(("127.0.0.1", int(sys.argv[1]))).close()' "$PORT" 2>/dev/null; then
    echo "port $PORT is in use (an older workload still running?): stop it, or choose another with PORT=" >&2
    exit 1
fi
ST=$(sable strip "$PT" --name "workload@$(hostname)")
if [ "${DPOP:-0}" = 1 ]; then
    KEY_FILE=${SABLE_KEY_FILE:-${TOKEN_FILE%.token}.key}
    [ -f "$KEY_FILE" ] || sable keygen --out "$KEY_FILE" > /dev/null
    HOST_TOKEN=$(sable attenuate "$ST" --hosts "$(hostname)" --bind-key "$KEY_FILE.pub")
    export SABLE_PUBLIC_URL=${SABLE_PUBLIC_URL:-http://127.0.0.1:$PORT}
else
    HOST_TOKEN=$(sable attenuate "$ST" --hosts "$(hostname)")
fi
unset ST
printf '%s\n' "$HOST_TOKEN" > "$TOKEN_FILE"
chmod 0600 "$TOKEN_FILE"
LOG="${TOKEN_FILE%.token}.log"
"$PYTHON" "$(dirname "$0")/app.py" --port "$PORT" > "$LOG" 2>&1 &
PID=$!
echo "starting the workload on port $PORT (pid $PID), waiting until it answers..." >&2
for _ in $(seq 100); do
    # Ready when the workload that answers is the one just started (its pid), not another.
    if "$PYTHON" -c 'import json, sys, urllib.request
sys.exit(json.load(urllib.request.urlopen(sys.argv[1], timeout=1)).get("pid") != int(sys.argv[2]))' \
            "http://127.0.0.1:$PORT/healthz" "$PID" 2>/dev/null; then
        echo "workload ready on http://127.0.0.1:$PORT (pid $PID); its host-bound token is in $TOKEN_FILE" >&2
        [ "${DPOP:-0}" = 1 ] && echo "bound to the key $KEY_FILE: send it as Authorization: DPoP with a proof (clients.pop)" >&2
        exit 0
    fi
    if ! kill -0 "$PID" 2>/dev/null; then
        echo "the workload exited; its log is $LOG" >&2
        exit 1
    fi
    sleep 0.1
done
echo "the workload did not answer within 10 s; its log is $LOG" >&2
exit 1
