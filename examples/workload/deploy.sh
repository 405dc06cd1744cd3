#!/usr/bin/env bash
# Deploy the example workload on this host: strip the permission token in $PT (using your
# `sable login` session), bind the service token to this host, and start the workload with it.
# The service token never leaves this script un-attenuated.
set -euo pipefail
: "${PT:?set PT to a permission token (sable token create ...)}"
ST=$(sable strip "$PT" --name "workload@$(hostname)")
HOST_TOKEN=$(sable attenuate "$ST" --hosts "$(hostname)")
unset ST
install -m 0600 /dev/null ./workload.token
printf '%s\n' "$HOST_TOKEN" > ./workload.token
echo "token for $(hostname) in ./workload.token; starting the workload" >&2
PYTHON=${PYTHON:-$(dirname "$(command -v sable)")/python}
exec "$PYTHON" "$(dirname "$0")/app.py" --port "${PORT:-8080}"
