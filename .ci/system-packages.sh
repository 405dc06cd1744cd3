#!/usr/bin/env sh
# System packages the test suite uses: PostgreSQL 15+ (a throwaway cluster per run) and
# Chromium (the browser tests drive Debian's package through Playwright).
# Installs what is missing where it can (root with apt-get); elsewhere it says what is
# missing and the tests that need it are skipped and listed, except under CI=true, where a
# missing component fails the run.
set -eu

have_postgres() { ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1; }

have_chromium() { command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; }

missing=""
have_postgres || missing="$missing postgresql"
have_chromium || missing="$missing chromium"
[ -z "$missing" ] && exit 0

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing system packages:$missing (about 30-90 s)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    # shellcheck disable=SC2086
    apt-get install -y -qq $missing >/dev/null
    exit 0
fi

echo "not installed:$missing; the tests that need it will be skipped (to install: sudo apt-get install -y$missing)" >&2
if [ "${CI:-}" = "true" ]; then
    echo "CI=true: a missing component is a failure" >&2
    exit 1
fi
