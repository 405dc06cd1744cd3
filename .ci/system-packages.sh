#!/usr/bin/env sh
# System packages the test suite uses: PostgreSQL 15+ (a throwaway cluster per run) and
# PgBouncer (a transaction pooler in front of it),
# Chromium (the browser tests drive Debian's package through Playwright), Node.js with npm
# (a real OpenID provider, panva's oidc-provider, pinned by its lockfile), and nginx and Caddy
# (gateways in front of the verifier process).
# Installs what is missing where it can (root with apt-get); elsewhere it says what is
# missing and the tests that need it are skipped and listed, except under CI=true, where a
# missing component fails the run.
set -eu

have_postgres() { ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1; }

have_chromium() { command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; }

have_pgbouncer() { command -v pgbouncer >/dev/null 2>&1 || [ -x /usr/sbin/pgbouncer ]; }

have_node() { command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; }

have_nginx() { command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; }

have_caddy() { command -v caddy >/dev/null 2>&1; }

# The OpenID provider's packages, from the npm registry, exactly as locked.
provider() {
    dir=tests/support/oidc_provider
    [ -d "$dir/node_modules/oidc-provider" ] && return 0
    have_node || return 0
    echo "installing the test OpenID provider (npm ci, a few seconds)" >&2
    npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error >/dev/null
}

missing=""
have_postgres || missing="$missing postgresql"
have_chromium || missing="$missing chromium"
have_node || missing="$missing nodejs npm"
have_pgbouncer || missing="$missing pgbouncer"
have_nginx || missing="$missing nginx-light"
have_caddy || missing="$missing caddy"
if [ -z "$missing" ]; then
    provider
    exit 0
fi

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing system packages:$missing (about 30-90 s)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    # shellcheck disable=SC2086
    apt-get install -y -qq $missing >/dev/null
    provider
    exit 0
fi

provider
echo "not installed:$missing; the tests that need it will be skipped (to install: sudo apt-get install -y$missing)" >&2
if [ "${CI:-}" = "true" ]; then
    echo "CI=true: a missing component is a failure" >&2
    exit 1
fi
